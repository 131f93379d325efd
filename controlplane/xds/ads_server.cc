#include "controlplane/xds/ads_server.h"

#include <grpc/grpc_security_constants.h>
#include <grpcpp/security/auth_context.h>
#include <grpcpp/support/byte_buffer.h>
#include <grpcpp/support/slice.h>

#include <deque>
#include <map>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/log.h"
#include "controlplane/xds/node_metadata.h"
#include "envoy/service/discovery/v3/discovery.pb.h"
#include "nlohmann/json.hpp"

namespace mesh::xds {
namespace {

using envoy::service::discovery::v3::DiscoveryRequest;

// Push order for a new snapshot: clusters before their endpoints, listeners before routes.
const std::vector<std::string> kPushOrder = {compiler::kClusterType, compiler::kEndpointType,
                                             compiler::kSecretType, compiler::kListenerType,
                                             compiler::kRouteType};

bool IsWildcardCapable(const std::string& type_url) {
  return type_url == compiler::kListenerType || type_url == compiler::kClusterType;
}

constexpr char kHealthType[] = "istio.io/health";

constexpr char kAdsMethod[] =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";

// A DiscoveryResponse's nonce (field 5, length-delimited), to append to a shared serialized
// response: protobuf allows a message's fields in any order.
std::string NonceField(const std::string& nonce) {
  std::string out(1, static_cast<char>((5 << 3) | 2));
  for (size_t n = nonce.size();; n >>= 7) {
    if (n < 0x80) {
      out.push_back(static_cast<char>(n));
      break;
    }
    out.push_back(static_cast<char>((n & 0x7f) | 0x80));
  }
  return out + nonce;
}

// Wraps shared bytes in a slice without copying them; the slice keeps them alive.
grpc::Slice SharedSlice(std::shared_ptr<const std::string> bytes) {
  auto* holder = new std::shared_ptr<const std::string>(std::move(bytes));
  return grpc::Slice(
      const_cast<char*>((*holder)->data()), (*holder)->size(),
      [](void* p) { delete static_cast<std::shared_ptr<const std::string>*>(p); }, holder);
}

}  // namespace

class AdsStream : public grpc::ServerGenericBidiReactor {
 public:
  // Resources a subscription covers, by name; they live in a snapshot the stream holds.
  using Selection = std::map<std::string, const google::protobuf::Any*>;

  AdsStream(AdsServer* server, grpc::CallbackServerContext* context)
      : server_(server), context_(context) {
    peer_ = context->peer();
    // Over TLS (--xds-tls) the proxy must show its workload certificate; its SPIFFE ID is then
    // the identity its node metadata has to match.
    if (std::shared_ptr<const grpc::AuthContext> auth = context->auth_context()) {
      for (const grpc::string_ref& v :
           auth->FindPropertyValues(GRPC_TRANSPORT_SECURITY_TYPE_PROPERTY_NAME)) {
        if (v == GRPC_SSL_TRANSPORT_SECURITY_TYPE || v == GRPC_TLS_TRANSPORT_SECURITY_TYPE)
          over_tls_ = true;
      }
      for (const grpc::string_ref& v : auth->FindPropertyValues(GRPC_PEER_SPIFFE_ID_PROPERTY_NAME))
        identity_.assign(v.data(), v.size());
    }
    server_->Register(this);
    StartRead(&request_);
  }

