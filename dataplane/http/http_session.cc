#include "dataplane/http/http_session.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "dataplane/http/message_rules.h"
#include "dataplane/router/router.h"
#include "dataplane/tls/tls_contexts.h"
#include "dataplane/upstream/policies.h"

namespace mesh::dataplane {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::awaitable;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;
using Stream = MeshStream;

constexpr size_t kChunk = 16 * 1024;

std::chrono::nanoseconds ToChrono(absl::Duration d) {
  return absl::ToChronoNanoseconds(d);
}

absl::string_view View(beast::string_view s) {
  return {s.data(), s.size()};
}

// Hop-by-hop headers: they describe one connection and are never forwarded.
bool HopByHop(http::field f) {
  switch (f) {
    case http::field::connection:
    case http::field::keep_alive:
    case http::field::proxy_connection:
    case http::field::te:
    case http::field::trailer:
    case http::field::upgrade:
    case http::field::proxy_authorization:
    case http::field::expect: return true;
    default: return false;
  }
}

template <bool isRequest, class Fields>
void StripHopByHop(http::header<isRequest, Fields>& h) {
  // Headers the Connection header names are hop-by-hop too.
  std::vector<std::string> named;
  for (auto token : http::token_list(h[http::field::connection])) {
    named.emplace_back(token.data(), token.size());
  }
  for (const std::string& n : named) {
    if (!absl::EqualsIgnoreCase(n, "close") && !absl::EqualsIgnoreCase(n, "keep-alive")) h.erase(n);
  }
  for (auto it = h.begin(); it != h.end();) {
    it = HopByHop(it->name()) ? h.erase(it) : std::next(it);
  }
}

template <bool isRequest, class Fields>
void ApplyOps(http::header<isRequest, Fields>& h, const std::vector<std::string>& remove,
              const std::vector<HeaderOp>& add) {
  for (const std::string& name : remove) h.erase(name);
  for (const HeaderOp& op : add) {
    if (op.overwrite) {
      h.set(op.name, op.value);
    } else {
      h.insert(op.name, op.value);
    }
  }
}

// Lower-cased header names, stored once per request so RequestView can point into them.
class RequestViewBuilder {
 public:
  RequestView Build(const http::request<http::buffer_body>& req, absl::string_view authority,
                    absl::string_view path) {
    size_t total = 0;
    for (const auto& f : req) total += f.name_string().size();
    names_.clear();
    names_.reserve(total);
    std::vector<size_t> ends;
    for (const auto& f : req) {
      for (char c : f.name_string()) names_.push_back(absl::ascii_tolower(c));
      ends.push_back(names_.size());
    }
    RequestView view;
    view.method = View(req.method_string());
    view.authority = authority;
    view.path = path;
    size_t start = 0, i = 0;
    for (const auto& f : req) {
      view.headers.emplace_back(absl::string_view(names_).substr(start, ends[i] - start),
                                View(f.value()));
      start = ends[i++];
    }
    return view;
  }

 private:
  std::string names_;
};

// What an upstream attempt left behind.
struct Attempt {
  AttemptResult result;
  UpstreamConnectionPtr upstream;  // the connection, while its response is unread
  std::unique_ptr<http::response_parser<http::buffer_body>> response;
  bool request_sent = false;  // a streamed request body went out: it cannot be sent again
  const std::string* pool_key = nullptr;  // the host's; the snapshot that holds it outlives us
  std::string overflow;                   // the circuit-breaker limit that refused it, if one did
  // The client's own request body was malformed (a bad chunk): its fault, answered 400, and
  // never counted against the host.
  std::string client_error;
  // The upstream's response header broke the framing rules: answered 502, the connection closed.
  std::string protocol_error;
};

class HttpConnection {
 public:
  HttpConnection(Worker& worker, tcp::socket socket, ListenerRuntimePtr listener,
                 ListenerConfigPtr config, const HttpOptions& options)
      : worker_(worker),
        down_(std::move(socket)),
        listener_(std::move(listener)),
        accepted_config_(std::move(config)),
        options_(options) {
    error_code ec;
    tcp::endpoint peer = down_.socket().remote_endpoint(ec);
    if (!ec) peer_ip_ = peer.address().to_string();
  }

  awaitable<void> Run() {
    WorkerStats& stats = worker_.stats();
    ++stats.downstream_active;
    ++stats.downstream_total;
    Worker::SessionHandle handle = worker_.Register(
        {listener_.get(),
         [this] {
           if (idle_) Close();
         },
         [this](absl::Time now) {
           if (handshake_deadline_ && now > *handshake_deadline_) Close();
           // A body that stopped moving either way for the stream idle timeout ends both sides.
           if (relay_peer_ && now - last_activity_ > options_.stream_idle_timeout) {
             error_code ignored;
             relay_peer_->socket().close(ignored);
             Close();
           }
         }});
    // No co_await inside &&, || or ?: anywhere here: GCC 12 evaluates it even when the
    // left side already decided.
    bool open = true;
    if (accepted_config_->tls != ListenerConfig::Tls::kNone) open = co_await AcceptTls();
    if (open) {
      while (co_await ServeOne()) {
      }
    }
    worker_.Unregister(handle);
    Close();
    --worker_.stats().downstream_active;
  }

 private:
  void Close() {
    error_code ignored;
    down_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    down_.socket().close(ignored);
  }

