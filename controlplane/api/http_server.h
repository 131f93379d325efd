#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <regex>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace mesh::api {

// One request, read whole (header and body) before any handler sees it.
struct HttpRequest {
  std::string method;  // upper case, as sent
  std::string target;  // as sent: path and query
  std::string path;    // the target's path, percent-encoding kept
  std::string body;
  std::string remote;                              // the client's IP address
  std::multimap<std::string, std::string> params;  // the query, decoded
  std::map<std::string, std::string> headers;      // names lower-cased; repeated ones joined ", "
  std::smatch matches;                             // the route's captures, into `path`

  std::string header(const std::string& lower_name) const;
  std::string param(const std::string& name) const;  // the first value, or ""
};

// A response body produced over time (a watch): written to the client as chunks as it arrives.
// Thread-safe. Holds at most `max_bytes` unsent: past that Push refuses, and the producer should
// end the stream (a client that does not read is cut off rather than grow the server).
class HttpStream {
 public:
  explicit HttpStream(size_t max_bytes) : max_bytes_(max_bytes) {}
  // Queues `data`; false, with nothing queued, once the stream is closed or over its limit.
  bool Push(std::string data);
  // Queues `data` whatever the limit, as the stream's last words, and closes it. False if the
  // stream was already closed or abandoned.
  bool PushFinal(std::string data);
  // Ends the stream after what is queued. Idempotent.
  void Close();
  // Whether the stream still goes on: not closed, and its client still there.
  bool open() const;

  // For the server: takes what is queued; `closed` tells whether the stream has ended.
  std::string Take(bool* closed);
  // For the server: the client went away; Push refuses from now on.
  void Abandon();
  // For the server: called (outside the stream's lock) when data or the close arrives.
  void SetWakeup(std::function<void()> wakeup);

 private:
  const size_t max_bytes_;
  mutable std::mutex mu_;
  std::string queued_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  bool abandoned_ ABSL_GUARDED_BY(mu_) = false;
  std::function<void()> wakeup_ ABSL_GUARDED_BY(mu_);
};
using HttpStreamPtr = std::shared_ptr<HttpStream>;

struct HttpResponse {
  int status = 200;
  std::string body;
  std::string content_type = "text/plain";
  std::vector<std::pair<std::string, std::string>> headers;
  // A streamed (chunked) body instead of `body`; `keep` is released when the stream ends.
  HttpStreamPtr stream;
  std::shared_ptr<void> keep;
  absl::Duration stream_max = absl::InfiniteDuration();  // the stream is closed after this long

  void set_content(std::string content, std::string type) {
    body = std::move(content);
    content_type = std::move(type);
  }
};

// An HTTP/1.1 server on Asio with Boost.Beast's parser, for meshpilot's REST API. Connections
// are served by one event loop, so slow, idle or stalled clients cost memory, never a thread:
// a request is handed to the handler pool only once it has arrived whole. Every connection has
// deadlines (idle between requests, a whole request, each write), the server caps connections
// in all and per client address, and bodies over the limit are refused with 413. Handlers run on
// `handler_threads` threads and may block (a durable write); streamed responses hold no thread.
// Thread-safe.
class HttpServer {
 public:
  struct Options {
    std::string host = "127.0.0.1";
    int port = 0;  // 0 picks a free port
    size_t handler_threads = 16;
    size_t max_body_bytes = 4 << 20;
    size_t max_header_bytes = 64 << 10;
    size_t max_connections = 8192;
    size_t max_connections_per_client = 2048;
    absl::Duration idle_timeout = absl::Seconds(60);     // between requests on a connection
    absl::Duration request_timeout = absl::Seconds(30);  // first byte to last of one request
    absl::Duration write_timeout = absl::Seconds(30);    // one write (a chunk of a stream too)
  };
  using Handler = std::function<void(HttpRequest&, HttpResponse&)>;

  explicit HttpServer(Options options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Routes `method` requests whose whole path matches `pattern` (ECMAScript) to `handler`, with
  // the captures in `request.matches`. Routes are tried in the order added. Call before Start.
  void Route(const std::string& method, const std::string& pattern, Handler handler);
  // Runs before routing on every request; returning true means it answered (auth). Optional.
  void Before(std::function<bool(HttpRequest&, HttpResponse&)> filter) {
    before_ = std::move(filter);
  }
  // Fills the body of an error answer the server gives itself (400, 404, 405, 413, 431, 500);
  // `message` is one line. Optional: plain text otherwise.
  void OnError(std::function<void(const HttpRequest&, HttpResponse&, const std::string&)> fill) {
    on_error_ = std::move(fill);
  }

  // Binds and starts serving. Returns the bound port.
  absl::StatusOr<int> Start();
  // Stops accepting, closes every connection (ending streams), and joins every thread.
  // Idempotent.
  void Stop();

  size_t open_connections() const;

  class Impl;

 private:
  struct RouteEntry {
    std::string method;
    std::regex pattern;
    Handler handler;
  };
  friend class Impl;
  Options options_;
  std::vector<RouteEntry> routes_;
  std::function<bool(HttpRequest&, HttpResponse&)> before_;
  std::function<void(const HttpRequest&, HttpResponse&, const std::string&)> on_error_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mesh::api