  // ServerBidiReactor
  void OnReadDone(bool ok) override {
    std::lock_guard lock(mu_);
    if (!ok) {
      reads_done_ = true;
      MaybeFinishLocked();
      return;
    }
    std::vector<grpc::Slice> slices;
    DiscoveryRequest request;
    std::string bytes;
    if (request_.Dump(&slices).ok()) {
      for (const grpc::Slice& slice : slices)
        bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
    }
    request_.Clear();
    if (!request.ParseFromString(bytes)) {
      RefuseLocked(
          grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "DiscoveryRequest does not parse"));
      return;
    }
    if (!proxy_known_) {
      absl::StatusOr<NodeInfo> node = ParseNode(request.node());
      if (!node.ok()) {
        RefuseLocked(
            grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, std::string(node.status().message())));
        return;
      }
      if (grpc::Status s = Authorize(*node); !s.ok()) {
        RefuseLocked(s);
        return;
      }
      Classify(*node);
    }
    HandleLocked(request);
    StartRead(&request_);
  }

  // Ends the stream with `status` and logs why.
  void RefuseLocked(const grpc::Status& status) {
    log::Warn("xds: refused a stream from ", peer_, ": ", status.error_message());
    ++server_->refused_;
    reads_done_ = true;
    if (!finish_called_) {
      finish_called_ = true;
      Finish(status);
    }
  }

  // Over TLS: a certificate is required, and the node's namespace and service account must be
  // the certificate's (so one workload cannot pose as another to get its config).
  grpc::Status Authorize(const NodeInfo& node) const {
    if (!over_tls_) return grpc::Status::OK;
    if (identity_.empty()) {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                          "ADS over TLS needs the proxy's workload certificate");
    }
    std::string claimed = absl::StrCat("/ns/", node.ns, "/sa/", node.service_account);
    if (!absl::EndsWith(identity_, claimed) || !absl::StartsWith(identity_, "spiffe://")) {
      return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                          absl::StrCat("node ", node.id, " claims ", claimed.substr(1),
                                       " but its certificate is ", identity_));
    }
    return grpc::Status::OK;
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard lock(mu_);
    writing_ = false;
    if (!queue_.empty()) {
      if (ok)
        server_->ObservePush(queue_.front().type,
                             absl::ToDoubleSeconds(absl::Now() - queue_.front().queued));
      queue_.pop_front();
    }
    if (!ok) {
      reads_done_ = true;
      queue_.clear();
    }
    WriteNextLocked();
    MaybeFinishLocked();
  }

  void OnDone() override {
    {
      std::lock_guard lock(mu_);
      finished_ = true;
    }
    watch_.reset();         // waits for a snapshot callback in progress
    registration_.reset();  // the workload leaves the registry after the grace period
    server_->Unregister(this);
    log::Info("xds: stream closed node=", node_id_, " peer=", peer_);
    delete this;
  }

  void OnCancel() override {}

  // Called by the cache with a new snapshot of this stream's class.
  void OnSnapshot(SnapshotPtr snapshot) {
    std::lock_guard lock(mu_);
    if (finished_) return;
    snapshot_ = std::move(snapshot);
    for (const std::string& type : kPushOrder) {
      auto it = types_.find(type);
      if (it == types_.end()) continue;
      Selection selected = Selected(it->second, type);
      if (Changed(it->second, selected)) SendLocked(type, std::move(selected));
    }
  }

  // `refusals`: the current registry's, by workload name.
  nlohmann::json StatusJson(const std::map<std::string, std::string>& refusals) {
    std::lock_guard lock(mu_);
    nlohmann::json types = nlohmann::json::object();
    for (const auto& [type, st] : types_) {
      types[type] = {
          {"sent", st.sent_version},
          {"acked", st.acked_version},
          {"nack", st.nack},
          {"subscribed", st.wildcard ? std::vector<std::string>{"*"}
                                     : std::vector<std::string>(st.names.begin(), st.names.end())}};
    }
    return {
        {"id", node_id_},
        {"class", watch_ ? watch_->proxy_class().ToString() : proxy_.ToString()},
        {"peer", peer_},
        {"identity", identity_},
        {"registration", RegistrationStatusLocked(refusals)},
        {"version", snapshot_ ? snapshot_->version : ""},
        {"types", types},
        {"jwks_uris", snapshot_ ? std::vector<std::string>(snapshot_->resources.jwks_uris.begin(),
                                                           snapshot_->resources.jwks_uris.end())
                                : std::vector<std::string>()}};
  }

  const std::string& node_id() {
    std::lock_guard lock(mu_);
    return node_id_;
  }
  // This proxy as a Prometheus http_sd target group; null when it gave no metrics address.
  nlohmann::json PrometheusTarget() {
    std::lock_guard lock(mu_);
    if (!proxy_known_ || node_.metrics_address.empty()) return nullptr;
    auto label = [&](const char* key) {
      auto it = node_.labels.find(key);
      return it == node_.labels.end() ? std::string() : it->second;
    };
    return {{"targets", {node_.metrics_address}},
            {"labels",
             {{"__metrics_path__", "/stats/prometheus"},
              {"namespace", node_.ns},
              {"proxy", node_.id},
              {"app", label("app")},
              {"version", label("version")},
              {"role", node_.role == compiler::Role::kGateway ? "gateway" : "sidecar"}}}};
  }

  // (type URL, error) of every type whose last response this proxy rejected.
  std::vector<std::pair<std::string, std::string>> Nacks() {
    std::lock_guard lock(mu_);
    std::vector<std::pair<std::string, std::string>> out;
    for (const auto& [type, st] : types_) {
      if (!st.nack.empty()) out.emplace_back(type, st.nack);
    }
    return out;
  }
  SnapshotPtr snapshot() {
    std::lock_guard lock(mu_);
    return snapshot_;
  }

 private:
  struct TypeState {
    std::set<std::string> names;
    bool wildcard = false;
    std::string sent_version, sent_nonce, acked_version, nack;
    // The subscription as the snapshot's response memo knows it.
    std::string key;
    // What the last response carried, to push only on change.
    Selection sent;
  };

  void HandleLocked(const DiscoveryRequest& req) {
    const std::string& type = req.type_url();
    if (type.empty()) return;
    if (type == kHealthType) return OnHealthReportLocked(req);
    TypeState& st = types_[type];
    if (!req.response_nonce().empty()) {
      if (req.response_nonce() != st.sent_nonce) return;  // stale: a newer response is in flight
      if (req.has_error_detail()) {
        st.nack = req.error_detail().message();
        ++server_->nacks_;
        server_->CountNack(type);
        log::Warn("xds: NACK node=", node_id_, " type=", type, " version=", st.sent_version, ": ",
                  st.nack);
      } else {
        if (st.acked_version != req.version_info()) {
          if (auto committed = server_->cache_->CommitTime(req.version_info())) {
            server_->ObserveCommitToAck(absl::ToDoubleSeconds(absl::Now() - *committed));
          }
        }
        st.acked_version = req.version_info();
        st.nack.clear();
        ++server_->acks_;
      }
    }
    std::set<std::string> names(req.resource_names().begin(), req.resource_names().end());
    bool wildcard = names.empty() && IsWildcardCapable(type);
    bool first = st.sent_nonce.empty();
    if (first || names != st.names || wildcard != st.wildcard) {
      st.names = std::move(names);
      st.wildcard = wildcard;
      // A new subscription is answered even if nothing matches yet: an empty answer for names
      // that do not exist; they are sent once they appear.
      st.key.clear();
      if (st.wildcard) {
        st.key = "*";
      } else {
        for (const std::string& n : st.names) absl::StrAppend(&st.key, n, "\n");
      }
      if (snapshot_) SendLocked(type, Selected(st, type));
    }
  }

  void Classify(const NodeInfo& node) {
    proxy_known_ = true;
    node_id_ = node.id;
    node_ = node;
    proxy_ = server_->cache_->Classify(node.role, node.ns, node.labels);
    if (node.role == compiler::Role::kSidecar) {
      proxy_.inbound = node.inbound;
      RegisterWorkload(node);
    }
    SnapshotPtr current;
    watch_ = server_->cache_->Subscribe(
        proxy_, [this](SnapshotPtr s) { OnSnapshot(std::move(s)); }, &current, node.labels);
    snapshot_ = std::move(current);
    log::Info("xds: stream opened node=", node_id_, " class=", proxy_.ToString(), " peer=", peer_);
  }

  // A sidecar becomes an endpoint of the services that select it (Istio's auto-registration)
  // only with a proven identity: a stream on the TLS port whose certificate matched its node's
  // namespace and service account. Plaintext streams get config and never register, unless the
  // server allows it.
  void RegisterWorkload(const NodeInfo& node) {
    const bool proven = over_tls_ && !identity_.empty();
    if (!node.registration_error.empty()) {
      registration_status_ = absl::StrCat("not registered: ", node.registration_error);
    } else if (!proven && !server_->options_.allow_plaintext_registration) {
      registration_status_ =
          "not registered: a plaintext stream proves no identity (connect to the TLS xDS port "
          "with a workload certificate)";
    } else {
      registration_ = server_->cache_->RegisterWorkload(node.id, node.ToWorkload());
      registration_status_ = "registered";
      return;
    }
    ++server_->unregistered_;
    log::Warn("xds: sidecar ", node.id, " from ", peer_, ": ", registration_status_);
  }

  // Istio's health report: no error_detail means the workload can serve, one says why not.
  void OnHealthReportLocked(const DiscoveryRequest& req) {
    if (!registration_) return;  // only a registered workload's health matters
    health_ = req.has_error_detail() ? req.error_detail().message() : "";
    log::Info("xds: workload ", node_id_, health_->empty() ? " healthy" : " unhealthy: ", *health_);
    server_->cache_->SetWorkloadHealth(node_id_, health_->empty());
  }

  std::string RegistrationStatusLocked(const std::map<std::string, std::string>& refusals) const {
    if (!registration_) return registration_status_;
    auto it = refusals.find(node_id_);
    if (it != refusals.end()) return absl::StrCat("refused: ", it->second);
    if (!health_) return "registered, no health report yet";
    return health_->empty() ? "registered" : absl::StrCat("registered, unhealthy: ", *health_);
  }

  // The resources this type's subscription covers in the current snapshot.
  Selection Selected(const TypeState& st, const std::string& type) {
    Selection out;
    const compiler::ResourceMap& all = snapshot_->resources.Of(type);
    if (st.wildcard) {
      for (const auto& [name, any] : all) out[name] = any.get();
    } else {
      for (const std::string& name : st.names) {
        if (auto it = all.find(name); it != all.end()) out[name] = it->second.get();
      }
    }
    return out;
  }

  bool Changed(const TypeState& st, const Selection& selected) {
    if (selected.size() != st.sent.size()) return true;
    for (const auto& [name, any] : selected) {
      auto it = st.sent.find(name);
      // Snapshots share unchanged resources, so a different object means a different resource
      // unless the bytes agree.
      if (it == st.sent.end()) return true;
      if (it->second != any && it->second->value() != any->value()) return true;
    }
    return false;
  }

  void SendLocked(const std::string& type, Selection selected) {
    if (!snapshot_) return;
    TypeState& st = types_[type];
    st.sent = std::move(selected);
    std::string nonce = std::to_string(++nonce_);
    grpc::Slice parts[2] = {SharedSlice(snapshot_->Response(type, st.key, st.sent)),
                            grpc::Slice(NonceField(nonce))};
    st.sent_version = snapshot_->version;
    st.sent_nonce = nonce;
    // Keep what was sent alive while it is compared against later snapshots.
    held_[type] = snapshot_;
    // State of the world makes an unsent response moot once a newer one of its type exists: a
    // stream keeps at most its latest pending response per type (the first entry may be in
    // flight and stays). The newer one goes last, after what it may depend on.
    for (auto it = queue_.begin() + (writing_ ? 1 : 0); it != queue_.end(); ++it) {
      if (it->type == type) {
        queue_.erase(it);
        break;
      }
    }
    queue_.push_back(Pending{type, grpc::ByteBuffer(parts, 2), absl::Now()});
    ++server_->pushes_;
    // A proxy that has not taken a response for the send timeout is stuck (or never reads):
    // its stream ends, and it reconnects when it is able to.
    const absl::Duration limit = server_->options_.send_timeout;
    if (writing_ && limit > absl::ZeroDuration() && absl::Now() - write_started_ > limit &&
        !cancelled_) {
      cancelled_ = true;
      ++server_->stalled_;
      log::Warn("xds: node ", node_id_, " from ", peer_, " took no response for ",
                absl::FormatDuration(absl::Now() - write_started_), "; closing its stream");
      context_->TryCancel();
    }
    WriteNextLocked();
  }

  void WriteNextLocked() {
    if (writing_ || queue_.empty() || reads_done_) return;
    writing_ = true;
    write_started_ = absl::Now();
    StartWrite(&queue_.front().buffer);
  }

  void MaybeFinishLocked() {
    if (reads_done_ && !writing_ && !finish_called_) {
      finish_called_ = true;
      Finish(grpc::Status::OK);
    }
  }

  AdsServer* server_;
  std::recursive_mutex mu_;  // reactions may run inline from StartWrite/StartRead
  grpc::ByteBuffer request_;
  std::string peer_, node_id_;
  std::string identity_;  // the verified SPIFFE ID of a TLS peer
  bool over_tls_ = false;
  bool proxy_known_ = false;
  compiler::ProxyClass proxy_;
  NodeInfo node_;  // as the first request described it
  std::unique_ptr<SnapshotCache::Watch> watch_;
  std::unique_ptr<SnapshotCache::Registration> registration_;
  std::string registration_status_;    // a sidecar's: registered, or why not
  std::optional<std::string> health_;  // its last health report: "" healthy, else why not
  SnapshotPtr snapshot_;
  std::map<std::string, SnapshotPtr> held_;
  std::map<std::string, TypeState> types_;
  struct Pending {
    std::string type;
    grpc::ByteBuffer buffer;
    absl::Time queued;
  };
  std::deque<Pending> queue_;  // the front one is being written while writing_
  grpc::CallbackServerContext* context_;
  absl::Time write_started_;
  bool cancelled_ = false;
  uint64_t nonce_ = 0;
  bool writing_ = false, reads_done_ = false, finish_called_ = false, finished_ = false;
};

