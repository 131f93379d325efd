#include "dataplane/http/connection_manager.h"

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "dataplane/http/request_log.h"
#include "dataplane/telemetry/request_telemetry.h"
#include "dataplane/upstream/upstream_request.h"

namespace mesh::dataplane {
namespace {

HttpProtocol UpstreamProtocol(const Cluster& cluster, HttpProtocol downstream,
                              const RequestHead& head) {
  if (!head.upgrade.empty()) return HttpProtocol::kHttp11;  // WebSocket: an HTTP/1.1 upgrade
  switch (cluster.protocol) {
    case Cluster::Protocol::kHttp2: return HttpProtocol::kHttp2;
    case Cluster::Protocol::kDownstream:
      return downstream == HttpProtocol::kHttp2 ? HttpProtocol::kHttp2 : HttpProtocol::kHttp11;
    case Cluster::Protocol::kHttp11: break;
  }
  return HttpProtocol::kHttp11;
}

const std::string* Reason(const LocalReply& reply) {
  for (const auto& [name, value] : reply.headers) {
    if (name == "x-meshproxy-reason") return &value;
  }
  return nullptr;
}

}  // namespace

// One request stream, from the client's head to the end of its response.
class ConnectionManager::ActiveStream : public RequestDecoder,
                                        public StreamCallbacks,
                                        public UpstreamRequestCallbacks {
 public:
  ActiveStream(ConnectionManager& manager, ResponseEncoder& encoder)
      : manager_(manager), encoder_(encoder) {
    encoder_.stream().SetCallbacks(this);
  }
  ~ActiveStream() override {
    if (upstream_) upstream_->Cancel();
  }

  absl::Time last_activity() const { return last_activity_; }
  void OnIdleTimeout() {
    if (upstream_) upstream_->Cancel();
    if (!response_started_)
      SendLocalReply(LocalReply{408, "stream timeout", {}, std::nullopt, "SI"});
    if (!finished_) {
      // The request had not ended (or the response had started): the stream ends here.
      reset_ = true;
      encoder_.stream().SetCallbacks(nullptr);
      encoder_.stream().Reset(ResetReason::kLocal);
      MaybeFinish();
    }
  }

  // RequestDecoder
  void DecodeHeaders(RequestHeadPtr head, bool end_stream) override {
    Touch();
    request_ended_ = end_stream;
    protocol_ = head->protocol;
    const std::string* content_type = head->headers.Get("content-type");
    grpc_ = content_type && IsGrpcContentType(*content_type);
    HttpContext& context = manager_.context_;
    const telemetry::LocalWorkload& local = context.local_workload();
    telemetry_.emplace(
        local, context.peer_cache(),
        local.sidecar && manager_.listener_config_.direction == ListenerConfig::Direction::kInbound,
        last_activity_);
    telemetry_->OnRequestHead(head->headers, head->authority, grpc_);
    // Every request carries an id, kept when the client sent one (Envoy's generate_request_id).
    if (!head->headers.Get("x-request-id"))
      head->headers.Add("x-request-id", telemetry::RandomUuid(context.Random(), context.Random()));
    routing_ = context.RoutingFor(manager_.listener_config_);
    const ListenerConfig& current =
        routing_.listener ? *routing_.listener : manager_.listener_config_;
    if (current.tracing) StartSpan(current.tracing, *head);
    if (!current.access_logs.empty()) access_log_.emplace(current.access_logs, *head);
    if (std::optional<LocalReply> refused = Authenticate(*head)) {
      head_ = std::move(head);
      SendLocalReply(std::move(*refused));
      return;
    }
    if (!Authorized(*head)) {
      head_ = std::move(head);
      SendLocalReply(LocalReply{403, "RBAC: access denied", {}, std::nullopt, ""});
      return;
    }
    result_ = RouteRequest(routing_.routes, routing_.clusters, *head, manager_.downstream_,
                           [&context] { return context.Random(); });
    if (result_.route) {
      route_name_ = result_.route->name;
      if (span_ && !result_.route->operation.empty()) span_->SetOperation(result_.route->operation);
    }
    if (result_.target) cluster_name_ = result_.target->cluster;
    head_ = std::move(head);
    if (result_.delay) {
      telemetry_->AddFlag("DI");
      delay_timer_ = context.time().CreateTimer([this] { Proceed(); });
      delay_timer_->Enable(*result_.delay);
      return;
    }
    Proceed();
  }
  void DecodeData(absl::string_view data, bool end_stream) override {
    Touch();
    if (telemetry_) telemetry_->OnRequestBody(data);
    if (end_stream) request_ended_ = true;
    if (upstream_) {
      upstream_->SendData(data, end_stream);
    } else if (!response_ended_) {
      pending_body_.append(data.data(), data.size());  // held while a fault delay runs
    }
    MaybeFinish();
  }
  void DecodeTrailers(HeaderMap trailers) override {
    Touch();
    request_ended_ = true;
    if (upstream_) {
      upstream_->SendTrailers(std::move(trailers));
    } else if (!response_ended_) {
      pending_trailers_ = std::move(trailers);
    }
    MaybeFinish();
  }

  // StreamCallbacks (the downstream stream)
  void OnReset(ResetReason, absl::string_view) override {
    if (telemetry_ && !response_ended_) telemetry_->AddFlag("DC");
    reset_ = true;
    if (upstream_) upstream_->Cancel();
    MaybeFinish();
  }
  void OnAboveWriteBufferHighWatermark() override {
    if (upstream_) upstream_->ReadDisable(true);
  }
  void OnBelowWriteBufferLowWatermark() override {
    if (upstream_) upstream_->ReadDisable(false);
  }

  // UpstreamRequestCallbacks
  void OnUpstreamHeaders(ResponseHeadPtr head, bool end_stream) override {
    Touch();
    StripHopByHop(head->headers, head->status == 101);
    if (const Route* route = result_.route) {
      ApplyHeaderOps(head->headers, route->response_headers_to_remove,
                     route->response_headers_to_add);
    }
    if (const WeightedTarget* target = result_.target) {
      ApplyHeaderOps(head->headers, target->response_headers_to_remove,
                     target->response_headers_to_add);
    }
    for (const auto& [name, value] : result_.response_headers) {
      if (name == "set-cookie") {
        head->headers.Add(name, value);  // the upstream's own cookies stay
      } else {
        head->headers.Set(name, value);
      }
    }
    manager_.context_.stats().CountRequest(manager_.listener_, route_name_, cluster_name_,
                                           head->status);
    if (telemetry_) telemetry_->OnResponseHead(head->status, head->headers, UpstreamPeer());
    if (access_log_) access_log_->OnResponseHead(head->headers, UpstreamHost());
    response_started_ = true;
    if (end_stream) response_ended_ = true;
    encoder_.EncodeHeaders(*head, end_stream);
    MaybeFinish();
  }
  void OnUpstreamData(absl::string_view data, bool end_stream) override {
    Touch();
    if (telemetry_) telemetry_->OnResponseBody(data);
    if (end_stream) response_ended_ = true;
    encoder_.EncodeData(data, end_stream);
    MaybeFinish();
  }
  void OnUpstreamTrailers(HeaderMap trailers) override {
    Touch();
    if (telemetry_) telemetry_->OnResponseTrailers(trailers);
    response_ended_ = true;
    encoder_.EncodeTrailers(trailers);
    MaybeFinish();
  }
  void OnUpstreamFailure(LocalReply reply) override { SendLocalReply(std::move(reply)); }
  void OnUpstreamReset() override {
    if (telemetry_ && response_started_) telemetry_->AddFlag("UR");
    reset_ = true;
    encoder_.stream().SetCallbacks(nullptr);
    encoder_.stream().Reset(ResetReason::kLocal);
    MaybeFinish();
  }
  void OnUpstreamWriteBlocked(bool blocked) override { encoder_.stream().ReadDisable(blocked); }

 private:
  void Touch() { last_activity_ = manager_.context_.time().Now(); }

  // The host that answered (or was tried last), "ip:port"; empty when none was.
  std::string UpstreamHost() const {
    const Host* host = upstream_ ? upstream_->host() : nullptr;
    return host ? absl::StrCat(host->address, ":", host->port) : std::string();
  }

  // The workload behind the host that answered, as EDS describes it.
  const telemetry::PeerInfo* UpstreamPeer() const {
    const Host* host = upstream_ ? upstream_->host() : nullptr;
    return host && host->peer ? host->peer.get() : nullptr;
  }

  // Continues or starts the request's trace, and writes its context into the head that goes
  // upstream; the span is kept only when sampled and there is somewhere to send it.
  void StartSpan(const telemetry::TracingConfigPtr& tracing, RequestHead& head) {
    HttpContext& context = manager_.context_;
    span_.emplace(*tracing, head.headers, head.method, head.authority, head.path,
                  ProtocolName(head.protocol), last_activity_,
                  [&context] { return context.Random(); });
    if (span_->sampled() && context.local_workload().spans) {
      tracing_ = tracing;
    } else {
      span_.reset();
    }
  }

  void FinishSpan(absl::Time now) {
    const telemetry::LocalWorkload& local = manager_.context_.local_workload();
    telemetry::SpanOutcome outcome;
    outcome.status = telemetry_->response_code();
    outcome.flags = telemetry_->flags();
    outcome.upstream_cluster = cluster_name_;
    outcome.peer_address = manager_.downstream_.peer_ip;
    outcome.request_bytes = telemetry_->request_bytes();
    outcome.response_bytes = telemetry_->response_bytes();
    outcome.reset = reset_;
    local.spans->Export(std::move(tracing_), span_->Finish(outcome, local.span_identity, now));
    span_.reset();
  }

  // The listener's JWT filter (RequestAuthentication): a token that does not verify is 401; a
  // verified one's facts go to authorization. Its header may be removed or a payload added.
  std::optional<LocalReply> Authenticate(RequestHead& head) {
    const ListenerConfig* listener = routing_.listener;
    if (!listener || !listener->jwt_authn) return std::nullopt;
    JwtAuthn::Outcome outcome =
        listener->jwt_authn->Authenticate(head.headers, head.path, manager_.context_.time().Now());
    if (outcome.allowed) {
      authn_ = std::move(outcome.facts);
      return std::nullopt;
    }
    ++manager_.context_.stats().jwt_refused;
    log::Debug("meshproxy: ", listener->name, ": JWT refused: ", outcome.error);
    return LocalReply{
        401,
        outcome.error,
        {{"www-authenticate", absl::StrCat("Bearer realm=\"http://", head.authority, head.path,
                                           "\", error=\"invalid_token\"")}},
        std::nullopt,
        ""};
  }

  // The listener's RBAC filters (AuthorizationPolicy), as the listener is configured now.
  bool Authorized(const RequestHead& head) {
    const ListenerConfig* listener = routing_.listener;
    if (!listener || listener->http_rbac.empty()) return true;
    const DownstreamInfo& downstream = manager_.downstream_;
    RbacInput in;
    in.headers = &head.headers;
    in.method = head.method;
    in.authority = head.authority;
    in.path = head.path;
    in.url_path = UrlPathOf(head.path);
    in.source_ip = in.remote_ip = downstream.peer_ip;
    in.principal = downstream.peer_identity;
    in.destination_port = listener->port;
    in.authn = authn_.empty() ? nullptr : &authn_;
    const std::string* denied_by = nullptr;
    if (RbacAllows(listener->http_rbac, in, &denied_by)) return true;
    ++manager_.context_.stats().rbac_denied;
    log::Debug("meshproxy: ", listener->name, ": RBAC denied ", head.method, " ", head.path,
               " from ",
               downstream.peer_identity.empty() ? downstream.peer_ip : downstream.peer_identity,
               denied_by ? " by " + *denied_by : std::string(" (no ALLOW policy matched)"));
    return false;
  }

  // After the router stage (and any fault delay): answer, or go upstream.
  void Proceed() {
    if (reset_) return;
    if (result_.reply) {
      SendLocalReply(std::move(*result_.reply));
      return;
    }
    const Cluster& cluster = *result_.cluster;
    if (request_ended_ && pending_body_.empty()) {
      for (const MirrorPolicy* mirror : result_.mirrors) {
        if (const Cluster* c = routing_.clusters->Find(mirror->cluster))
          manager_.StartMirror(*c, *result_.route, *head_);
      }
    }
    HttpContext& context = manager_.context_;
    UpstreamRequest::Settings settings;
    settings.protocol = UpstreamProtocol(cluster, protocol_, *head_);
    settings.buffer_limit = manager_.settings_.buffer_limit;
    if (const std::string* timeout = head_->headers.Get("grpc-timeout"))
      settings.grpc_timeout = ParseGrpcTimeout(*timeout);
    cluster_name_ = cluster.name;
    telemetry_->OnUpstreamHead(head_->headers, cluster.name, cluster.service_hosts);
    const bool end = request_ended_ && pending_body_.empty() && !pending_trailers_;
    upstream_ = std::make_unique<UpstreamRequest>(
        UpstreamRequest::Context{context.time(), context.pools(),
                                 [&context] { return context.Random(); }, context.stats()},
        cluster, *result_.route, std::move(head_), result_.hash, settings, *this);
    upstream_->Start(end);
    if (!pending_body_.empty() && upstream_) {
      std::string body = std::move(pending_body_);
      upstream_->SendData(body, request_ended_ && !pending_trailers_);
    }
    if (pending_trailers_ && upstream_) upstream_->SendTrailers(std::move(*pending_trailers_));
  }

  void SendLocalReply(LocalReply reply) {
    if (response_started_) {
      OnUpstreamReset();
      return;
    }
    WorkerStats& stats = manager_.context_.stats();
    const std::string* reason = Reason(reply);
    if (reason && *reason == "no_healthy_upstream") ++stats.no_healthy_upstream[cluster_name_];
    if (reason && *reason == "overflow_max_requests") {
      ++stats.overflows[cluster_name_];
      if (const Cluster* c = result_.target && routing_.clusters
                                 ? routing_.clusters->Find(result_.target->cluster)
                                 : nullptr) {
        c->state->overflows.fetch_add(1, std::memory_order_relaxed);
      }
    }
    RenderedReply rendered = Render(reply, grpc_);
    stats.CountRequest(manager_.listener_, route_name_, cluster_name_, rendered.status);
    if (telemetry_) {
      const std::string* grpc_status = nullptr;
      for (const auto& [name, value] : rendered.headers) {
        if (name == "grpc-status") grpc_status = &value;
      }
      telemetry_->OnLocalReply(rendered.status, grpc_status, rendered.body.size(), reply.flags);
    }
    ResponseHead head;
    head.status = rendered.status;
    for (const auto& [name, value] : rendered.headers) head.headers.Add(name, value);
    if (!rendered.body.empty())
      head.headers.Add("content-length", absl::StrCat(rendered.body.size()));
    response_started_ = true;
    response_ended_ = true;
    encoder_.EncodeHeaders(head, rendered.body.empty());
    if (!rendered.body.empty()) encoder_.EncodeData(rendered.body, true);
    MaybeFinish();
  }

  void MaybeFinish() {
    if (finished_ || !((response_ended_ && request_ended_) || reset_)) return;
    finished_ = true;
    const absl::Time now = manager_.context_.time().Now();
    if (telemetry_) {
      if (manager_.context_.local_workload().metrics) {
        telemetry_->Record(now, manager_.downstream_.peer_identity,
                           &manager_.context_.stats().istio);
      }
      if (access_log_) {
        access_log_->Write(*telemetry_, now, manager_.downstream_, route_name_, cluster_name_);
      }
      if (span_) FinishSpan(now);
    }
    encoder_.stream().SetCallbacks(nullptr);
    if (upstream_ && reset_) upstream_->Cancel();
    manager_.Finished(this);
  }

  ConnectionManager& manager_;
  ResponseEncoder& encoder_;
  HttpContext::Routing routing_;
  RoutingResult result_;
  RequestHeadPtr head_;  // until it goes upstream
  std::unique_ptr<UpstreamRequest> upstream_;
  TimerPtr delay_timer_;
  std::string pending_body_;
  std::optional<HeaderMap> pending_trailers_;
  std::string route_name_, cluster_name_;
  HttpProtocol protocol_ = HttpProtocol::kHttp11;
  absl::Time last_activity_;
  std::map<std::string, std::vector<std::string>> authn_;  // facts of a verified JWT
  std::optional<telemetry::RequestTelemetry> telemetry_;   // from the request head on
  std::optional<RequestLog> access_log_;                   // when the listener logs requests
  std::optional<telemetry::RequestSpan> span_;             // when sampled, until exported
  telemetry::TracingConfigPtr tracing_;                    // the span's listener's tracing
  bool grpc_ = false;
  bool request_ended_ = false;
  bool response_started_ = false;
  bool response_ended_ = false;
  bool reset_ = false;
  bool finished_ = false;
};

// A mirrored copy of a request: sent to the mirror cluster with "-shadow" added to the host, as
// Envoy does; its answer is read and dropped.
class ConnectionManager::Mirror : public UpstreamRequestCallbacks {
 public:
  Mirror(ConnectionManager& manager, const Cluster& cluster, const Route& route,
         const RequestHead& head)
      : manager_(manager), hold_(manager.context_.RoutingFor(manager.listener_config_).hold) {
    auto copy = std::make_unique<RequestHead>(head);
    copy->authority = absl::StrCat(copy->authority, "-shadow");
    HttpContext& context = manager.context_;
    UpstreamRequest::Settings settings;
    settings.protocol = UpstreamProtocol(cluster, head.protocol, head);
    request_ = std::make_unique<UpstreamRequest>(
        UpstreamRequest::Context{context.time(), context.pools(),
                                 [&context] { return context.Random(); }, context.stats()},
        cluster, route, std::move(copy), std::nullopt, settings, *this);
  }
  void Start() { request_->Start(true); }