  // On a listener with mutual TLS: a client that starts a TLS handshake must present a mesh
  // certificate; a plaintext client is served only when the listener is PERMISSIVE. Returns
  // whether the connection may carry requests. Refusals are logged and counted.
  awaitable<bool> AcceptTls() {
    handshake_deadline_ = absl::Now() + options_.header_timeout;  // enforced by the tick
    error_code ec;
    co_await down_.socket().async_wait(tcp::socket::wait_read,
                                       asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return false;
    unsigned char first = 0;
    if (::recv(down_.socket().native_handle(), &first, 1, MSG_PEEK) != 1) co_return false;
    if (first != 0x16) {  // not a TLS handshake record
      handshake_deadline_.reset();
      if (accepted_config_->tls == ListenerConfig::Tls::kPermissive) co_return true;
      ++worker_.stats().downstream_rejected;
      log::Info("meshproxy: ", accepted_config_->name, ": plaintext from ", peer_ip_,
                " refused (mutual TLS is STRICT)");
      co_return false;
    }
    // A gateway's own certificates (from files), else the mesh identity.
    asio::ssl::context* context = nullptr;
    if (const SnapshotPtr& snapshot = worker_.snapshot()) {
      auto it = snapshot->file_tls.find(accepted_config_->name);
      if (it != snapshot->file_tls.end()) file_tls_ = it->second;
    }
    if (file_tls_) {
      context = file_tls_.get();
    } else {
      tls_ = worker_.tls();
      if (!tls_) {
        log::Warn("meshproxy: ", accepted_config_->name, ": TLS from ", peer_ip_,
                  " refused: no workload certificate yet");
        co_return false;
      }
      context = &tls_->server;
    }
    MeshStream::Tls& stream = down_.StartTls(*context);
    co_await stream.async_handshake(asio::ssl::stream_base::server,
                                    asio::redirect_error(asio::use_awaitable, ec));
    handshake_deadline_.reset();
    if (ec) {
      ++worker_.stats().downstream_rejected;
      log::Info("meshproxy: ", accepted_config_->name, ": TLS from ", peer_ip_,
                " refused: ", HandshakeFailure(stream.native_handle(), ec.message()));
      co_return false;
    }
    peer_spiffe_ = PeerSpiffeId(stream.native_handle());
    co_return true;
  }

  // Serves one request; false when the connection is done.
  awaitable<bool> ServeOne() {
    error_code ec;
    // Between requests the connection may idle; once a byte arrives the whole header must follow
    // within the header timeout (a slowloris client is cut off).
    idle_ = true;
    if (buffer_.size() == 0) {
      if (listener_->draining) co_return false;
      down_.expires_after(ToChrono(options_.idle_timeout));
      size_t n = co_await down_.async_read_some(buffer_.prepare(4096),
                                                asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return false;
      buffer_.commit(n);
    }
    idle_ = false;

    http::request_parser<http::buffer_body> parser;
    parser.header_limit(static_cast<uint32_t>(options_.max_header_bytes));
    parser.body_limit(std::numeric_limits<uint64_t>::max());  // streamed, never held whole
    down_.expires_after(ToChrono(options_.header_timeout));
    co_await http::async_read_header(down_, buffer_, parser,
                                     asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      ++worker_.stats().downstream_rejected;
      if (ec == http::error::header_limit) {
        co_await Reply(431, "request header fields too large\n", false);
      } else if (ec == beast::error::timeout) {
        // The stream closed the connection at the header timeout: nothing more to send.
      } else if (ec != http::error::end_of_stream && ec != asio::error::eof &&
                 ec != http::error::partial_message && ec != asio::error::connection_reset) {
        co_await Reply(400, absl::StrCat("bad request: ", ec.message(), "\n"), false);
      }
      co_return false;
    }
    down_.expires_never();  // bodies are watched by the worker's tick, not a timer per read
    http::request<http::buffer_body>& req = parser.get();
    // Framing and routing must mean one thing to us and to the next hop (no smuggling).
    Framing framing;
    if (std::optional<MessageRefusal> refusal =
            CheckRequestHeader(req.base(), req.version(), &framing)) {
      ++worker_.stats().downstream_rejected;
      std::string body = absl::StrCat(
          refusal->status == 501 ? "not implemented: " : "bad request: ", refusal->reason, "\n");
      co_await Reply(refusal->status, std::move(body), false);
      co_return false;
    }
    co_return co_await RouteRequest(parser);
  }

  // Answers a request locally. A closing answer also ends the connection.
  awaitable<bool> Reply(int status, std::string body, bool keep_alive,
                        const std::vector<std::pair<std::string, std::string>>& headers = {},
                        unsigned version = 11) {
    http::response<http::string_body> res{static_cast<http::status>(status), version};
    res.set(http::field::server, "meshproxy");
    res.set(http::field::content_type, "text/plain");
    for (const auto& [k, v] : headers) res.set(k, v);
    res.keep_alive(keep_alive && !listener_->draining);
    res.body() = std::move(body);
    res.prepare_payload();
    error_code ec;
    down_.expires_after(ToChrono(options_.stream_idle_timeout));
    co_await http::async_write(down_, res, asio::redirect_error(asio::use_awaitable, ec));
    co_return !ec && res.keep_alive();
  }

  // Reads and discards what is left of a request body, so the connection can serve the next
  // request after a local answer.
  awaitable<bool> DiscardBody(http::request_parser<http::buffer_body>& parser) {
    char chunk[kChunk];
    error_code ec;
    while (!parser.is_done()) {
      parser.get().body().data = chunk;
      parser.get().body().size = sizeof chunk;
      co_await http::async_read(down_, buffer_, parser,
                                asio::redirect_error(asio::use_awaitable, ec));
      if (ec == http::error::need_buffer) ec = {};
      if (ec) co_return false;
    }
    co_return true;
  }

  awaitable<bool> RouteRequest(http::request_parser<http::buffer_body>& parser) {
    http::request<http::buffer_body>& req = parser.get();
    const bool keep_alive = parser.keep_alive();
    const SnapshotPtr snapshot = worker_.snapshot();  // this request's config, to its end
    const ListenerConfig* listener =
        snapshot ? snapshot->Listener(accepted_config_->name) : nullptr;
    if (!listener) listener = accepted_config_.get();
    const RouteTable* routes = listener->inline_routes
                                   ? listener->inline_routes.get()
                                   : (snapshot ? snapshot->RoutesFor(*listener) : nullptr);

    absl::string_view authority, path;
    if (!SplitTarget(View(req.target()), &authority, &path)) {
      ++worker_.stats().downstream_rejected;
      co_await Reply(400, "bad request: unsupported request target\n", false);
      co_return false;
    }
    std::string path_copy(path);  // the target may be rewritten below; keep the original
    std::string authority_copy;
    if (authority.empty()) {
      authority = View(req[http::field::host]);
    } else {
      // An HTTP proxy request: the target names the service; origin form goes upstream.
      authority_copy = std::string(authority);
      authority = authority_copy;
      req.set(http::field::host, authority_copy);
      req.target(path_copy);
    }
    if (authority.empty() && req.version() >= 11) {
      ++worker_.stats().downstream_rejected;
      co_await Reply(400, "bad request: missing Host\n", false);
      co_return false;
    }
    RequestViewBuilder builder;
    RequestView view = builder.Build(req, authority, path_copy);
    view.tls = down_.tls() != nullptr;
    const uint64_t draw = worker_.Random();
    Decision d = routes ? Decide(*routes, view, draw) : Decision{};
    const std::string route_name = d.route ? d.route->name : "";

    if (d.kind != Decision::Kind::kForward) {
      int status = 404;
      std::string body =
          routes ? absl::StrCat("no route for ", authority, path_copy, "\n")
                 : absl::StrCat("listener ", listener->name, " has no route configuration yet\n");
      std::vector<std::pair<std::string, std::string>> headers;
      if (d.kind == Decision::Kind::kRedirect) {
        status = d.status;
        body.clear();
        headers.emplace_back("location", d.location);
      } else if (d.kind == Decision::Kind::kDirect) {
        status = d.status;
        body.clear();
      } else if (!routes) {
        status = 503;
      }
      worker_.stats().CountRequest(listener->name, route_name, "", status);
      if (!co_await DiscardBody(parser)) co_return false;
      co_return co_await Reply(status, std::move(body), keep_alive, headers, req.version());
    }

    const Route& route = *d.route;
    const WeightedTarget& target = *d.target;
    std::string set_cookie;
    std::optional<uint64_t> hash =
        RequestHash(route, view, peer_ip_, worker_.Random(), &set_cookie);

    // The request as it goes upstream.
    StripHopByHop(req.base());
    if (route.prefix_rewrite.size()) req.target(RewritePath(route, path_copy));
    if (!route.host_rewrite.empty()) req.set(http::field::host, route.host_rewrite);
    ApplyOps(req.base(), route.request_headers_to_remove, route.request_headers_to_add);
    ApplyOps(req.base(), target.request_headers_to_remove, target.request_headers_to_add);
    if (options_.append_forwarded_for && !peer_ip_.empty()) {
      auto xff = req.find("x-forwarded-for");
      if (xff == req.end()) {
        req.set("x-forwarded-for", peer_ip_);
      } else {
        req.set("x-forwarded-for", absl::StrCat(View(xff->value()), ", ", peer_ip_));
      }
    }
    // Who the client is, as the mTLS handshake proved it (Envoy's XFCC); never a client's claim.
    if (!peer_spiffe_.empty()) {
      req.set("x-forwarded-client-cert",
              absl::StrCat("By=", tls_ ? tls_->spiffe_id : "", ";URI=", peer_spiffe_));
    } else {
      req.erase("x-forwarded-client-cert");
    }
    if (req.find("x-forwarded-proto") == req.end())
      req.set("x-forwarded-proto", view.tls ? "https" : "http");
    req.keep_alive(true);  // upstream connections are pooled whatever the client does
    // A POST, PUT or PATCH without a body says so: some servers would otherwise read to EOF.
    if (parser.is_done() && !req.count(http::field::content_length) &&
        (req.method() == http::verb::post || req.method() == http::verb::put ||
         req.method() == http::verb::patch)) {
      req.content_length(0);
    }

    // The fault filter runs before the router: a delay, then an abort.
    if (route.fault) {
      const FaultPolicy& fault = *route.fault;
      if (fault.delay && Chance(fault.delay_per_million)) {
        asio::steady_timer delay(down_.get_executor());
        delay.expires_after(ToChrono(*fault.delay));
        error_code ignored;
        co_await delay.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
      }
      if (fault.abort_status && Chance(fault.abort_per_million)) {
        worker_.stats().CountRequest(listener->name, route_name, "", fault.abort_status);
        if (!co_await DiscardBody(parser)) co_return false;
        std::string body = "fault filter abort\n";
        co_return co_await Reply(static_cast<int>(fault.abort_status), std::move(body), keep_alive,
                                 {}, req.version());
      }
    }
    // CORS: a preflight from an allowed origin is answered here; other requests from it get the
    // allow headers on their response.
    // Headers added to the response besides the route's: CORS, a generated hash cookie.
    std::vector<std::pair<std::string, std::string>> extra_response_headers;
    if (!set_cookie.empty()) extra_response_headers.emplace_back("set-cookie", set_cookie);
    if (route.cors && req.count(http::field::origin)) {
      std::string origin(View(req[http::field::origin]));
      const CorsPolicy& cors = *route.cors;
      bool allowed = false;
      for (const StringPattern& p : cors.allow_origins) allowed = allowed || p.Matches(origin);
      if (allowed) {
        extra_response_headers.emplace_back("access-control-allow-origin", origin);
        if (cors.allow_credentials.value_or(false))
          extra_response_headers.emplace_back("access-control-allow-credentials", "true");
        bool preflight = req.method() == http::verb::options &&
                         req.count(http::field::access_control_request_method);
        if (preflight) {
          auto add = [&](const char* name, const std::string& value) {
            if (!value.empty()) extra_response_headers.emplace_back(name, value);
          };
          add("access-control-allow-methods", cors.allow_methods);
          add("access-control-allow-headers", cors.allow_headers);
          add("access-control-max-age", cors.max_age);
          worker_.stats().CountRequest(listener->name, route_name, "", 200);
          if (!co_await DiscardBody(parser)) co_return false;
          co_return co_await Reply(200, "", keep_alive, extra_response_headers, req.version());
        }
        if (!cors.expose_headers.empty())
          extra_response_headers.emplace_back("access-control-expose-headers", cors.expose_headers);
      }
    }

    const Cluster* cluster = snapshot ? snapshot->clusters->Find(target.cluster) : nullptr;
    if (!cluster || cluster->hosts.empty()) {
      ++worker_.stats().no_healthy_upstream[target.cluster];
      worker_.stats().CountRequest(listener->name, route_name, target.cluster, 503);
      if (!co_await DiscardBody(parser)) co_return false;
      // (Locals, not temporaries: GCC 12 miscompiles array temporaries in co_await operands.)
      std::string body = cluster ? std::string("no healthy upstream\n")
                                 : absl::StrCat("cluster not found: ", target.cluster, "\n");
      std::vector<std::pair<std::string, std::string>> headers = {
          {"x-meshproxy-reason", cluster ? "no_healthy_upstream" : "cluster_not_found"}};
      co_return co_await Reply(503, std::move(body), keep_alive, headers, req.version());
    }
    if (cluster->tls && cluster->tls->unsupported) {
      worker_.stats().CountRequest(listener->name, route_name, cluster->name, 503);
      if (!co_await DiscardBody(parser)) co_return false;
      std::string body = "upstream TLS settings (credentialName) not supported by meshproxy\n";
      std::vector<std::pair<std::string, std::string>> headers = {
          {"x-meshproxy-reason", "upstream_tls_unsupported"}};
      co_return co_await Reply(503, std::move(body), keep_alive, headers, req.version());
    }
    // Mirrors get a copy of a request without a body, and nobody waits for their answer.
    for (const MirrorPolicy& m : route.mirrors) {
      if (parser.is_done() && Chance(m.per_million)) Mirror(snapshot, m.cluster, req);
    }

    ClusterState& limits_state = *cluster->state;
    if (limits_state.requests.load(std::memory_order_relaxed) >= cluster->limits.max_requests) {
      co_return co_await Overflow(parser, *listener, route_name, *cluster, "max_requests",
                                  keep_alive);
    }
    limits_state.requests.fetch_add(1, std::memory_order_relaxed);
    struct InFlight {
      ClusterState& s;
      ~InFlight() { s.requests.fetch_sub(1, std::memory_order_relaxed); }
    } in_flight{limits_state};

    const bool has_body = parser.chunked() || parser.content_length().value_or(0) > 0;
    const int max_attempts =
        1 + (route.retry && !has_body ? static_cast<int>(route.retry->num_retries) : 0);
    const absl::Time start = absl::Now();
    const absl::Time deadline = route.timeout ? start + *route.timeout : absl::InfiniteFuture();
    const Host* previous = nullptr;
    Attempt attempt;
    bool retrying = false;
    for (int n = 1;; ++n) {
      const Host* host = PickHost(*cluster, hash, previous);
      absl::Time attempt_deadline = deadline;
      if (route.retry && route.retry->per_try_timeout)
        attempt_deadline = std::min(deadline, absl::Now() + *route.retry->per_try_timeout);
      attempt = co_await Exchange(parser, *cluster, *host, attempt_deadline);
      if (retrying) limits_state.retries.fetch_sub(1, std::memory_order_relaxed);
      retrying = false;
      if (!attempt.overflow.empty() || !attempt.client_error.empty()) break;
      RecordForOutlierDetection(*cluster, *host, attempt.result, absl::Now());
      if (attempt.result.kind == AttemptResult::Kind::kConnectFailure)
        ++worker_.stats().upstream_connect_failures[cluster->name];
      const AttemptResult& result = attempt.result;
      bool failed = result.kind != AttemptResult::Kind::kResponse || result.status >= 400 ||
                    !result.grpc_status.empty();
      bool retry = failed && n < max_attempts && !attempt.request_sent && absl::Now() < deadline &&
                   Retriable(*route.retry, result);
      if (!retry) break;
      if (limits_state.retries.load(std::memory_order_relaxed) >= cluster->limits.max_retries) {
        ++worker_.stats().overflows[cluster->name];
        limits_state.overflows.fetch_add(1, std::memory_order_relaxed);
        break;  // the retry budget is spent: this answer stands
      }
      limits_state.retries.fetch_add(1, std::memory_order_relaxed);
      retrying = true;
      attempt.upstream.reset();
      previous = host;
      asio::steady_timer backoff(down_.get_executor());
      backoff.expires_after(ToChrono(RetryBackoff(n, worker_.Random())));
      error_code ignored;
      co_await backoff.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
    }
    if (!attempt.overflow.empty()) {
      co_return co_await Overflow(parser, *listener, route_name, *cluster, attempt.overflow,
                                  keep_alive);
    }
    if (!attempt.client_error.empty()) {
      ++worker_.stats().downstream_rejected;
      worker_.stats().CountRequest(listener->name, route_name, cluster->name, 400);
      std::string body = absl::StrCat("bad request: ", attempt.client_error, "\n");
      co_return co_await Reply(400, std::move(body), false, {}, req.version());
    }
    worker_.stats().upstream_latency[cluster->name].Record(absl::Now() - start);

    if (attempt.result.kind != AttemptResult::Kind::kResponse) {
      int status = 503;
      std::string body =
          "upstream connect error or disconnect/reset before headers. reset reason: connection "
          "failure\n";
      if (!attempt.protocol_error.empty()) {
        status = 502;
        body = absl::StrCat(
            "upstream connect error or disconnect/reset before headers. reset reason: protocol "
            "error (",
            attempt.protocol_error, ")\n");
      } else if (attempt.result.kind == AttemptResult::Kind::kTimeout) {
        status = 504;
        body = "upstream request timeout\n";
        ++worker_.stats().upstream_timeouts[cluster->name];
      } else if (attempt.result.kind == AttemptResult::Kind::kReset) {
        body = "upstream connect error or disconnect/reset before headers. reset reason: reset\n";
      }
      worker_.stats().CountRequest(listener->name, route_name, cluster->name, status);
      // The client's body may be half read; this connection cannot be trusted for another request.
      bool reusable = parser.is_done();
      if (!reusable && !attempt.request_sent) reusable = co_await DiscardBody(parser);
      co_return co_await Reply(status, std::move(body), keep_alive && reusable, {}, req.version());
    }
    worker_.stats().CountRequest(listener->name, route_name, cluster->name,
                                 attempt.response->get().result_int());
    co_return co_await RelayResponse(parser, attempt, *cluster, route, target,
                                     extra_response_headers, keep_alive);
  }

  bool Chance(uint32_t per_million) {
    return per_million >= 1'000'000 || worker_.Random() % 1'000'000 < per_million;
  }

  // A circuit breaker refused the request: a fast 503 saying which limit, as Envoy answers.
  awaitable<bool> Overflow(http::request_parser<http::buffer_body>& parser,
                           const ListenerConfig& listener, const std::string& route_name,
                           const Cluster& cluster, const std::string& limit, bool keep_alive) {
    ++worker_.stats().overflows[cluster.name];
    cluster.state->overflows.fetch_add(1, std::memory_order_relaxed);
    worker_.stats().CountRequest(listener.name, route_name, cluster.name, 503);
    if (!co_await DiscardBody(parser)) co_return false;
    std::string body =
        "upstream connect error or disconnect/reset before headers. reset reason: overflow\n";
    std::vector<std::pair<std::string, std::string>> headers = {
        {"x-envoy-overloaded", "true"}, {"x-meshproxy-reason", "overflow_" + limit}};
    co_return co_await Reply(503, std::move(body), keep_alive, headers, parser.get().version());
  }

  // Sends a copy of `req` (header only) to a host of `cluster`, with "-shadow" added to its host
  // as Envoy does; the answer is read and dropped. Best effort: failures are only logged.
  void Mirror(SnapshotPtr snapshot, const std::string& cluster,
              const http::request<http::buffer_body>& req) {
    http::request<http::empty_body> copy;
    copy.base() = req.base();
    copy.set(http::field::host, absl::StrCat(View(req[http::field::host]), "-shadow"));
    copy.content_length(boost::none);
    copy.keep_alive(false);
    asio::co_spawn(down_.get_executor(),
                   SendMirror(std::move(snapshot), cluster, std::move(copy), worker_.Random()),
                   asio::detached);
  }

  static awaitable<void> SendMirror(SnapshotPtr snapshot, std::string cluster_name,
                                    http::request<http::empty_body> req, uint64_t random) {
    const Cluster* cluster = snapshot->clusters->Find(cluster_name);
    const Host* host = cluster ? cluster->Pick(random, std::nullopt, absl::Now()) : nullptr;
    if (!host) co_return;
    error_code ec;
    asio::ip::address ip = asio::ip::make_address(host->address, ec);
    if (ec) co_return;
    Stream up(co_await asio::this_coro::executor);
    up.expires_after(std::chrono::seconds(5));
    co_await up.tcp().async_connect(tcp::endpoint(ip, host->port),
                                    asio::redirect_error(asio::use_awaitable, ec));
    if (!ec) co_await http::async_write(up, req, asio::redirect_error(asio::use_awaitable, ec));
    beast::flat_buffer buffer;
    http::response_parser<http::empty_body> response;
    response.skip(true);  // headers only; the body is dropped with the connection
    if (!ec)
      co_await http::async_read_header(up, buffer, response,
                                       asio::redirect_error(asio::use_awaitable, ec));
    if (ec) log::Debug("meshproxy: mirror to ", cluster_name, " failed: ", ec.message());
    up.socket().close(ec);
  }

  const Host* PickHost(const Cluster& cluster, std::optional<uint64_t> hash, const Host* avoid) {
    absl::Time now = absl::Now();
    const Host* host = cluster.Pick(worker_.Random(), hash, now);
    // A retry goes elsewhere when it can.
    for (int i = 0; avoid && host == avoid && cluster.hosts.size() > 1 && i < 3; ++i)
      host = cluster.Pick(worker_.Random(), std::nullopt, now);
    return host;
  }

  // Sends the request to `host` and reads the response header. A pooled connection the server
  // closed before answering is replaced by a new one once, when nothing was streamed yet.
  awaitable<Attempt> Exchange(http::request_parser<http::buffer_body>& parser,
                              const Cluster& cluster, const Host& host, absl::Time deadline) {
    Attempt out;
    out.pool_key = &host.pool_key;
    const std::string& key = host.pool_key;
    host.state->active_requests.fetch_add(1, std::memory_order_relaxed);
    struct Done {
      const Host& h;
      ~Done() { h.state->active_requests.fetch_sub(1, std::memory_order_relaxed); }
    } done{host};
    // A pooled connection the server closed meanwhile (a keep-alive race, a draining listener)
    // gets one more try, on a new connection: the other pooled ones may be just as stale.
    for (int tries = 0; tries < 2; ++tries) {
      upstream_buffer_.clear();  // what is left belongs to an abandoned attempt's connection
      UpstreamConnectionPtr connection =
          tries == 0 ? worker_.pool().Take(key, absl::Now()) : nullptr;
      const bool reused = connection != nullptr;
      error_code ec;
      if (!connection) {
        // A new connection must fit under max_connections; otherwise the request waits for one
        // (up to max_pending_requests wait) or is refused.
        ClusterState& state = *cluster.state;
        if (state.connections.load(std::memory_order_relaxed) >= cluster.limits.max_connections) {
          if (state.pending.load(std::memory_order_relaxed) >=
              cluster.limits.max_pending_requests) {
            out.overflow = "max_pending_requests";
            co_return out;
          }
          state.pending.fetch_add(1, std::memory_order_relaxed);
          absl::Time give_up = std::min(deadline, absl::Now() + cluster.connect_timeout);
          asio::steady_timer wait(down_.get_executor());
          while (!connection &&
                 state.connections.load(std::memory_order_relaxed) >=
                     cluster.limits.max_connections &&
                 absl::Now() < give_up) {
            wait.expires_after(std::chrono::milliseconds(1));
            co_await wait.async_wait(asio::redirect_error(asio::use_awaitable, ec));
            connection = worker_.pool().Take(key, absl::Now());
          }
          state.pending.fetch_sub(1, std::memory_order_relaxed);
          if (!connection && absl::Now() >= give_up) {
            out.overflow = "max_connections";
            co_return out;
          }
        }
      }
      if (!connection) {
        connection = std::make_unique<UpstreamConnection>(down_.get_executor(), cluster.state);
        asio::ip::address ip = asio::ip::make_address(host.address, ec);
        if (ec) {
          log::Warn("meshproxy: cluster ", cluster.name, ": endpoint ", host.address,
                    " is not an IP address");
          out.result.kind = AttemptResult::Kind::kConnectFailure;
          co_return out;
        }
        absl::Duration connect = std::min(cluster.connect_timeout, deadline - absl::Now());
        connection->stream.expires_after(ToChrono(std::max(connect, absl::Milliseconds(1))));
        co_await connection->stream.tcp().async_connect(
            tcp::endpoint(ip, host.port), asio::redirect_error(asio::use_awaitable, ec));
        if (ec) {
          out.result.kind = ec == beast::error::timeout && absl::Now() >= deadline
                                ? AttemptResult::Kind::kTimeout
                                : AttemptResult::Kind::kConnectFailure;
          co_return out;
        }
        connection->stream.socket().set_option(tcp::no_delay(true), ec);
        if (cluster.tls) {
          absl::Status secured = co_await SecureUpstream(*connection, cluster, host, deadline);
          if (!secured.ok()) {
            log::Warn("meshproxy: cluster ", cluster.name, ": ", secured.message());
            out.result.kind = AttemptResult::Kind::kConnectFailure;
            co_return out;
          }
        }
      }
      ++connection->requests;
      Stream* up = &connection->stream;
      up->expires_never();  // the response header's wait below carries the deadline
      bool client_failed = false;
      ec = co_await SendRequest(parser, *up, &out.request_sent, &client_failed);
      if (client_failed) {
        // The client's body broke off or broke the chunked syntax: its error, not the host's.
        error_code ignored;
        up->socket().close(ignored);
        out.client_error = ec.message();
        out.result.kind = AttemptResult::Kind::kReset;
        co_return out;
      }
      std::unique_ptr<http::response_parser<http::buffer_body>> response;
      // Interim answers (100 Continue, 103 Early Hints) are read and dropped: the client gets
      // the final response, never an interim one in its place.
      for (int interim = 0; !ec; ++interim) {
        response = std::make_unique<http::response_parser<http::buffer_body>>();
        response->body_limit(std::numeric_limits<uint64_t>::max());
        if (parser.get().method() == http::verb::head) response->skip(true);
        up->expires_after(ToChrono(std::min(options_.stream_idle_timeout, deadline - absl::Now())));
        auto watching = WatchForClientClose(*up);
        co_await http::async_read_header(*up, upstream_buffer_, *response,
                                         asio::redirect_error(asio::use_awaitable, ec));
        StopWatching(watching);
        if (client_gone_) {
          out.result.kind = AttemptResult::Kind::kReset;
          co_return out;
        }
        const int status = ec ? 0 : response->get().result_int();
        if (status < 100 || status >= 200 || status == 101) break;
        if (interim == 8) ec = http::error::bad_status;  // a server that never answers for real
      }
      if (!ec) {
        Framing framing;
        if (std::optional<MessageRefusal> refusal = CheckResponseHeader(
                response->get().base(), response->get().result_int(), &framing)) {
          log::Warn("meshproxy: cluster ", cluster.name, ": ", host.address, ":", host.port,
                    " sent an invalid response: ", refusal->reason);
          upstream_buffer_.clear();
          error_code ignored;
          up->socket().close(ignored);
          out.protocol_error = refusal->reason;
          out.result.kind = AttemptResult::Kind::kReset;
          co_return out;
        }
      }
      if (!ec) {
        out.result.kind = AttemptResult::Kind::kResponse;
        out.result.status = response->get().result_int();
        auto grpc = response->get().find("grpc-status");
        if (grpc != response->get().end()) out.result.grpc_status = View(grpc->value());
        out.upstream = std::move(connection);
        out.response = std::move(response);
        co_return out;
      }
      upstream_buffer_.clear();
      error_code ignored;
      up->socket().close(ignored);
      if (ec == beast::error::timeout) {
        out.result.kind = AttemptResult::Kind::kTimeout;
        co_return out;
      }
      out.result.kind = AttemptResult::Kind::kReset;
      if (!reused || out.request_sent) co_return out;  // a new connection failed: report it
    }
    co_return out;
  }

  // While the request waits for its response, a client that hangs up cancels it: the upstream
  // connection is closed, so the server stops working for nobody (Envoy resets the stream).
  std::shared_ptr<bool> WatchForClientClose(Stream& up) {
    auto watching = std::make_shared<bool>(true);
    down_.socket().async_wait(tcp::socket::wait_read, [this, watching, &up](error_code ec) {
      if (ec || !*watching) return;  // checked first: after StopWatching `this` may be gone
      char byte;
      ssize_t n = ::recv(down_.socket().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
        client_gone_ = true;
        error_code ignored;
        up.socket().close(ignored);
      }
      // n > 0: a pipelined request; it waits its turn.
    });
    return watching;
  }
  void StopWatching(const std::shared_ptr<bool>& watching) {
    *watching = false;
    error_code ignored;
    down_.socket().cancel(ignored);
  }

  // ISTIO_MUTUAL: a TLS handshake presenting this proxy's workload certificate, the server's
  // verified against the mesh root and, when the cluster names identities, its SPIFFE ID checked.
  awaitable<absl::Status> SecureUpstream(UpstreamConnection& connection, const Cluster& cluster,
                                         const Host& host, absl::Time deadline) {
    asio::ssl::context* context = nullptr;
    if (cluster.tls->files) {
      // SIMPLE or MUTUAL with files: the context the snapshot loaded for this cluster.
      std::shared_ptr<asio::ssl::context> files;
      if (const SnapshotPtr& snapshot = worker_.snapshot()) {
        auto it = snapshot->cluster_tls.find(cluster.name);
        if (it != snapshot->cluster_tls.end()) files = it->second;
      }
      if (!files) co_return absl::UnavailableError("no TLS context for the cluster");
      context = files.get();
      connection.tls = std::move(files);
    } else {
      const TlsContextsPtr tls = worker_.tls();
      if (!tls) co_return absl::UnavailableError("no workload certificate yet for mutual TLS");
      context = &tls->client;
      connection.tls = tls;
    }
    MeshStream::Tls& stream = connection.stream.StartTls(*context);
    if (!cluster.tls->sni.empty())
      SSL_set_tlsext_host_name(stream.native_handle(), cluster.tls->sni.c_str());
    absl::Duration limit = std::min(cluster.connect_timeout, deadline - absl::Now());
    connection.stream.expires_after(ToChrono(std::max(limit, absl::Milliseconds(1))));
    error_code ec;
    co_await stream.async_handshake(asio::ssl::stream_base::client,
                                    asio::redirect_error(asio::use_awaitable, ec));
    connection.stream.expires_never();
    if (ec) {
      co_return absl::UnavailableError(
          absl::StrCat("TLS handshake with ", host.address, ":", host.port,
                       " failed: ", HandshakeFailure(stream.native_handle(), ec.message())));
    }
    std::string peer = PeerSpiffeId(stream.native_handle());
    const auto& allowed = cluster.tls->san_uris;
    if (!allowed.empty() && std::find(allowed.begin(), allowed.end(), peer) == allowed.end()) {
      co_return absl::PermissionDeniedError(absl::StrCat(
          host.address, ":", host.port, " presented ", peer.empty() ? "no identity" : peer,
          ", not one of the identities its DestinationRule names"));
    }
    co_return absl::OkStatus();
  }

  // Writes the request header and, streaming, its body. `body_sent` turns true once body bytes
  // went out (the request can then not be replayed).
  // `client_failed` turns true when the error was the client's (a malformed or cut-off body).
  awaitable<error_code> SendRequest(http::request_parser<http::buffer_body>& parser, Stream& up,
                                    bool* body_sent, bool* client_failed) {
    http::request_serializer<http::buffer_body> serializer{parser.get()};
    *body_sent = !parser.is_done();
    co_return co_await Relay(down_, buffer_, parser, up, serializer, false, client_failed);
  }

  // Sends a message whose header `parser` has read from `in` to `out`, streaming its body through
  // a fixed buffer: the header leaves with the first body bytes (one write for a small message),
  // and no body is ever held whole. `eof_ends_body`: the body is delimited by `in` closing.
  // `in_failed` (optional) turns true when the error came from reading `in`.
  template <bool isRequest>
  awaitable<error_code> Relay(Stream& in, beast::flat_buffer& in_buffer,
                              http::parser<isRequest, http::buffer_body>& parser, Stream& out,
                              http::serializer<isRequest, http::buffer_body>& serializer,
                              bool eof_ends_body, bool* in_failed = nullptr) {
    auto& body = parser.get().body();
    char chunk[kChunk];
    error_code ec;
    // No timer per operation: the worker's tick closes both sides once nothing moved for the
    // stream idle timeout.
    in.expires_never();
    out.expires_never();
    relay_peer_ = &in == &down_ ? &out : &in;
    last_activity_ = absl::Now();
    struct Done {
      Stream*& peer;
      ~Done() { peer = nullptr; }
    } done{relay_peer_};
    for (;;) {
      bool ended = parser.is_done();
      if (!ended) {
        body.data = chunk;
        body.size = sizeof chunk;
        co_await http::async_read(in, in_buffer, parser,
                                  asio::redirect_error(asio::use_awaitable, ec));
        if (ec == http::error::need_buffer) ec = {};
        if (eof_ends_body && (ec == http::error::end_of_stream || ec == asio::error::eof)) {
          ec = {};
          ended = true;
        }
        if (ec) {
          if (in_failed) *in_failed = true;
          co_return ec;
        }
        last_activity_ = absl::Now();
        body.size = sizeof chunk - body.size;
        body.data = body.size ? chunk : nullptr;
        ended = ended || parser.is_done();
      } else {
        body.data = nullptr;
        body.size = 0;
      }
      body.more = !ended;
      co_await http::async_write(out, serializer, asio::redirect_error(asio::use_awaitable, ec));
      last_activity_ = absl::Now();
      if (ec == http::error::need_buffer) ec = {};
      if (ec || ended) co_return ec;
    }
  }

  awaitable<bool> RelayResponse(
      http::request_parser<http::buffer_body>& request_parser, Attempt& attempt,
      const Cluster& cluster, const dataplane::Route& route, const WeightedTarget& target,
      const std::vector<std::pair<std::string, std::string>>& extra_headers, bool keep_alive) {
    http::response_parser<http::buffer_body>& parser = *attempt.response;
    http::response<http::buffer_body>& res = parser.get();
    const bool upstream_keep_alive = parser.keep_alive();
    StripHopByHop(res.base());
    ApplyOps(res.base(), route.response_headers_to_remove, route.response_headers_to_add);
    ApplyOps(res.base(), target.response_headers_to_remove, target.response_headers_to_add);
    for (const auto& [name, value] : extra_headers) {
      if (name == "set-cookie") {
        res.insert(name, value);  // the upstream's own cookies stay
      } else {
        res.set(name, value);
      }
    }
    // A body that ends with the upstream connection cannot keep the client's connection: give
    // it chunked framing when the client speaks HTTP/1.1, else close after it.
    const bool eof_delimited = !parser.is_done() && !parser.chunked() && !parser.content_length();
    bool down_keep_alive = keep_alive && !listener_->draining;
    if (eof_delimited) {
      if (request_parser.get().version() >= 11) {
        res.chunked(true);
      } else {
        down_keep_alive = false;
      }
    }
    // A client that sent a body we did not read (the upstream answered early) cannot be reused.
    if (!request_parser.is_done()) down_keep_alive = false;
    res.keep_alive(down_keep_alive);
    res.version(request_parser.get().version());

    http::response_serializer<http::buffer_body> serializer{res};
    Stream& up = attempt.upstream->stream;
    error_code ec = co_await Relay(up, upstream_buffer_, parser, down_, serializer, eof_delimited);
    const uint32_t per_connection = cluster.limits.max_requests_per_connection;
    if (!ec && parser.is_done() && upstream_keep_alive && upstream_buffer_.size() == 0 &&
        (per_connection == 0 || attempt.upstream->requests < per_connection)) {
      worker_.pool().Give(*attempt.pool_key, std::move(attempt.upstream), absl::Now(),
                          cluster.limits.idle_timeout);
    } else {
      upstream_buffer_.clear();
      error_code ignored;
      up.socket().close(ignored);
    }
    co_return !ec && down_keep_alive;
  }

  Worker& worker_;
  TlsContextsPtr tls_;  // the identity the client's TLS was accepted with; outlives down_
  std::shared_ptr<asio::ssl::context> file_tls_;  // or a gateway's certificates from files
  Stream down_;
  beast::flat_buffer buffer_;           // bytes read from the client, not yet parsed
  beast::flat_buffer upstream_buffer_;  // bytes read from the current upstream connection
  ListenerRuntimePtr listener_;
  ListenerConfigPtr accepted_config_;
  const HttpOptions& options_;
  std::string peer_ip_;
  bool idle_ = true;
  std::optional<absl::Time> handshake_deadline_;  // while waiting for a client's first bytes
  std::string peer_spiffe_;                       // the client's proven identity, over mTLS
  bool client_gone_ = false;      // the client hung up while its request waited for a response
  Stream* relay_peer_ = nullptr;  // while a body is relayed: the other side's stream
  absl::Time last_activity_;      // the last time a relayed body moved
};

}  // namespace

awaitable<void> ServeHttp(Worker& worker, tcp::socket socket, ListenerRuntimePtr listener,
                          ListenerConfigPtr config, const HttpOptions& options) {
  error_code ec;
  socket.set_option(tcp::no_delay(true), ec);
  HttpConnection connection(worker, std::move(socket), std::move(listener), std::move(config),
                            options);
  co_await connection.Run();
}

}  // namespace mesh::dataplane