AdsServer::AdsServer(SnapshotCache* cache, Options options)
    : cache_(cache), options_(std::move(options)) {
  if (options_.allow_plaintext_registration) {
    log::Warn(
        "xds: --allow-plaintext-registration is on: any client of the plaintext xDS port "
        "can make itself an endpoint of any service by its labels");
  }
}
AdsServer::~AdsServer() = default;

grpc::ServerGenericBidiReactor* AdsServer::CreateReactor(
    grpc::GenericCallbackServerContext* context) {
  if (context->method() != kAdsMethod) return grpc::CallbackGenericService::CreateReactor(context);
  return new AdsStream(this, context);
}

void AdsServer::Register(AdsStream* stream) {
  std::lock_guard lock(mu_);
  streams_.insert(stream);
}

void AdsServer::Unregister(AdsStream* stream) {
  std::lock_guard lock(mu_);
  streams_.erase(stream);
}

std::string AdsServer::SynczJson() {
  std::shared_ptr<const registry::Registry> registry = cache_->CurrentView().registry;
  static const std::map<std::string, std::string> kNone;
  const auto& refusals = registry ? registry->refusals() : kNone;
  std::lock_guard lock(mu_);
  nlohmann::json out = nlohmann::json::array();
  for (AdsStream* s : streams_) out.push_back(s->StatusJson(refusals));
  return out.dump(2);
}

