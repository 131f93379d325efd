#include "controlplane/api/rest_server.h"

#include <openssl/crypto.h>

#include <chrono>
#include <mutex>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/log.h"
#include "controlplane/api/http_server.h"

namespace mesh::api {
namespace {

using nlohmann::json;

int HttpCode(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kInvalidArgument: return 400;
    case absl::StatusCode::kUnauthenticated: return 401;
    case absl::StatusCode::kNotFound: return 404;
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kAborted: return 409;
    case absl::StatusCode::kOutOfRange: return 410;
    case absl::StatusCode::kResourceExhausted: return 413;
    case absl::StatusCode::kUnavailable: return 503;
    default: return 500;
  }
}

const char* Reason(int code) {
  switch (code) {
    case 400: return "Invalid";
    case 401: return "Unauthorized";
    case 404: return "NotFound";
    case 405: return "MethodNotAllowed";
    case 409: return "Conflict";
    case 410: return "Expired";
    case 413: return "RequestEntityTooLarge";
    case 429: return "TooManyRequests";
    case 503: return "ServiceUnavailable";
    default: return "InternalError";
  }
}

bool WantsText(const HttpRequest& req) {
  return absl::StrContains(req.header("accept"), "text/plain");
}

void SendStatus(const HttpRequest& req, HttpResponse& res, int code, absl::string_view message) {
  res.status = code;
  if (WantsText(req)) {
    res.set_content(absl::StrCat("Error: ", message, "\n"), "text/plain");
    return;
  }
  json causes = json::array();
  std::vector<std::string> lines = absl::StrSplit(message, '\n');
  for (const std::string& line : lines) causes.push_back({{"message", line}});
  json status = {{"kind", "Status"},   {"apiVersion", "v1"},     {"status", "Failure"},
                 {"message", message}, {"reason", Reason(code)}, {"code", code}};
  if (lines.size() > 1) status["details"] = {{"causes", causes}};
  res.set_content(status.dump(2) + "\n", "application/json");
}

void SendError(const HttpRequest& req, HttpResponse& res, const absl::Status& s) {
  SendStatus(req, res, HttpCode(s), s.message());
}

void SendJson(HttpResponse& res, int code, const json& body) {
  res.status = code;
  res.set_content(body.dump(2) + "\n", "application/json");
}

BodyFormat FormatOf(const HttpRequest& req) {
  return absl::StrContains(req.header("content-type"), "json") ? BodyFormat::kJson
                                                               : BodyFormat::kYaml;
}

std::string NamespaceParam(const HttpRequest& req) {
  std::string ns = req.param("namespace");
  return ns.empty() ? "default" : ns;
}

}  // namespace

RestServer::RestServer(ResourceService* service, RestOptions options)
    : service_(service), options_(std::move(options)) {}

RestServer::~RestServer() {
  Stop();
}

absl::StatusOr<int> RestServer::Start() {
  if (options_.admin_token.empty()) return absl::InvalidArgumentError("an admin token is required");
  HttpServer::Options http;
  http.host = options_.host;
  http.port = options_.port;
  http.handler_threads = options_.threads;
  http.max_body_bytes = options_.max_body_bytes;
  server_ = std::make_unique<HttpServer>(http);
  Routes();
  absl::StatusOr<int> port = server_->Start();
  if (!port.ok()) return port.status();
  log::Info("rest: listening on ", options_.host, ":", *port);
  return port;
}

void RestServer::Stop() {
  if (stopping_.exchange(true)) return;
  if (server_) server_->Stop();
}

size_t RestServer::open_connections() const {
  return server_ ? server_->open_connections() : 0;
}

void RestServer::Routes() {
  AddFilters();
  AddSystemRoutes();
  AddApplyRoutes();
  AddResourceRoutes();
}

