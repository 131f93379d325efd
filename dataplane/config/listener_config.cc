#include "dataplane/config/listener_config.h"

#include "absl/strings/str_cat.h"
#include "dataplane/config/weighted.h"
#include "envoy/config/listener/v3/listener.pb.h"
#include "envoy/extensions/filters/http/fault/v3/fault.pb.h"
#include "envoy/extensions/filters/http/jwt_authn/v3/config.pb.h"
#include "envoy/extensions/filters/http/rbac/v3/rbac.pb.h"
#include "envoy/extensions/filters/http/router/v3/router.pb.h"
#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb.h"
#include "envoy/extensions/filters/network/rbac/v3/rbac.pb.h"
#include "envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.pb.h"
#include "envoy/extensions/transport_sockets/tls/v3/tls.pb.h"

namespace mesh::dataplane {

namespace {

// A Duration field as Envoy reads an optional timeout: absent keeps `unset`, 0 disables.
std::optional<absl::Duration> Timeout(bool has, const google::protobuf::Duration& d,
                                      std::optional<absl::Duration> unset) {
  if (!has) return unset;
  if (d.seconds() == 0 && d.nanos() == 0) return std::nullopt;
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

namespace hcm = envoy::extensions::filters::network::http_connection_manager::v3;
using envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy;
using envoy::extensions::transport_sockets::tls::v3::DownstreamTlsContext;

absl::Status Invalid(const std::string& listener, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat("listener ", listener, ": ", why));
}

absl::Status ReadAccessLogs(
    const google::protobuf::RepeatedPtrField<envoy::config::accesslog::v3::AccessLog>& logs,
    const std::string& listener, const std::string& path, ListenerConfig* out) {
  for (int i = 0; i < logs.size(); ++i) {
    auto log = telemetry::AccessLog::FromProto(logs[i], absl::StrCat(path, ".access_log[", i, "]"));
    if (!log.ok()) return Invalid(listener, std::string(log.status().message()));
    out->access_logs.push_back(*std::move(log));
  }
  return absl::OkStatus();
}

// The HCM's http_filters: RBAC filters are kept, in order; fault and router are the manager's
// own; anything else is refused unless it is marked optional (as Envoy does).
absl::Status ReadHttpFilters(const hcm::HttpConnectionManager& m, const std::string& listener,
                             const std::string& path, ListenerConfig* out) {
  for (int i = 0; i < m.http_filters_size(); ++i) {
    const hcm::HttpFilter& f = m.http_filters(i);
    const std::string fpath = absl::StrCat(path, ".http_filters[", i, "]");
    const google::protobuf::Any& typed = f.typed_config();
    if (typed.Is<envoy::extensions::filters::http::rbac::v3::RBAC>()) {
      envoy::extensions::filters::http::rbac::v3::RBAC rbac;
      if (!typed.UnpackTo(&rbac)) return Invalid(listener, fpath + ": does not parse");
      if (!rbac.has_rules()) continue;  // no rules: nothing enforced
      auto policy = RbacPolicy::FromProto(rbac.rules(), fpath + ".typed_config.rules");
      if (!policy.ok()) return Invalid(listener, std::string(policy.status().message()));
      out->http_rbac.push_back(*policy);
    } else if (typed.Is<envoy::extensions::filters::http::jwt_authn::v3::JwtAuthentication>()) {
      envoy::extensions::filters::http::jwt_authn::v3::JwtAuthentication jwt;
      if (!typed.UnpackTo(&jwt)) return Invalid(listener, fpath + ": does not parse");
      if (out->jwt_authn) return Invalid(listener, fpath + ": a second jwt_authn filter");
      auto authn = JwtAuthn::FromProto(jwt, fpath + ".typed_config");
      if (!authn.ok()) return Invalid(listener, std::string(authn.status().message()));
      out->jwt_authn = *authn;
    } else if (!typed.Is<envoy::extensions::filters::http::fault::v3::HTTPFault>() &&
               !typed.Is<envoy::extensions::filters::http::router::v3::Router>() &&
               !f.is_optional()) {
      return Invalid(listener, absl::StrCat(fpath, ": unsupported filter ", f.name(), " (",
                                            typed.type_url(), ")"));
    }
  }
  return absl::OkStatus();
}

// Network RBAC filters in front of the chain's last filter, in order.
absl::Status ReadNetworkRbac(const envoy::config::listener::v3::FilterChain& chain,
                             const std::string& listener, std::vector<RbacPolicyPtr>* out) {
  for (int i = 0; i + 1 < chain.filters_size(); ++i) {
    const std::string fpath = absl::StrCat("filter_chains[0].filters[", i, "]");
    envoy::extensions::filters::network::rbac::v3::RBAC rbac;
    if (!chain.filters(i).typed_config().UnpackTo(&rbac)) {
      return Invalid(listener,
                     fpath + ": only envoy.filters.network.rbac may come before the last filter");
    }
    if (!rbac.has_rules()) continue;
    auto policy = RbacPolicy::FromProto(rbac.rules(), fpath + ".typed_config.rules");
    if (!policy.ok()) return Invalid(listener, std::string(policy.status().message()));
    out->push_back(*policy);
  }
  return absl::OkStatus();
}

}  // namespace

const TcpTarget* ListenerConfig::PickTcp(uint64_t draw) const {
  return PickWeighted(tcp_targets, tcp_total_weight, draw);
}

absl::StatusOr<ListenerConfigPtr> ListenerConfig::FromProto(
    const envoy::config::listener::v3::Listener& l) {
  auto out = std::make_shared<ListenerConfig>();
  out->name = l.name();
  if (!l.address().has_socket_address() || l.address().socket_address().port_value() == 0 ||
      l.address().socket_address().port_value() > 65535) {
    return Invalid(l.name(), "address.socket_address: an address and a port are required");
  }
  out->address = l.address().socket_address().address();
  out->port = l.address().socket_address().port_value();
  switch (l.traffic_direction()) {
    case envoy::config::core::v3::INBOUND: out->direction = Direction::kInbound; break;
    case envoy::config::core::v3::OUTBOUND: out->direction = Direction::kOutbound; break;
    default: break;
  }
  int main_chain = 0;
  if (l.filter_chains_size() == 1) {
    if (l.filter_chains(0).has_transport_socket()) {
      DownstreamTlsContext ctx;
      if (!l.filter_chains(0).transport_socket().typed_config().UnpackTo(&ctx))
        return Invalid(l.name(), "filter_chains[0].transport_socket: only TLS is supported");
      out->tls = Tls::kStrict;
      const auto& common = ctx.common_tls_context();
      if (common.tls_certificates_size() > 0) {
        TlsFiles files;
        files.cert_file = common.tls_certificates(0).certificate_chain().filename();
        files.key_file = common.tls_certificates(0).private_key().filename();
        files.ca_file = common.validation_context().trusted_ca().filename();
        files.require_client_certificate = ctx.require_client_certificate().value();
        if (files.cert_file.empty() || files.key_file.empty()) {
          return Invalid(
              l.name(),
              "filter_chains[0].transport_socket: certificate and key files are required");
        }
        out->tls_files = std::move(files);
      }
    }
  } else if (l.filter_chains_size() == 2) {
    // PERMISSIVE: a TLS chain for clients that start a handshake, a plaintext one for the rest.
    int tls_chain = l.filter_chains(0).filter_chain_match().transport_protocol() == "tls" ? 0 : 1;
    main_chain = 1 - tls_chain;
    const auto& t = l.filter_chains(tls_chain);
    if (t.filter_chain_match().transport_protocol() != "tls" ||
        !t.transport_socket().typed_config().Is<DownstreamTlsContext>() ||
        l.filter_chains(main_chain).has_transport_socket()) {
      return Invalid(l.name(),
                     "filter_chains: two chains must be one TLS chain (transport_protocol \"tls\") "
                     "and one plaintext chain");
    }
    out->tls = Tls::kPermissive;
  } else {
    return Invalid(l.name(),
                   "filter_chains: one chain, or a TLS and a plaintext chain, are supported");
  }
  const auto& chain = l.filter_chains(main_chain);
  if (chain.filters_size() < 1) {
    return Invalid(l.name(), "filter_chains[0].filters: a network filter is required");
  }
  if (absl::Status s = ReadNetworkRbac(chain, l.name(), &out->network_rbac); !s.ok()) return s;
  const int last = chain.filters_size() - 1;
  const std::string fpath = absl::StrCat("filter_chains[0].filters[", last, "]");
  const google::protobuf::Any& typed = chain.filters(last).typed_config();
  if (typed.Is<hcm::HttpConnectionManager>()) {
    hcm::HttpConnectionManager m;
    if (!typed.UnpackTo(&m)) return Invalid(l.name(), fpath + ": does not parse");
    out->kind = Kind::kHttp;
    out->stat_prefix = m.stat_prefix();
    out->stream_idle_timeout =
        Timeout(m.has_stream_idle_timeout(), m.stream_idle_timeout(), absl::Minutes(5));
    if (absl::Status s = ReadHttpFilters(m, l.name(), fpath, out.get()); !s.ok()) return s;
    if (absl::Status s = ReadAccessLogs(m.access_log(), l.name(), fpath, out.get()); !s.ok())
      return s;
    absl::StatusOr<telemetry::TracingConfigPtr> tracing = telemetry::TracingFromProto(
        m.tracing(), out->direction == Direction::kInbound, fpath + ".tracing");
    if (!tracing.ok()) return Invalid(l.name(), std::string(tracing.status().message()));
    out->tracing = *std::move(tracing);
    if (m.has_rds()) {
      out->rds_name = m.rds().route_config_name();
      if (out->rds_name.empty())
        return Invalid(l.name(), fpath + ".rds.route_config_name: required");
    } else if (m.has_route_config()) {
      absl::StatusOr<RouteTablePtr> table = RouteTable::FromProto(m.route_config());
      if (!table.ok()) {
        return Invalid(l.name(), absl::StrCat(fpath, ".route_config: ", table.status().message()));
      }
      out->inline_routes = *table;
    } else {
      return Invalid(l.name(), fpath + ": rds or route_config is required");
    }
  } else if (typed.Is<TcpProxy>()) {
    TcpProxy t;
    if (!typed.UnpackTo(&t)) return Invalid(l.name(), fpath + ": does not parse");
    out->kind = Kind::kTcp;
    out->stat_prefix = t.stat_prefix();
    if (absl::Status s = ReadAccessLogs(t.access_log(), l.name(), fpath, out.get()); !s.ok())
      return s;
    if (!t.cluster().empty()) {
      out->tcp_targets.push_back({t.cluster(), 1});
    } else {
      for (const auto& c : t.weighted_clusters().clusters()) {
        if (c.name().empty())
          return Invalid(l.name(), fpath + ".weighted_clusters: a name is required");
        out->tcp_targets.push_back({c.name(), c.weight()});
        out->tcp_total_weight += c.weight();
      }
      if (out->tcp_targets.empty())
        return Invalid(l.name(), fpath + ": cluster or weighted_clusters is required");
    }
    // Envoy's default: an hour without a byte either way closes the connection; 0 disables it.
    out->tcp_idle_timeout = Timeout(t.has_idle_timeout(), t.idle_timeout(), absl::Hours(1));
  } else {
    return Invalid(l.name(), absl::StrCat(fpath, ": unsupported filter ", typed.type_url()));
  }
  return ListenerConfigPtr(std::move(out));
}

}  // namespace mesh::dataplane
