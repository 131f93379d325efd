#include "dataplane/health/health_prober.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "absl/strings/str_cat.h"

namespace mesh::dataplane {

bool AcceptsConnections(uint32_t port, absl::Duration timeout) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  if (!ok && errno == EINPROGRESS) {
    pollfd p{fd, POLLOUT, 0};
    int error = 0;
    socklen_t len = sizeof error;
    ok = ::poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(timeout))) == 1 &&
         ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) == 0 && error == 0;
  }
  ::close(fd);
  return ok;
}

HealthProber::HealthProber(Options options, Report report)
    : options_(std::move(options)), report_(std::move(report)) {}

HealthProber::~HealthProber() {
  Stop();
}

std::string HealthProber::CheckOnce() {
  std::string reason;
  if (options_.has_identity && !options_.has_identity()) {
    reason = "no workload certificate yet";
  } else {
    for (uint32_t port : options_.app_ports) {
      if (!AcceptsConnections(port, options_.connect_timeout)) {
        reason = absl::StrCat("app port ", port, " refuses connections");
        break;
      }
    }
  }
  bool changed;
  {
    std::lock_guard lock(mu_);
    changed = !last_ || *last_ != reason;
    last_ = reason;
  }
  if (changed) report_(reason.empty(), reason);
  return reason;
}

void HealthProber::Start() {
  thread_ = std::thread([this] {
    std::unique_lock lock(mu_);
    while (!stop_) {
      lock.unlock();
      CheckOnce();
      lock.lock();
      // Until healthy, look again soon: a workload should not wait an interval to serve.
      absl::Duration wait = last_ && last_->empty()
                                ? options_.interval
                                : std::min(options_.interval, absl::Milliseconds(200));
      cv_.wait_for(lock, absl::ToChronoNanoseconds(wait), [&] { return stop_; });
    }
  });
}

void HealthProber::Stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

}  // namespace mesh::dataplane