nlohmann::json AdsServer::PrometheusTargets() {
  std::lock_guard lock(mu_);
  nlohmann::json out = nlohmann::json::array();
  for (AdsStream* s : streams_) {
    nlohmann::json target = s->PrometheusTarget();
    if (!target.is_null()) out.push_back(std::move(target));
  }
  return out;
}

absl::StatusOr<std::string> AdsServer::ConfigDump(const std::string& id) {
  absl::StatusOr<SnapshotPtr> snap = ProxySnapshot(id);
  if (!snap.ok()) return snap.status();
  return compiler::ToJson((*snap)->resources);
}

absl::StatusOr<SnapshotPtr> AdsServer::ProxySnapshot(const std::string& id) {
  std::lock_guard lock(mu_);
  for (AdsStream* s : streams_) {
    if (s->node_id() != id) continue;
    if (SnapshotPtr snap = s->snapshot()) return snap;
    break;
  }
  return absl::NotFoundError(absl::StrCat("no connected proxy has node id \"", id, "\""));
}

namespace {

// Istio's short name of an xDS type, as pilot's metrics label it.
std::string ShortType(const std::string& type_url) {
  if (type_url == compiler::kClusterType) return "cds";
  if (type_url == compiler::kEndpointType) return "eds";
  if (type_url == compiler::kListenerType) return "lds";
  if (type_url == compiler::kRouteType) return "rds";
  if (type_url == compiler::kSecretType) return "sds";
  return "other";
}

}  // namespace