// The token check before every route, and the Status body of the server's own errors.
void RestServer::AddFilters() {
  HttpServer& s = *server_;
  s.Before([this](HttpRequest& req, HttpResponse& res) {
    ++requests_;
    if (req.path == "/healthz" || req.path == "/readyz" || req.path == "/version") return false;
    std::string auth = req.header("authorization");
    absl::string_view presented = auth;
    const bool bearer = absl::ConsumePrefix(&presented, "Bearer ");
    auto is = [&](const std::string& token) {
      return bearer && !token.empty() && presented.size() == token.size() &&
             CRYPTO_memcmp(presented.data(), token.data(), presented.size()) == 0;
    };
    if (is(options_.admin_token)) return false;
    if (req.method == "POST" && is(options_.ingest_token)) {
      for (const auto& [path, handler] : ingest_handlers_) {
        if (req.path == path) return false;
      }
    }
    ++unauthorized_;
    SendStatus(req, res, 401,
               auth.empty() ? "a bearer token is required" : "the bearer token is not valid");
    return true;
  });
  s.OnError([](const HttpRequest& req, HttpResponse& res, const std::string& message) {
    SendStatus(req, res, res.status, message);
  });
}

std::string RestServer::MetricsText() const {
  std::string out = absl::StrCat(
      "# TYPE meshpilot_rest_requests_total counter\nmeshpilot_rest_requests_total ",
      requests_.load(), "\n",
      "# TYPE meshpilot_rest_unauthorized_total counter\nmeshpilot_rest_unauthorized_total ",
      unauthorized_.load(), "\n",
      "# TYPE meshpilot_apply_requests_total counter\nmeshpilot_apply_requests_total ",
      applies_.load(), "\n");
  for (const auto& source : metrics_sources_) out += source();
  return out;
}

// Health, version, metrics and the JSON handlers other parts of meshpilot add.
void RestServer::AddSystemRoutes() {
  HttpServer& s = *server_;
  auto get = [&](const std::string& path, HttpServer::Handler h) { s.Route("GET", path, h); };

  get("/healthz",
      [](const HttpRequest&, HttpResponse& res) { res.set_content("ok\n", "text/plain"); });
  get("/readyz",
      [](const HttpRequest&, HttpResponse& res) { res.set_content("ok\n", "text/plain"); });
  get("/version", [this](const HttpRequest&, HttpResponse& res) {
    SendJson(res, 200, {{"name", "meshpilot"}, {"version", options_.version}});
  });

  get("/metrics", [this](const HttpRequest&, HttpResponse& res) {
    res.set_content(MetricsText(), "text/plain; version=0.0.4");
  });

  for (const auto& [path, handler] : json_handlers_) {
    JsonHandler h = handler;
    get(path, [h](const HttpRequest& req, HttpResponse& res) {
      std::map<std::string, std::string> params(req.params.begin(), req.params.end());
      for (size_t i = 1; i < req.matches.size(); ++i) params[std::to_string(i)] = req.matches[i];
      absl::StatusOr<std::string> out = h(params);
      if (!out.ok()) return SendError(req, res, out.status());
      res.set_content(*out + "\n", "application/json");
    });
  }

  for (const auto& [path, handler] : ingest_handlers_) {
    IngestHandler h = handler;
    s.Route("POST", path, [h](const HttpRequest& req, HttpResponse& res) {
      RawReply reply = h(req.body, req.header("content-type"));
      res.status = reply.status;
      res.set_content(std::move(reply.body), std::move(reply.content_type));
    });
  }

  for (const auto& [path, handler] : json_post_handlers_) {
    JsonPostHandler h = handler;
    s.Route("POST", path, [h](const HttpRequest& req, HttpResponse& res) {
      absl::StatusOr<std::string> out = h(req.body);
      if (!out.ok()) return SendError(req, res, out.status());
      res.set_content(*out + "\n", "application/json");
    });
  }
}

// POST and DELETE /apply, and /analyze.
void RestServer::AddApplyRoutes() {
  HttpServer& s = *server_;
  auto get = [&](const std::string& path, HttpServer::Handler h) { s.Route("GET", path, h); };

  auto apply = [this](const HttpRequest& req, HttpResponse& res, bool remove) {
    ++applies_;
    absl::StatusOr<ApplyResult> result =
        remove ? service_->DeleteApplied(req.body, FormatOf(req), NamespaceParam(req))
               : service_->Apply(req.body, FormatOf(req), NamespaceParam(req));
    if (!result.ok()) {
      SendError(req, res, result.status());
      return;
    }
    if (WantsText(req)) {
      res.set_content(result->ToText(), "text/plain");
    } else {
      SendJson(res, 200, result->ToJson());
    }
  };
  s.Route("POST", "/apply",
          [apply](const HttpRequest& req, HttpResponse& res) { apply(req, res, false); });
  s.Route("DELETE", "/apply",
          [apply](const HttpRequest& req, HttpResponse& res) { apply(req, res, true); });

  get("/analyze", [this](const HttpRequest& req, HttpResponse& res) {
    std::vector<model::Warning> warnings = service_->Analyze(req.param("namespace"));
    if (WantsText(req)) {
      std::string out;
      for (const auto& w : warnings) absl::StrAppend(&out, "Warning: ", w.ToString(), "\n");
      if (warnings.empty()) out = "No problems found.\n";
      res.set_content(out, "text/plain");
      return;
    }
    json list = json::array();
    for (const auto& w : warnings)
      list.push_back({{"object", w.object}, {"path", w.path}, {"message", w.message}});
    SendJson(res, 200, {{"warnings", list}});
  });
}

