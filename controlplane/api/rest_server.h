#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "controlplane/api/resource_service.h"

namespace mesh::api {

class HttpServer;
struct HttpRequest;
struct HttpResponse;

struct RestOptions {
  std::string host = "127.0.0.1";
  int port = 15080;  // 0 picks a free port
  // Bearer token required on everything but /healthz, /readyz and /version. Must not be empty.
  std::string admin_token;
  // Also accepted on the ingest handlers (AddIngestHandler), and nowhere else: what proxies
  // present when they export telemetry. Empty: the admin token only.
  std::string ingest_token;
  size_t max_body_bytes = 4 << 20;
  // Threads for handlers (which may block on a durable write). Connections, slow or idle
  // clients and open watches hold none.
  size_t threads = 16;
  // Open watches beyond this many are refused with 429.
  int max_watches = 1024;
  // Bytes of events a watch may have waiting for a slow client; past that the watch ends with a
  // 410 event and the client watches again from its last resourceVersion.
  size_t max_watch_bytes = 16 << 20;
  // A watch stream ends after this long; clients resume from their last resourceVersion.
  int max_watch_seconds = 1800;
  std::string version = "dev";
};

// The HTTP front of ResourceService: Kubernetes-style paths, bearer-token auth, body limits,
// JSON or YAML in, JSON, YAML-free or kubectl-like text out, and Status objects for errors.
class RestServer {
 public:
  RestServer(ResourceService* service, RestOptions options);
  ~RestServer();

  // Binds and starts serving on a background thread. Returns the bound port.
  absl::StatusOr<int> Start();
  // Stops accepting, ends watch streams, and joins the serving threads. Idempotent.
  void Stop();
  // Connections open now (slow and idle ones included).
  size_t open_connections() const;

  // Extra Prometheus text appended to /metrics (the store, index and xDS server add theirs).
  // Call before Start.
  void AddMetricsSource(std::function<std::string()> source) {
    metrics_sources_.push_back(std::move(source));
  }
  // The /metrics text: the REST counters and every source's. Thread-safe once started.
  std::string MetricsText() const;

  // Serves GET `path` (behind the token; a pattern, whose captures come as parameters "1", "2",
  // ...) with `handler`'s JSON; the handler gets the query parameters, and its error maps to a
  // status code as everywhere else. Call before Start.
  using JsonHandler =
      std::function<absl::StatusOr<std::string>(const std::map<std::string, std::string>&)>;
  void AddJsonHandler(std::string path, JsonHandler handler) {
    json_handlers_.emplace_back(std::move(path), std::move(handler));
  }
  // Serves POST `path` (behind the token): `handler` gets the body and answers JSON.
  using JsonPostHandler = std::function<absl::StatusOr<std::string>(const std::string& body)>;
  void AddJsonPostHandler(std::string path, JsonPostHandler handler) {
    json_post_handlers_.emplace_back(std::move(path), std::move(handler));
  }
  // Serves POST `path` (behind the admin or the ingest token) with a body of any type, such as
  // OTLP's protobuf: `handler` gets the body and its Content-Type, and answers in full.
  struct RawReply {
    int status = 200;
    std::string body, content_type;
  };
  using IngestHandler =
      std::function<RawReply(const std::string& body, const std::string& content_type)>;
  void AddIngestHandler(std::string path, IngestHandler handler) {
    ingest_handlers_.emplace_back(std::move(path), std::move(handler));
  }

 private:
  void Routes();
  void AddFilters();
  void AddSystemRoutes();
  void AddApplyRoutes();
  void AddResourceRoutes();
  // GET of a collection: the List, or with ?watch=true a stream of events.
  void ServeList(const HttpRequest& req, HttpResponse& res, const model::KindInfo& kind,
                 const std::string& version, const std::string& ns);

  ResourceService* service_;
  RestOptions options_;
  std::unique_ptr<HttpServer> server_;
  std::atomic<bool> stopping_{false};
  std::vector<std::function<std::string()>> metrics_sources_;
  std::vector<std::pair<std::string, JsonHandler>> json_handlers_;
  std::vector<std::pair<std::string, JsonPostHandler>> json_post_handlers_;
  std::vector<std::pair<std::string, IngestHandler>> ingest_handlers_;
  std::atomic<int64_t> requests_{0};
  std::atomic<int64_t> unauthorized_{0};
  std::atomic<int64_t> applies_{0};
  std::atomic<int> open_watches_{0};
};

}  // namespace mesh::api