  void OnUpstreamHeaders(ResponseHeadPtr, bool end_stream) override {
    if (end_stream) Done();
  }
  void OnUpstreamData(absl::string_view, bool end_stream) override {
    if (end_stream) Done();
  }
  void OnUpstreamTrailers(HeaderMap) override { Done(); }
  void OnUpstreamFailure(LocalReply) override { Done(); }
  void OnUpstreamReset() override { Done(); }
  void OnUpstreamWriteBlocked(bool) override {}

 private:
  void Done() {
    if (!done_) manager_.MirrorDone(this);
    done_ = true;
  }
  ConnectionManager& manager_;
  std::shared_ptr<const void> hold_;
  std::unique_ptr<UpstreamRequest> request_;
  bool done_ = false;
};

ConnectionManager::ConnectionManager(HttpContext& context, const ListenerConfig& listener,
                                     DownstreamInfo downstream, Settings settings)
    : context_(context),
      listener_config_(listener),
      listener_(listener.name),
      downstream_(std::move(downstream)),
      settings_(settings) {}

ConnectionManager::~ConnectionManager() {
  finished_.clear();
  streams_.clear();
  finished_mirrors_.clear();
  mirrors_.clear();
}

RequestDecoder& ConnectionManager::NewStream(ResponseEncoder& encoder) {
  streams_.push_back(std::make_unique<ActiveStream>(*this, encoder));
  return *streams_.back();
}

void ConnectionManager::Finished(ActiveStream* stream) {
  for (auto it = streams_.begin(); it != streams_.end(); ++it) {
    if (it->get() != stream) continue;
    finished_.push_back(std::move(*it));
    streams_.erase(it);
    return;
  }
}

void ConnectionManager::StartMirror(const Cluster& cluster, const Route& route,
                                    const RequestHead& head) {
  mirrors_.push_back(std::make_unique<Mirror>(*this, cluster, route, head));
  mirrors_.back()->Start();
}

void ConnectionManager::MirrorDone(Mirror* mirror) {
  for (auto it = mirrors_.begin(); it != mirrors_.end(); ++it) {
    if (it->get() != mirror) continue;
    finished_mirrors_.push_back(std::move(*it));
    mirrors_.erase(it);
    return;
  }
}

void ConnectionManager::Cleanup() {
  finished_.clear();
  finished_mirrors_.clear();
}

void ConnectionManager::CheckIdleStreams(absl::Time now) {
  const std::optional<absl::Duration>& timeout = listener_config_.stream_idle_timeout;
  if (!timeout) return;
  for (auto it = streams_.begin(); it != streams_.end();) {
    ActiveStream& stream = **it++;  // ending it moves it to finished_
    if (now - stream.last_activity() >= *timeout) stream.OnIdleTimeout();
  }
}

}  // namespace mesh::dataplane