// List (and watch) and create as Kubernetes does, per resource: GET, PUT and DELETE.
void RestServer::AddResourceRoutes() {
  HttpServer& s = *server_;
  auto get = [&](const std::string& path, HttpServer::Handler h) { s.Route("GET", path, h); };

  // Resolves a REST path's group, version and plural to a served kind, or answers 404.
  auto resolve = [](const HttpRequest& req, HttpResponse& res, absl::string_view group,
                    absl::string_view version, absl::string_view plural) -> const model::KindInfo* {
    const model::KindInfo* kind = model::FindByGroupPlural(group, plural);
    if (!kind || !kind->ServesVersion(version)) {
      SendStatus(req, res, 404,
                 absl::StrCat("the server does not serve ", plural, " in ",
                              group.empty() ? "core" : group, "/", version));
      return nullptr;
    }
    return kind;
  };

  auto list = [this](const HttpRequest& req, HttpResponse& res, const model::KindInfo& kind,
                     const std::string& version,
                     const std::string& ns) { ServeList(req, res, kind, version, ns); };

  auto write = [this](const HttpRequest& req, HttpResponse& res, const model::KindInfo& kind,
                      const std::string& version, const std::string& ns, const std::string& name,
                      bool replace) {
    bool created = false;
    absl::StatusOr<json> out =
        service_->Write(kind, version, ns, name, req.body, FormatOf(req), replace, &created);
    if (!out.ok()) return SendError(req, res, out.status());
    SendJson(res, created ? 201 : 200, *out);
  };

  auto one = [this](const HttpRequest& req, HttpResponse& res, const model::KindInfo& kind,
                    const std::string& version, const std::string& ns, const std::string& name) {
    absl::StatusOr<json> out = req.method == "DELETE" ? service_->Delete(kind, version, ns, name)
                                                      : service_->Get(kind, version, ns, name);
    if (!out.ok()) return SendError(req, res, out.status());
    SendJson(res, 200, *out);
  };

  // Istio groups: /apis/{group}/{version}/...
  const std::string ns_collection = R"(/apis/([^/]+)/([^/]+)/namespaces/([^/]+)/([^/]+))";
  const std::string ns_item = ns_collection + R"(/([^/]+))";
  const std::string all_collection = R"(/apis/([^/]+)/([^/]+)/([^/]+))";
  // Core group: /api/v1/...
  const std::string core_ns_collection = R"(/api/(v1)/namespaces/([^/]+)/([^/]+))";
  const std::string core_ns_item = core_ns_collection + R"(/([^/]+))";
  const std::string core_all_collection = R"(/api/(v1)/([^/]+))";

  get(ns_collection, [=](const HttpRequest& req, HttpResponse& res) {
    const auto& m = req.matches;
    if (auto* k = resolve(req, res, m[1].str(), m[2].str(), m[4].str()))
      list(req, res, *k, m[2], m[3]);
  });
  s.Route("POST", ns_collection, [=](const HttpRequest& req, HttpResponse& res) {
    const auto& m = req.matches;
    if (auto* k = resolve(req, res, m[1].str(), m[2].str(), m[4].str()))
      write(req, res, *k, m[2], m[3], "", false);
  });
  get(all_collection, [=](const HttpRequest& req, HttpResponse& res) {
    const auto& m = req.matches;
    if (auto* k = resolve(req, res, m[1].str(), m[2].str(), m[3].str()))
      list(req, res, *k, m[2], "");
  });
  auto item = [=](const HttpRequest& req, HttpResponse& res) {
    const auto& m = req.matches;
    auto* k = resolve(req, res, m[1].str(), m[2].str(), m[4].str());
    if (!k) return;
    if (req.method == "PUT") return write(req, res, *k, m[2], m[3], m[5], true);
    one(req, res, *k, m[2], m[3], m[5]);
  };
  get(ns_item, item);
  s.Route("PUT", ns_item, item);
  s.Route("DELETE", ns_item, item);

  get(core_ns_collection, [=](const HttpRequest& req, HttpResponse& res) {
    const auto& m = req.matches;
    if (auto* k = resolve(req, res, "", m[1].str(), m[3].str())) list(req, res, *k, m[1], m[2]);
  });
  s.Route("POST", core_ns_collection, [=](const HttpRequest& req, HttpResponse& res) {
    const auto& m = req.matches;
    if (auto* k = resolve(req, res, "", m[1].str(), m[3].str()))
      write(req, res, *k, m[1], m[2], "", false);
  });
  get(core_all_collection, [=](const HttpRequest& req, HttpResponse& res) {
    const auto& m = req.matches;
    if (auto* k = resolve(req, res, "", m[1].str(), m[2].str())) list(req, res, *k, m[1], "");
  });
  auto core_item = [=](const HttpRequest& req, HttpResponse& res) {
    const auto& m = req.matches;
    auto* k = resolve(req, res, "", m[1].str(), m[3].str());
    if (!k) return;
    if (req.method == "PUT") return write(req, res, *k, m[1], m[2], m[4], true);
    one(req, res, *k, m[1], m[2], m[4]);
  };
  get(core_ns_item, core_item);
  s.Route("PUT", core_ns_item, core_item);
  s.Route("DELETE", core_ns_item, core_item);
}

