#include "controlplane/api/rest_server.h"

#include <httplib.h>
#include <openssl/crypto.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/log.h"

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

bool WantsText(const httplib::Request& req) {
  return absl::StrContains(req.get_header_value("Accept"), "text/plain");
}

void SendStatus(const httplib::Request& req, httplib::Response& res, int code,
                absl::string_view message) {
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

void SendError(const httplib::Request& req, httplib::Response& res, const absl::Status& s) {
  SendStatus(req, res, HttpCode(s), s.message());
}

void SendJson(httplib::Response& res, int code, const json& body) {
  res.status = code;
  res.set_content(body.dump(2) + "\n", "application/json");
}

BodyFormat FormatOf(const httplib::Request& req) {
  return absl::StrContains(req.get_header_value("Content-Type"), "json") ? BodyFormat::kJson
                                                                         : BodyFormat::kYaml;
}

std::string NamespaceParam(const httplib::Request& req) {
  std::string ns = req.get_param_value("namespace");
  return ns.empty() ? "default" : ns;
}

// Lines waiting to be written to one watch stream. Bounded: a client that does not read is
// cut off, and resumes from its last resourceVersion as Kubernetes clients do.
struct WatchQueue {
  static constexpr size_t kMaxLines = 10000;
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::string> lines;
  bool overflow = false;

  void Push(std::string line) {
    std::lock_guard lock(mu);
    if (lines.size() >= kMaxLines)
      overflow = true;
    else
      lines.push_back(std::move(line) + "\n");
    cv.notify_one();
  }
};

}  // namespace

RestServer::RestServer(ResourceService* service, RestOptions options)
    : service_(service),
      options_(std::move(options)),
      server_(std::make_unique<httplib::Server>()) {}

RestServer::~RestServer() {
  Stop();
}

absl::StatusOr<int> RestServer::Start() {
  if (options_.admin_token.empty()) return absl::InvalidArgumentError("an admin token is required");
  size_t threads = options_.threads;
  server_->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  server_->set_payload_max_length(options_.max_body_bytes);
  server_->set_read_timeout(30, 0);
  server_->set_write_timeout(30, 0);
  server_->set_keep_alive_max_count(1000);
  server_->set_tcp_nodelay(true);
  Routes();
  int port = options_.port;
  if (port == 0) {
    port = server_->bind_to_any_port(options_.host);
    if (port < 0) return absl::UnavailableError(absl::StrCat("cannot bind ", options_.host));
  } else if (!server_->bind_to_port(options_.host, port)) {
    return absl::UnavailableError(absl::StrCat("cannot bind ", options_.host, ":", port));
  }
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  log::Info("rest: listening on ", options_.host, ":", port);
  return port;
}

void RestServer::Stop() {
  if (stopping_.exchange(true)) return;
  server_->stop();
  if (thread_.joinable()) thread_.join();
}