void AdsServer::ObserveCommitToAck(double seconds) {
  std::lock_guard lock(metrics_mu_);
  commit_to_ack_.Observe(seconds);
  convergence_.Observe(seconds);
}

void AdsServer::ObservePush(const std::string& type, double seconds) {
  std::lock_guard lock(metrics_mu_);
  TypeMetrics& m = by_type_[ShortType(type)];
  ++m.pushes;
  m.push_time.Observe(seconds);
}

void AdsServer::CountNack(const std::string& type) {
  std::lock_guard lock(metrics_mu_);
  ++by_type_[ShortType(type)].rejects;
}

std::string AdsServer::MetricsText() {
  size_t connected;
  // pilot_xds_{cds,eds,lds,rds}_reject: the proxies on a rejected config now, by type.
  std::map<std::string, std::string> rejects;
  {
    std::lock_guard lock(mu_);
    connected = streams_.size();
    for (AdsStream* s : streams_) {
      for (const auto& [type, error] : s->Nacks()) {
        const std::string t = ShortType(type);
        absl::StrAppend(&rejects[t], "pilot_xds_", t, "_reject{node=\"",
                        prometheus::Escape(s->node_id()), "\",err=\"",
                        prometheus::Escape(error.substr(0, 200)), "\"} 1\n");
      }
    }
  }
  using prometheus::Type;
  std::string out = absl::StrCat(
      Type("meshpilot_xds_connected_proxies", "gauge"), "meshpilot_xds_connected_proxies ",
      connected, "\n", Type("meshpilot_xds_pushes_total", "counter"), "meshpilot_xds_pushes_total ",
      pushes_.load(), "\n", Type("meshpilot_xds_acks_total", "counter"),
      "meshpilot_xds_acks_total ", acks_.load(), "\n", Type("meshpilot_xds_nacks_total", "counter"),
      "meshpilot_xds_nacks_total ", nacks_.load(), "\n",
      Type("meshpilot_xds_refused_streams_total", "counter"),
      "meshpilot_xds_refused_streams_total ", refused_.load(), "\n",
      Type("meshpilot_xds_unregistered_sidecars_total", "counter"),
      "meshpilot_xds_unregistered_sidecars_total ", unregistered_.load(), "\n",
      Type("meshpilot_xds_stalled_streams_total", "counter"),
      "meshpilot_xds_stalled_streams_total ", stalled_.load(), "\n");
  // Istio's names, for its control-plane dashboard.
  absl::StrAppend(&out, Type("pilot_xds", "gauge"), "pilot_xds{version=\"", MESHPILOT_VERSION,
                  "\"} ", connected, "\n");
  std::lock_guard lock(metrics_mu_);
  out += Type("meshpilot_xds_commit_to_ack_seconds", "histogram");
  commit_to_ack_.Render(&out, "meshpilot_xds_commit_to_ack_seconds", "");
  out += Type("pilot_proxy_convergence_time", "histogram");
  convergence_.Render(&out, "pilot_proxy_convergence_time", "");
  out += Type("pilot_xds_pushes", "counter");
  for (const auto& [type, m] : by_type_)
    absl::StrAppend(&out, "pilot_xds_pushes{type=\"", type, "\"} ", m.pushes, "\n");
  out += Type("pilot_xds_push_time", "histogram");
  for (const auto& [type, m] : by_type_)
    m.push_time.Render(&out, "pilot_xds_push_time", absl::StrCat("type=\"", type, "\""));
  out += Type("pilot_total_xds_rejects", "counter");
  for (const auto& [type, m] : by_type_)
    absl::StrAppend(&out, "pilot_total_xds_rejects{type=\"", type, "\"} ", m.rejects, "\n");
  for (const char* t : {"cds", "eds", "lds", "rds", "sds"})
    absl::StrAppend(&out, Type(absl::StrCat("pilot_xds_", t, "_reject"), "gauge"), rejects[t]);
  return out;
}

}  // namespace mesh::xds
