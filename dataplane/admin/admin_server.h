#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

// meshproxy's admin endpoint: a small HTTP/1.1 server on its own thread, so a slow scrape never
// delays traffic. What each path answers is decided by the handler.
namespace mesh::dataplane {

struct AdminResponse {
  int status = 200;
  std::string content_type = "text/plain";
  std::string body;
};

class AdminServer {
 public:
  // `path` is the request target without its query string; `query` is what followed the '?'.
  using Handler = std::function<AdminResponse(const std::string& method, const std::string& path,
                                              const std::string& query)>;
  AdminServer(Handler handler);
  ~AdminServer();

  // Binds "ip:port" (port 0 picks a free one) and starts serving. Returns the bound port.
  absl::StatusOr<int> Start(const std::string& address);
  void Stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mesh::dataplane
