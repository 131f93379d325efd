#pragma once

#include <boost/beast/core/tcp_stream.hpp>
#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"

namespace mesh::dataplane {

// Idle keep-alive connections to upstream hosts, per "address:port". One pool per worker, used
// only on that worker's thread, so it takes no lock. A connection handed out is owned by the
// caller until it gives it back; one the peer has closed while idle is never handed out.
class ConnectionPool {
 public:
  using Stream = boost::beast::tcp_stream;
  struct Options {
    size_t max_idle_per_host = 64;
    absl::Duration max_idle_time = absl::Seconds(30);  // kept below common servers' keep-alive
  };
  explicit ConnectionPool(Options options) : options_(options) {}

  // A live idle connection to `key`, or nullptr.
  std::unique_ptr<Stream> Take(const std::string& key, absl::Time now);
  // Keeps `stream` for reuse (or closes it when the host already has enough idle ones).
  void Give(const std::string& key, std::unique_ptr<Stream> stream, absl::Time now);
  size_t idle_count() const;

 private:
  struct Idle {
    std::unique_ptr<Stream> stream;
    absl::Time since;
  };
  const Options options_;
  std::map<std::string, std::vector<Idle>> idle_;
};

}  // namespace mesh::dataplane
