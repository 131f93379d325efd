#include "dataplane/xds/xds_client.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "dataplane/config/listener_config.h"
#include "envoy/config/route/v3/route.pb.h"
#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb.h"

namespace mesh::dataplane {
namespace {

using envoy::service::discovery::v3::DiscoveryRequest;
using envoy::service::discovery::v3::DiscoveryResponse;
namespace hcm = envoy::extensions::filters::network::http_connection_manager::v3;

constexpr char kListener[] = "type.googleapis.com/envoy.config.listener.v3.Listener";
constexpr char kRoute[] = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
constexpr char kCluster[] = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
constexpr char kEndpoint[] = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
constexpr char kHealth[] = "istio.io/health";
constexpr char kSecret[] = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
namespace tls = envoy::extensions::transport_sockets::tls::v3;

// The SDS secrets a cluster's TLS settings name.
void SecretNames(const envoy::config::cluster::v3::Cluster& c, std::set<std::string>* out) {
  tls::UpstreamTlsContext ctx;
  if (!c.has_transport_socket() || !c.transport_socket().typed_config().UnpackTo(&ctx)) return;
  const tls::CommonTlsContext& common = ctx.common_tls_context();
  for (const auto& sds : common.tls_certificate_sds_secret_configs()) out->insert(sds.name());
  if (common.has_combined_validation_context())
    out->insert(common.combined_validation_context().validation_context_sds_secret_config().name());
  if (common.has_validation_context_sds_secret_config())
    out->insert(common.validation_context_sds_secret_config().name());
}

std::string CheckSecret(const tls::Secret& s) {
  if (s.name().empty()) return "name is required";
  if (s.has_validation_context() && s.validation_context().trusted_ca().inline_bytes().empty())
    return "validation_context.trusted_ca.inline_bytes: a CA certificate is required";
  if (!s.has_validation_context() && !s.has_tls_certificate())
    return "validation_context or tls_certificate is required";
  return "";
}

// The HTTP connection managers of a listener: its api_listener's, and each filter chain's.
std::vector<hcm::HttpConnectionManager> Managers(const envoy::config::listener::v3::Listener& l) {
  std::vector<hcm::HttpConnectionManager> out;
  hcm::HttpConnectionManager m;
  if (l.has_api_listener() && l.api_listener().api_listener().UnpackTo(&m)) out.push_back(m);
  for (const auto& chain : l.filter_chains()) {
    for (const auto& f : chain.filters()) {
      if (f.typed_config().Is<hcm::HttpConnectionManager>() && f.typed_config().UnpackTo(&m))
        out.push_back(m);
    }
  }
  return out;
}

// A listener meshproxy can serve; api_listeners (proxyless gRPC) only need a usable manager.
std::string CheckListener(const envoy::config::listener::v3::Listener& l) {
  if (l.name().empty()) return "name is required";
  if (l.has_api_listener()) {
    hcm::HttpConnectionManager m;
    if (!l.api_listener().api_listener().UnpackTo(&m))
      return "api_listener: HttpConnectionManager does not parse";
    if (!m.has_rds() && !m.has_route_config())
      return "api_listener: rds or route_config is required";
    return "";
  }
  absl::StatusOr<ListenerConfigPtr> config = ListenerConfig::FromProto(l);
  if (config.ok()) return "";
  // FromProto's message starts with "listener NAME: ", which the caller adds itself.
  std::string why(config.status().message());
  std::string prefix = absl::StrCat("listener ", l.name(), ": ");
  return why.rfind(prefix, 0) == 0 ? why.substr(prefix.size()) : why;
}

std::string CheckCluster(const envoy::config::cluster::v3::Cluster& c) {
  using C = envoy::config::cluster::v3::Cluster;
  if (c.name().empty()) return "name is required";
  if (c.type() == C::EDS && !c.has_eds_cluster_config())
    return "eds_cluster_config is required for EDS";
  if (c.type() == C::STATIC && c.load_assignment().endpoints_size() == 0)
    return "load_assignment is required for STATIC";
  if (c.type() != C::EDS && c.type() != C::STATIC)
    return absl::StrCat("discovery type ", C::DiscoveryType_Name(c.type()), " is not supported");
  if (c.lb_policy() != C::ROUND_ROBIN && c.lb_policy() != C::LEAST_REQUEST &&
      c.lb_policy() != C::RANDOM && c.lb_policy() != C::RING_HASH) {
    return absl::StrCat("lb_policy ", C::LbPolicy_Name(c.lb_policy()), " is not supported");
  }
  return "";
}

std::string CheckAssignment(const envoy::config::endpoint::v3::ClusterLoadAssignment& a) {
  // A bad endpoint (no IP address, port 0 or over 65535) is not the assignment's fault: the
  // cluster table drops that one endpoint and counts it, so one bad registration cannot stop
  // every later update of the cluster.
  if (a.cluster_name().empty()) return "cluster_name is required";
  return "";
}

}  // namespace

XdsClient::XdsClient(envoy::config::core::v3::Node node, ConfigCallback on_config)
    : node_(std::move(node)),
      on_config_(std::move(on_config)),
      config_(std::make_shared<ProxyConfig>()) {}

void XdsClient::OnConnect(AdsTransport* transport) {
  std::lock_guard lock(mu_);
  transport_ = transport;
  node_sent_ = false;
  for (auto& [type, st] : types_) st.nonce.clear();  // nonces belong to the old stream
  // Clusters before endpoints, listeners before routes; the wildcard types first.
  for (const char* type : {kCluster, kListener}) SendLocked(type, "");
  for (const char* type : {kEndpoint, kSecret, kRoute}) {
    if (types_[type].requested) SendLocked(type, "");
  }
  SendHealthLocked();
}

void XdsClient::ReportHealth(bool healthy, const std::string& reason) {
  std::lock_guard lock(mu_);
  health_ = healthy ? "" : (reason.empty() ? "unhealthy" : reason);
  SendHealthLocked();
}

void XdsClient::SendHealthLocked() {
  if (!transport_ || !health_) return;
  DiscoveryRequest req;
  if (!node_sent_) {
    *req.mutable_node() = node_;
    node_sent_ = true;
  }
  req.set_type_url(kHealth);
  if (!health_->empty()) {
    req.mutable_error_detail()->set_code(14);  // UNAVAILABLE
    req.mutable_error_detail()->set_message(*health_);
  }
  transport_->Send(req);
}

void XdsClient::OnDisconnect() {
  std::lock_guard lock(mu_);
  transport_ = nullptr;
}

void XdsClient::SendLocked(const std::string& type, const std::string& error) {
  TypeState& st = types_[type];
  st.requested = true;
  if (!transport_) return;
  DiscoveryRequest req;
  if (!node_sent_) {
    *req.mutable_node() = node_;
    node_sent_ = true;
  }
  req.set_type_url(type);
  req.set_version_info(st.version);
  req.set_response_nonce(st.nonce);
  for (const std::string& n : st.names) req.add_resource_names(n);
  if (!error.empty()) {
    req.mutable_error_detail()->set_code(3);  // INVALID_ARGUMENT
    req.mutable_error_detail()->set_message(error);
  }
  transport_->Send(req);
}

absl::Status XdsClient::Apply(const DiscoveryResponse& response, ProxyConfig* next) const {
  const std::string& type = response.type_url();
  std::vector<std::string> errors;
  auto fail = [&](const std::string& kind, const std::string& name, const std::string& why) {
    errors.push_back(absl::StrCat(kind, " ", name.empty() ? "<unnamed>" : name, ": ", why));
  };
  if (type == kListener) next->listeners.clear();
  if (type == kRoute) {
    next->routes.clear();
    next->route_configs.clear();
  }
  if (type == kCluster) next->clusters.clear();
  if (type == kEndpoint) next->endpoints.clear();
  if (type == kSecret) next->secrets.clear();
  for (const google::protobuf::Any& any : response.resources()) {
    if (any.type_url() != type) {
      errors.push_back(
          absl::StrCat("a resource of type ", any.type_url(), " in a response for ", type));
      continue;
    }
    if (type == kListener) {
      envoy::config::listener::v3::Listener l;
      if (!any.UnpackTo(&l)) {
        fail("listener", "", "does not parse");
        continue;
      }
      if (std::string why = CheckListener(l); !why.empty())
        fail("listener", l.name(), why);
      else
        next->listeners[l.name()] = std::move(l);
    } else if (type == kRoute) {
      envoy::config::route::v3::RouteConfiguration rc;
      if (!any.UnpackTo(&rc)) {
        fail("route config", "", "does not parse");
        continue;
      }
      absl::StatusOr<RouteTablePtr> table = RouteTable::FromProto(rc);
      if (!table.ok())
        errors.push_back(std::string(table.status().message()));
      else {
        next->routes[rc.name()] = *table;
        next->route_configs[rc.name()] = std::move(rc);
      }
    } else if (type == kCluster) {
      envoy::config::cluster::v3::Cluster c;
      if (!any.UnpackTo(&c)) {
        fail("cluster", "", "does not parse");
        continue;
      }
      if (std::string why = CheckCluster(c); !why.empty())
        fail("cluster", c.name(), why);
      else
        next->clusters[c.name()] = std::move(c);
    } else if (type == kEndpoint) {
      envoy::config::endpoint::v3::ClusterLoadAssignment a;
      if (!any.UnpackTo(&a)) {
        fail("load assignment", "", "does not parse");
        continue;
      }
      if (std::string why = CheckAssignment(a); !why.empty())
        fail("load assignment", a.cluster_name(), why);
      else
        next->endpoints[a.cluster_name()] = std::move(a);
    } else if (type == kSecret) {
      tls::Secret secret;
      if (!any.UnpackTo(&secret)) {
        fail("secret", "", "does not parse");
        continue;
      }
      if (std::string why = CheckSecret(secret); !why.empty())
        fail("secret", secret.name(), why);
      else
        next->secrets[secret.name()] = std::move(secret);
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unsupported type ", type));
    }
  }
  if (!errors.empty()) return absl::InvalidArgumentError(absl::StrJoin(errors, "; "));
  next->versions[type] = response.version_info();
  return absl::OkStatus();
}

void XdsClient::UpdateSubscriptionsLocked() {
  std::set<std::string> routes, endpoints, secrets;
  for (const auto& [name, l] : config_->listeners) {
    for (const auto& m : Managers(l)) {
      if (m.has_rds()) routes.insert(m.rds().route_config_name());
    }
  }
  for (const auto& [name, c] : config_->clusters) {
    SecretNames(c, &secrets);
    if (c.type() != envoy::config::cluster::v3::Cluster::EDS) continue;
    endpoints.insert(c.eds_cluster_config().service_name().empty()
                         ? c.name()
                         : c.eds_cluster_config().service_name());
  }
  secrets.erase("default");  // the workload certificate comes from the CA, not over ADS
  secrets.erase("");
  for (auto [type, names] : {std::pair{kEndpoint, &endpoints}, std::pair{kSecret, &secrets},
                             std::pair{kRoute, &routes}}) {
    TypeState& st = types_[type];
    if (st.names == *names && st.requested) continue;
    if (names->empty() && !st.requested) continue;
    st.names = *names;
    SendLocked(type, "");
  }
}

void XdsClient::OnResponse(const DiscoveryResponse& response) {
  {
    std::lock_guard lock(mu_);
    TypeState& st = types_[response.type_url()];
    st.nonce = response.nonce();
    auto next = std::make_shared<ProxyConfig>(*config_);
    absl::Status applied = Apply(response, next.get());
    if (!applied.ok()) {
      ++stats_.rejected;
      stats_.last_error = std::string(applied.message());
      SendLocked(response.type_url(), stats_.last_error);  // NACK: the old version, the reason
      return;
    }
    if (on_config_) applied = on_config_(next);
    if (!applied.ok()) {
      ++stats_.rejected;
      stats_.last_error = std::string(applied.message());
      SendLocked(response.type_url(), stats_.last_error);
      return;
    }
    st.version = response.version_info();
    config_ = std::move(next);
    ++stats_.accepted;
    SendLocked(response.type_url(), "");  // ACK
    if (response.type_url() == kListener || response.type_url() == kCluster)
      UpdateSubscriptionsLocked();
  }
}

ProxyConfigPtr XdsClient::current() const {
  std::lock_guard lock(mu_);
  return config_;
}

XdsClient::Stats XdsClient::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

}  // namespace mesh::dataplane
