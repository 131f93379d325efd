#pragma once

#include <memory>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "dataplane/stream/stream.h"

namespace mesh::dataplane {

struct Cluster;
struct Host;

// How a request for an upstream stream ends.
class PoolCallbacks {
 public:
  virtual ~PoolCallbacks() = default;
  enum class Failure {
    kConnect,   // refused, unreachable, or the TLS handshake failed
    kTimeout,   // no connection within the connect timeout or the request's deadline
    kOverflow,  // a circuit breaker refused it (max_connections, max_pending_requests)
  };
  // A stream is open: send the request on `encoder`. `protocol` is what the connection speaks;
  // `reused` says the connection carried requests before (it may have been closed by the peer
  // an instant ago, which a request on it then finds out).
  virtual void OnPoolReady(RequestEncoder& encoder, HttpProtocol protocol, bool reused) = 0;
  // `detail` says which limit or why, for the reply and the log.
  virtual void OnPoolFailure(Failure failure, absl::string_view detail) = 0;
};

// A request for a stream that is still waiting; destroying it cancels the wait.
class PendingStream {
 public:
  virtual ~PendingStream() = default;
};
using PendingStreamPtr = std::unique_ptr<PendingStream>;

// Where upstream streams come from: the worker's connection pools. Worker-thread only.
class ConnectionSource {
 public:
  virtual ~ConnectionSource() = default;
  // Asks for a stream to `host` of `cluster` speaking `protocol` (HTTP/1.1 or HTTP/2), whose
  // response goes to `decoder`. The callbacks may run before this returns (an idle pooled
  // connection, or an immediate refusal); then the result is nullptr. Otherwise the result
  // must be kept until a callback ran, and destroying it earlier cancels the request.
  virtual PendingStreamPtr NewStream(const Cluster& cluster, const Host& host,
                                     HttpProtocol protocol, absl::Time deadline,
                                     ResponseDecoder& decoder, PoolCallbacks& callbacks) = 0;
};

}  // namespace mesh::dataplane
