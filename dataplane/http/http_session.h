#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <cstddef>
#include <string>
#include <utility>

#include "absl/time/time.h"
#include "dataplane/server/worker.h"

namespace mesh::dataplane {

struct HttpOptions {
  size_t max_header_bytes = 60 * 1024;                // larger request headers: 431
  absl::Duration header_timeout = absl::Seconds(10);  // first byte to last header byte, or closed
  absl::Duration idle_timeout = absl::Seconds(60);    // a keep-alive connection between requests
  absl::Duration stream_idle_timeout = absl::Minutes(5);  // no byte either way mid-request
  bool append_forwarded_for = true;  // add the client's address to x-forwarded-for
};

// Serves one accepted HTTP/1.1 connection on `worker` until it closes: parses each request
// (Boost.Beast), routes it with the worker's current snapshot, forwards it over a pooled upstream
// connection with bodies streamed both ways, and answers local errors (400, 404, 431, 503, 504)
// itself. Malformed input closes the connection after the error answer; it never throws out of the
// coroutine. A client that does not finish its header within the header timeout (a slowloris) is
// disconnected. `config` is the listener as it was when the connection was accepted.
boost::asio::awaitable<void> ServeHttp(Worker& worker, boost::asio::ip::tcp::socket socket,
                                       ListenerRuntimePtr listener, ListenerConfigPtr config,
                                       const HttpOptions& options);

}  // namespace mesh::dataplane
