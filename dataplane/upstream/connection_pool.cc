#include "dataplane/upstream/connection_pool.h"

#include <sys/socket.h>

namespace mesh::dataplane {
namespace {

// Whether an idle connection is still usable: nothing to read (a read would be EOF, a reset, or
// stray bytes a server should not send on an idle connection).
bool StillOpen(ConnectionPool::Stream& stream) {
  auto& socket = stream.socket();
  if (!socket.is_open()) return false;
  char byte;
  ssize_t n = ::recv(socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

}  // namespace

std::unique_ptr<ConnectionPool::Stream> ConnectionPool::Take(const std::string& key,
                                                             absl::Time now) {
  auto it = idle_.find(key);
  if (it == idle_.end()) return nullptr;
  std::vector<Idle>& list = it->second;
  while (!list.empty()) {
    Idle idle = std::move(list.back());  // the most recently used: the likeliest to be alive
    list.pop_back();
    // A connection idle for only a moment is not probed: servers close idle connections after
    // seconds, and the probe costs a system call per request.
    bool fresh = now - idle.since < absl::Milliseconds(250);
    if (now - idle.since < options_.max_idle_time && (fresh || StillOpen(*idle.stream))) {
      return std::move(idle.stream);
    }
    boost::system::error_code ignored;
    idle.stream->socket().close(ignored);
  }
  idle_.erase(it);
  return nullptr;
}

void ConnectionPool::Give(const std::string& key, std::unique_ptr<Stream> stream, absl::Time now) {
  std::vector<Idle>& list = idle_[key];
  if (list.size() >= options_.max_idle_per_host) {
    // Drop the oldest: it is the likeliest to be closed by the server soon.
    boost::system::error_code ignored;
    list.front().stream->socket().close(ignored);
    list.erase(list.begin());
  }
  stream->expires_never();
  list.push_back({std::move(stream), now});
}

size_t ConnectionPool::idle_count() const {
  size_t n = 0;
  for (const auto& [key, list] : idle_) n += list.size();
  return n;
}

}  // namespace mesh::dataplane