void RestServer::Routes() {
  httplib::Server& s = *server_;

  s.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    ++requests_;
    if (req.path == "/healthz" || req.path == "/readyz" || req.path == "/version") {
      return httplib::Server::HandlerResponse::Unhandled;
    }
    std::string auth = req.get_header_value("Authorization");
    absl::string_view presented = auth;
    bool ok = absl::ConsumePrefix(&presented, "Bearer ") &&
              presented.size() == options_.admin_token.size() &&
              CRYPTO_memcmp(presented.data(), options_.admin_token.data(), presented.size()) == 0;
    if (ok) return httplib::Server::HandlerResponse::Unhandled;
    ++unauthorized_;
    SendStatus(req, res, 401,
               auth.empty() ? "a bearer token is required" : "the bearer token is not valid");
    return httplib::Server::HandlerResponse::Handled;
  });

  s.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 413) {
      SendStatus(req, res, 413, "the request body is larger than the server accepts");
    } else if (res.status == 404) {
      SendStatus(req, res, 404, absl::StrCat("no route for ", req.method, " ", req.path));
    } else if (res.status == 400) {
      SendStatus(req, res, 400, "malformed HTTP request");
    }
  });

  s.set_exception_handler(
      [](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
        std::string what = "unknown error";
        try {
          std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        log::Error("rest: ", req.method, " ", req.path, ": ", what);
        SendStatus(req, res, 500, what);
      });

  s.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain");
  });
  s.Get("/readyz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain");
  });
  s.Get("/version", [this](const httplib::Request&, httplib::Response& res) {
    SendJson(res, 200, {{"name", "meshpilot"}, {"version", options_.version}});
  });

  s.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    std::string out = absl::StrCat(
        "# TYPE meshpilot_rest_requests_total counter\nmeshpilot_rest_requests_total ",
        requests_.load(), "\n",
        "# TYPE meshpilot_rest_unauthorized_total counter\nmeshpilot_rest_unauthorized_total ",
        unauthorized_.load(), "\n",
        "# TYPE meshpilot_apply_requests_total counter\nmeshpilot_apply_requests_total ",
        applies_.load(), "\n");
    for (const auto& source : metrics_sources_) out += source();
    res.set_content(out, "text/plain; version=0.0.4");
  });

  for (const auto& [path, handler] : json_handlers_) {
    JsonHandler h = handler;
    s.Get(path, [h](const httplib::Request& req, httplib::Response& res) {
      std::map<std::string, std::string> params(req.params.begin(), req.params.end());
      absl::StatusOr<std::string> out = h(params);
      if (!out.ok()) return SendError(req, res, out.status());
      res.set_content(*out + "\n", "application/json");
    });
  }

  for (const auto& [path, handler] : json_post_handlers_) {
    JsonPostHandler h = handler;
    s.Post(path, [h](const httplib::Request& req, httplib::Response& res) {
      absl::StatusOr<std::string> out = h(req.body);
      if (!out.ok()) return SendError(req, res, out.status());
      res.set_content(*out + "\n", "application/json");
    });
  }

  auto apply = [this](const httplib::Request& req, httplib::Response& res, bool remove) {
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
  s.Post("/apply",
         [apply](const httplib::Request& req, httplib::Response& res) { apply(req, res, false); });
  s.Delete("/apply",
           [apply](const httplib::Request& req, httplib::Response& res) { apply(req, res, true); });

  s.Get("/analyze", [this](const httplib::Request& req, httplib::Response& res) {
    std::vector<model::Warning> warnings = service_->Analyze(req.get_param_value("namespace"));
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

  // Resolves a REST path's group, version and plural to a served kind, or answers 404.
  auto resolve = [](const httplib::Request& req, httplib::Response& res, absl::string_view group,
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

  auto list = [this](const httplib::Request& req, httplib::Response& res,
                     const model::KindInfo& kind, std::string version, std::string ns) {
    if (req.get_param_value("watch") != "true" && req.get_param_value("watch") != "1") {
      absl::StatusOr<json> out = service_->List(kind, version, ns);
      if (!out.ok()) return SendError(req, res, out.status());
      return SendJson(res, 200, *out);
    }
    std::optional<int64_t> from;
    if (std::string rv = req.get_param_value("resourceVersion"); !rv.empty() && rv != "0") {
      int64_t n;
      if (!absl::SimpleAtoi(rv, &n) || n < 0) {
        return SendStatus(req, res, 400, "resourceVersion must be a non-negative integer");
      }
      from = n;
    }
    int seconds = options_.max_watch_seconds;
    if (std::string t = req.get_param_value("timeoutSeconds"); !t.empty()) {
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
    auto queue = std::make_shared<WatchQueue>();
    absl::StatusOr<store::WatchPtr> watch = service_->Watch(
        kind, version, ns, from, [queue](std::string line) { queue->Push(std::move(line)); });
    if (!watch.ok()) return SendError(req, res, watch.status());
    auto handle = std::make_shared<store::WatchPtr>(std::move(*watch));
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
    res.set_chunked_content_provider(
        "application/json", [this, queue, handle, slot, deadline](size_t, httplib::DataSink& sink) {
          std::deque<std::string> batch;
          bool overflow;
          {
            std::unique_lock lock(queue->mu);
            queue->cv.wait_for(lock, std::chrono::milliseconds(500),
                               [&] { return !queue->lines.empty() || queue->overflow; });
            batch.swap(queue->lines);
            overflow = queue->overflow;
          }
          for (const std::string& line : batch) {
            if (!sink.write(line.data(), line.size())) return false;
          }
          if (overflow || stopping_ || std::chrono::steady_clock::now() > deadline) {
            sink.done();
            return true;
          }
          return batch.empty() ? sink.is_writable() : true;
        });
  };

  auto write = [this](const httplib::Request& req, httplib::Response& res,
                      const model::KindInfo& kind, const std::string& version,
                      const std::string& ns, const std::string& name, bool replace) {
    bool created = false;
    absl::StatusOr<json> out =
        service_->Write(kind, version, ns, name, req.body, FormatOf(req), replace, &created);
    if (!out.ok()) return SendError(req, res, out.status());
    SendJson(res, created ? 201 : 200, *out);
  };

  auto one = [this](const httplib::Request& req, httplib::Response& res,
                    const model::KindInfo& kind, const std::string& version, const std::string& ns,
                    const std::string& name) {
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

  s.Get(ns_collection, [=](const httplib::Request& req, httplib::Response& res) {
    const auto& m = req.matches;
    if (auto* k = resolve(req, res, m[1].str(), m[2].str(), m[4].str()))
      list(req, res, *k, m[2], m[3]);
  });
  s.Post(ns_collection, [=](const httplib::Request& req, httplib::Response& res) {
    const auto& m = req.matches;
    if (auto* k = resolve(req, res, m[1].str(), m[2].str(), m[4].str()))
      write(req, res, *k, m[2], m[3], "", false);
  });
  s.Get(all_collection, [=](const httplib::Request& req, httplib::Response& res) {
    const auto& m = req.matches;
    if (auto* k = resolve(req, res, m[1].str(), m[2].str(), m[3].str()))
      list(req, res, *k, m[2], "");
  });
  auto item = [=](const httplib::Request& req, httplib::Response& res) {
    const auto& m = req.matches;
    auto* k = resolve(req, res, m[1].str(), m[2].str(), m[4].str());
    if (!k) return;
    if (req.method == "PUT") return write(req, res, *k, m[2], m[3], m[5], true);
    one(req, res, *k, m[2], m[3], m[5]);
  };
  s.Get(ns_item, item);
  s.Put(ns_item, item);
  s.Delete(ns_item, item);

  s.Get(core_ns_collection, [=](const httplib::Request& req, httplib::Response& res) {
    const auto& m = req.matches;
    if (auto* k = resolve(req, res, "", m[1].str(), m[3].str())) list(req, res, *k, m[1], m[2]);
  });
  s.Post(core_ns_collection, [=](const httplib::Request& req, httplib::Response& res) {
    const auto& m = req.matches;
    if (auto* k = resolve(req, res, "", m[1].str(), m[3].str()))
      write(req, res, *k, m[1], m[2], "", false);
  });
  s.Get(core_all_collection, [=](const httplib::Request& req, httplib::Response& res) {
    const auto& m = req.matches;
    if (auto* k = resolve(req, res, "", m[1].str(), m[2].str())) list(req, res, *k, m[1], "");
  });
  auto core_item = [=](const httplib::Request& req, httplib::Response& res) {
    const auto& m = req.matches;
    auto* k = resolve(req, res, "", m[1].str(), m[3].str());
    if (!k) return;
    if (req.method == "PUT") return write(req, res, *k, m[1], m[2], m[4], true);
    one(req, res, *k, m[1], m[2], m[4]);
  };
  s.Get(core_ns_item, core_item);
  s.Put(core_ns_item, core_item);
  s.Delete(core_ns_item, core_item);
}

}  // namespace mesh::api
