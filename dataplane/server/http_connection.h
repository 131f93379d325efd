#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <cstddef>

#include "absl/time/time.h"
#include "dataplane/server/worker.h"

namespace mesh::dataplane {

struct HttpOptions {
  size_t max_header_bytes = 60 * 1024;                // larger request headers: 431
  absl::Duration header_timeout = absl::Seconds(10);  // first byte to last header byte, or closed
  absl::Duration idle_timeout = absl::Seconds(60);    // a keep-alive connection between requests
  bool append_forwarded_for = true;                   // add the client's address to x-forwarded-for
  size_t buffer_limit = 1024 * 1024;  // request body kept for retries (Envoy's buffer limit)
};

// Serves one accepted connection on `worker` (its thread) until it closes. The protocol is the
// client's: HTTP/2 when TLS's ALPN chose "h2" or a plaintext client opens with the HTTP/2
// preface (Envoy's codec AUTO), HTTP/1.1 otherwise. On a listener with mutual TLS, the client
// must present a mesh certificate (a plaintext client is served only when PERMISSIVE). Each
// request goes through the ConnectionManager. Timeouts: the TLS handshake and each request's
// header must complete within the header timeout, an idle connection closes after the idle
// timeout, and a stream with no byte moving either way for the stream idle timeout ends the
// connection. When the listener drains, HTTP/2 sends GOAWAY and HTTP/1.1 closes after the
// response in flight. `config` is the listener as it was when the connection was accepted.
void ServeHttp(Worker& worker, boost::asio::ip::tcp::socket socket, ListenerRuntimePtr listener,
               ListenerConfigPtr config, const HttpOptions& options);

}  // namespace mesh::dataplane