void RestServer::ServeList(const HttpRequest& req, HttpResponse& res, const model::KindInfo& kind,
                           const std::string& version, const std::string& ns) {
  if (req.param("watch") != "true" && req.param("watch") != "1") {
    absl::StatusOr<json> out = service_->List(kind, version, ns);
    if (!out.ok()) return SendError(req, res, out.status());
    return SendJson(res, 200, *out);
  }
  std::optional<int64_t> from;
  if (std::string rv = req.param("resourceVersion"); !rv.empty() && rv != "0") {
    int64_t n;
    if (!absl::SimpleAtoi(rv, &n) || n < 0) {
      return SendStatus(req, res, 400, "resourceVersion must be a non-negative integer");
    }
    from = n;
  }
  int seconds = options_.max_watch_seconds;
  if (std::string t = req.param("timeoutSeconds"); !t.empty()) {
    int n;
    if (!absl::SimpleAtoi(t, &n) || n <= 0)
      return SendStatus(req, res, 400, "timeoutSeconds must be a positive integer");
    seconds = std::min(n, seconds);
  }
  if (open_watches_.fetch_add(1) >= options_.max_watches) {
    --open_watches_;
    return SendStatus(req, res, 429,
                      absl::StrCat("too many open watches (", options_.max_watches, ")"));
  }
  // Released when the stream ends, however it ends.
  auto slot = std::shared_ptr<void>(nullptr, [this](void*) { --open_watches_; });
  // Events go straight to the connection; a client that falls more than
  // max_watch_bytes behind is cut off with kube-apiserver's 410 event and
  // resumes from its last version.
  auto stream = std::make_shared<HttpStream>(options_.max_watch_bytes);
  absl::StatusOr<store::WatchPtr> watch =
      service_->Watch(kind, version, ns, from, [stream](std::string line) {
        if (stream->Push(line + "\n") || !stream->open()) return;
        json expired = {{"type", "ERROR"},
                        {"object",
                         {{"kind", "Status"},
                          {"apiVersion", "v1"},
                          {"status", "Failure"},
                          {"message",
                           "the watch fell too far behind; watch again from the "
                           "last resourceVersion received"},
                          {"reason", "Expired"},
                          {"code", 410}}}};
        stream->PushFinal(expired.dump() + "\n");
      });
  if (!watch.ok()) return SendError(req, res, watch.status());
  struct Held {
    store::WatchPtr watch;
    std::shared_ptr<void> slot;
  };
  res.status = 200;
  res.content_type = "application/json";
  res.stream = std::move(stream);
  res.keep = std::make_shared<Held>(Held{std::move(*watch), std::move(slot)});
  res.stream_max = absl::Seconds(seconds);
}

}  // namespace mesh::api
