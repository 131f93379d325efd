#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "dataplane/tls/mesh_stream.h"

namespace mesh::dataplane {

struct ClusterState;

// One upstream connection: its stream, the requests it has carried, and its place in its
// cluster's connection count (released when the connection is destroyed).
struct UpstreamConnection {
  using Stream = MeshStream;
  UpstreamConnection(const Stream::executor_type& executor, std::shared_ptr<ClusterState> cluster);
  ~UpstreamConnection();
  UpstreamConnection(const UpstreamConnection&) = delete;
  UpstreamConnection& operator=(const UpstreamConnection&) = delete;

  std::shared_ptr<void> tls;  // the TLS contexts a secured stream was made with; outlive it
  Stream stream;
  uint32_t requests = 0;
  const std::shared_ptr<ClusterState> cluster;
};
using UpstreamConnectionPtr = std::unique_ptr<UpstreamConnection>;

// Idle keep-alive connections to upstream hosts, per "address:port". One pool per worker, used
// only on that worker's thread, so it takes no lock. A connection handed out is owned by the
// caller until it gives it back; one the peer has closed while idle is never handed out.
class ConnectionPool {
 public:
  struct Options {
    size_t max_idle_per_host = 64;
    absl::Duration max_idle_time = absl::Seconds(30);  // kept below common servers' keep-alive
  };
  explicit ConnectionPool(Options options) : options_(options) {}

  // A live idle connection to `key`, or nullptr.
  UpstreamConnectionPtr Take(const std::string& key, absl::Time now);
  // Keeps `connection` for reuse for at most `idle_timeout` (default: the pool's), or closes it
  // when the host already has enough idle ones.
  void Give(const std::string& key, UpstreamConnectionPtr connection, absl::Time now,
            std::optional<absl::Duration> idle_timeout = std::nullopt);
  // Closes the idle connections whose idle timeout has passed.
  void Sweep(absl::Time now);
  size_t idle_count() const;

 private:
  struct Idle {
    UpstreamConnectionPtr connection;
    absl::Time since, expires;
  };
  const Options options_;
  std::map<std::string, std::vector<Idle>> idle_;
};

}  // namespace mesh::dataplane
