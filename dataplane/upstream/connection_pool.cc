#include "dataplane/upstream/connection_pool.h"

#include <sys/socket.h>

#include "dataplane/upstream/cluster_table.h"

namespace mesh::dataplane {
namespace {

// Whether an idle connection is still usable: nothing to read (a read would be EOF, a reset, or
// stray bytes a server should not send on an idle connection).
bool StillOpen(UpstreamConnection::Stream& stream) {
  auto& socket = stream.socket();
  if (!socket.is_open()) return false;
  char byte;
  ssize_t n = ::recv(socket.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

void Close(UpstreamConnection& c) {
  boost::system::error_code ignored;
  c.stream.socket().close(ignored);
}

}  // namespace

UpstreamConnection::UpstreamConnection(const Stream::executor_type& executor,
                                       std::shared_ptr<ClusterState> cluster_state)
    : stream(executor), cluster(std::move(cluster_state)) {
  cluster->connections.fetch_add(1, std::memory_order_relaxed);
}

UpstreamConnection::~UpstreamConnection() {
  cluster->connections.fetch_sub(1, std::memory_order_relaxed);
}

UpstreamConnectionPtr ConnectionPool::Take(const std::string& key, absl::Time now) {
  auto it = idle_.find(key);
  if (it == idle_.end()) return nullptr;
  std::vector<Idle>& list = it->second;
  while (!list.empty()) {
    Idle idle = std::move(list.back());  // the most recently used: the likeliest to be alive
    list.pop_back();
    // Probed every time, however briefly idle: bytes waiting on an idle connection are a
    // response nobody asked for (a smuggled request's), and must never reach the next request.
    if (now < idle.expires && StillOpen(idle.connection->stream)) {
      return std::move(idle.connection);
    }
    Close(*idle.connection);
  }
  idle_.erase(it);
  return nullptr;
}

void ConnectionPool::Give(const std::string& key, UpstreamConnectionPtr connection, absl::Time now,
                          std::optional<absl::Duration> idle_timeout) {
  std::vector<Idle>& list = idle_[key];
  // Expired ones go first, then the oldest when the host has enough.
  while (!list.empty() &&
         (list.front().expires <= now || list.size() >= options_.max_idle_per_host)) {
    Close(*list.front().connection);
    list.erase(list.begin());
  }
  connection->stream.expires_never();
  absl::Duration max_idle =
      std::min(idle_timeout.value_or(options_.max_idle_time), options_.max_idle_time);
  list.push_back({std::move(connection), now, now + max_idle});
}

void ConnectionPool::Sweep(absl::Time now) {
  for (auto it = idle_.begin(); it != idle_.end();) {
    std::vector<Idle>& list = it->second;
    for (auto i = list.begin(); i != list.end();) {
      if (i->expires <= now) {
        Close(*i->connection);
        i = list.erase(i);
      } else {
        ++i;
      }
    }
    it = list.empty() ? idle_.erase(it) : std::next(it);
  }
}

size_t ConnectionPool::idle_count() const {
  size_t n = 0;
  for (const auto& [key, list] : idle_) n += list.size();
  return n;
}

}  // namespace mesh::dataplane
