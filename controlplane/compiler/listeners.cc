// Gateway and sidecar listeners, with the route configs they name.
//
// Gateway: one listener per Gateway server port ("0.0.0.0_80"); HTTP ports route by the route
// config "http.80", whose virtual hosts are the hosts of the VirtualServices bound to the gateway
// intersected with the server's hosts; TCP ports proxy to the VirtualService's tcp route.
//
// Sidecar: "virtualOutbound" (the HTTP proxy listener apps send requests to), routing every
// HTTP service by Host through the route config "virtualOutbound"; one listener per service port
// ("0.0.0.0_8080"), routing HTTP by the route config "8080" and TCP by the VirtualService's tcp
// routes; one inbound listener per INBOUND_PORTS entry ("inbound|18081") to the cluster
// "inbound|18081||", the local app.
#include <algorithm>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "controlplane/compiler/authn.h"
#include "controlplane/compiler/authz.h"
#include "controlplane/compiler/builders.h"
#include "controlplane/compiler/telemetry.h"
#include "envoy/config/cluster/v3/cluster.pb.h"
#include "envoy/config/endpoint/v3/endpoint.pb.h"
#include "envoy/config/listener/v3/listener.pb.h"
#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb.h"
#include "envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.pb.h"
#include "envoy/extensions/transport_sockets/tls/v3/tls.pb.h"

namespace mesh::compiler::internal {
namespace {

namespace core = envoy::config::core::v3;
namespace route = envoy::config::route::v3;
namespace listener = envoy::config::listener::v3;
namespace hcm = envoy::extensions::filters::network::http_connection_manager::v3;
using envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy;

// The inbound side of the mesh identity: the workload certificate ("default") and a required
// client certificate checked against the mesh root ("ROOTCA"), both over SDS.
envoy::extensions::transport_sockets::tls::v3::DownstreamTlsContext DownstreamMeshTls() {
  envoy::extensions::transport_sockets::tls::v3::DownstreamTlsContext ctx;
  auto* common = ctx.mutable_common_tls_context();
  *common->add_tls_certificate_sds_secret_configs() = AdsSecret("default");
  auto* combined = common->mutable_combined_validation_context();
  combined->mutable_default_validation_context();
  *combined->mutable_validation_context_sds_secret_config() = AdsSecret("ROOTCA");
  ctx.mutable_require_client_certificate()->set_value(true);
  return ctx;
}

bool IsHttp(const std::string& protocol) {
  return protocol == "HTTP" || protocol == "HTTP2" || protocol == "GRPC" || protocol == "GRPC-WEB";
}

listener::Listener BaseListener(const std::string& name, uint32_t port,
                                core::TrafficDirection direction) {
  listener::Listener l;
  l.set_name(name);
  auto* addr = l.mutable_address()->mutable_socket_address();
  addr->set_address("0.0.0.0");
  addr->set_port_value(port);
  l.set_traffic_direction(direction);
  return l;
}

// The workload's JWT and RBAC filters, before the manager's own (fault, router).
void AddHttpRbac(const AuthzFilters& authz, hcm::HttpConnectionManager* m) {
  if (authz.http.empty() && !authz.jwt) return;
  google::protobuf::RepeatedPtrField<hcm::HttpFilter> filters;
  if (authz.jwt) {
    hcm::HttpFilter* f = filters.Add();
    f->set_name("envoy.filters.http.jwt_authn");
    f->mutable_typed_config()->PackFrom(*authz.jwt);
  }
  for (const auto& rbac : authz.http) {
    hcm::HttpFilter* f = filters.Add();
    f->set_name("envoy.filters.http.rbac");
    f->mutable_typed_config()->PackFrom(rbac);
  }
  for (auto& f : *m->mutable_http_filters()) *filters.Add() = std::move(f);
  m->mutable_http_filters()->Swap(&filters);
}

void AddHttpChain(hcm::HttpConnectionManager m, const AuthzFilters& authz, listener::Listener* l) {
  AddHttpRbac(authz, &m);
  listener::Filter* f = l->add_filter_chains()->add_filters();
  f->set_name("envoy.filters.network.http_connection_manager");
  f->mutable_typed_config()->PackFrom(m);
}

void AddRdsChain(const std::string& route_config, const AuthzFilters& authz,
                 listener::Listener* l) {
  hcm::HttpConnectionManager m = Manager(l->name());
  m.mutable_rds()->set_route_config_name(route_config);
  m.mutable_rds()->mutable_config_source()->mutable_ads();
  m.mutable_rds()->mutable_config_source()->set_resource_api_version(core::V3);
  AddHttpChain(std::move(m), authz, l);
}

// The workload's network RBAC filters, then the tcp_proxy.
void AddTcpChain(const TcpProxy& proxy, const AuthzFilters& authz, listener::Listener* l) {
  listener::FilterChain* chain = l->add_filter_chains();
  for (const auto& rbac : authz.tcp) {
    listener::Filter* f = chain->add_filters();
    f->set_name("envoy.filters.network.rbac");
    f->mutable_typed_config()->PackFrom(rbac);
  }
  listener::Filter* f = chain->add_filters();
  f->set_name("envoy.filters.network.tcp_proxy");
  f->mutable_typed_config()->PackFrom(proxy);
}

// connectionPool.tcp.idleTimeout of `host`'s DestinationRule (subset and port-level settings
// applied) on the tcp_proxy; Envoy's 1 h default stands when there is none.
void SetTcpIdleTimeout(const Lookup& lookup, const std::string& host, const std::string& subset,
                       uint32_t port, TcpProxy* out) {
  const model::Object* dr_obj = lookup.DestinationRuleFor(host);
  if (!dr_obj) return;
  const auto& dr = std::get<model::DestinationRule>(dr_obj->spec);
  const model::Subset* s = nullptr;
  for (const auto& candidate : dr.subsets) {
    if (candidate.name == subset) s = &candidate;
  }
  model::TrafficPolicy tp = EffectivePolicy(&dr, s, port);
  if (tp.connection_pool && tp.connection_pool->tcp && tp.connection_pool->tcp->idle_timeout)
    SetDuration(*tp.connection_pool->tcp->idle_timeout, out->mutable_idle_timeout());
}

// The tcp_proxy for `host:port`: the first tcp route of the host's VirtualService whose match
// applies (port, sourceLabels, gateways), else the whole service.
TcpProxy TcpRoute(const Lookup& lookup, const ProxyClass& proxy, const std::string& host,
                  uint32_t port, const model::Object* vs_obj, const std::string& gateway) {
  TcpProxy out;
  out.set_stat_prefix(ClusterName(port, "", host));
  if (vs_obj) {
    const auto& vs = std::get<model::VirtualService>(vs_obj->spec);
    for (const model::TCPRoute& r : vs.tcp) {
      bool applies = r.match.empty();
      for (const model::L4MatchAttributes& m : r.match) {
        if (m.port && m.port != port) continue;
        if (!registry::LabelsMatch(m.source_labels, proxy.labels)) continue;
        if (!m.gateways.empty() && !AppliesTo(m.gateways, vs_obj->meta.namespace_, gateway))
          continue;
        if (!m.source_namespace.empty() && m.source_namespace != proxy.ns) continue;
        applies = true;
        break;
      }
      if (!applies || r.route.empty()) continue;
      auto cluster_of = [&](const model::Destination& d) {
        std::string dest = model::ResolveHost(d.host, vs_obj->meta.namespace_);
        return ClusterName(DestinationPort(lookup, dest, d, port, host), d.subset, dest);
      };
      // The idle timeout is the (first) destination's DestinationRule connectionPool.tcp.
      const model::Destination& first = r.route[0].destination;
      std::string first_host = model::ResolveHost(first.host, vs_obj->meta.namespace_);
      SetTcpIdleTimeout(lookup, first_host, first.subset,
                        DestinationPort(lookup, first_host, first, port, host), &out);
      if (r.route.size() == 1) {
        out.set_cluster(cluster_of(r.route[0].destination));
      } else {
        for (const model::RouteDestination& d : r.route) {
          if (d.weight == 0) continue;
          auto* cw = out.mutable_weighted_clusters()->add_clusters();
          cw->set_name(cluster_of(d.destination));
          cw->set_weight(static_cast<uint32_t>(d.weight));
        }
      }
      return out;
    }
  }
  out.set_cluster(ClusterName(port, "", host));
  SetTcpIdleTimeout(lookup, host, "", port, &out);
  return out;
}

// Whether a Gateway server host ("ns/host", "*/host", "./host" or "host") admits `host` of a
// VirtualService in `vs_ns`, for a gateway in `gateway_ns`.
bool ServerAdmits(const std::string& server_host, const std::string& host, const std::string& vs_ns,
                  const std::string& gateway_ns) {
  std::string pattern = server_host;
  if (size_t slash = server_host.find('/'); slash != std::string::npos) {
    std::string ns = server_host.substr(0, slash);
    pattern = server_host.substr(slash + 1);
    if (ns == ".") ns = gateway_ns;
    if (ns != "*" && ns != vs_ns) return false;
  }
  return model::HostMatches(pattern, host) || model::HostMatches(host, pattern);
}

}  // namespace

void CompileGatewayListeners(const model::ConfigSnapshot& config, const Lookup& lookup,
                             const ProxyClass& proxy, Resources* out) {
  struct Bound {
    std::string gateway;  // "ns/name"
    const model::Server* server;
  };
  std::map<uint32_t, std::vector<Bound>> by_port;
  for (const model::Object* o : config.Sorted(model::Kind::kGateway)) {
    const auto& gw = std::get<model::Gateway>(o->spec);
    if (!registry::LabelsMatch(gw.selector, proxy.labels)) continue;
    for (const model::Server& s : gw.servers) {
      by_port[s.port.number].push_back({absl::StrCat(o->meta.namespace_, "/", o->meta.name), &s});
    }
  }
  // Istio merges the VirtualServices bound to one gateway for one host, oldest first.
  std::vector<const model::Object*> services = config.Sorted(model::Kind::kVirtualService);
  std::stable_sort(services.begin(), services.end(),
                   [](const model::Object* a, const model::Object* b) {
                     return CreatedBefore(a->meta, b->meta);
                   });
  // A gateway's listeners log and trace as a client's do (Istio reports gateways as source).
  const AccessLogging logging = AccessLoggingFor(config, proxy.ns, proxy.labels, lookup.mesh);
  const Tracing tracing = TracingFor(config, proxy.ns, proxy.labels, lookup.mesh);
  // A gateway is a workload too: AuthorizationPolicies select it by its labels.
  const AuthzFilters authz = BuildAuthz(config, proxy.ns, proxy.labels, {}, lookup.mesh);
  for (const auto& [port, bound] : by_port) {
    const std::string& protocol = bound[0].server->port.protocol;
    std::string name = absl::StrCat("0.0.0.0_", port);
    listener::Listener l = BaseListener(name, port, core::OUTBOUND);  // as Istio marks gateways
    const model::ServerTLSSettings* tls = bound[0].server->tls ? &*bound[0].server->tls : nullptr;
    using TlsMode = model::ServerTLSSettings::Mode;
    // HTTPS with certificates from files terminates TLS here and routes like HTTP.
    bool https = (protocol == "HTTPS") && tls &&
                 (tls->mode == TlsMode::kSimple || tls->mode == TlsMode::kMutual) &&
                 tls->credential_name.empty() && !tls->server_certificate.empty();
    if (IsHttp(protocol) || https) {
      std::string rc_name = absl::StrCat(https ? "https." : "http.", port);
      route::RouteConfiguration rc;
      rc.set_name(rc_name);
      std::map<std::string, route::VirtualHost*> vhosts;
      std::set<std::pair<const model::Object*, std::string>> merged;  // each VS once per host
      for (const model::Object* vs_obj : services) {
        const auto& vs = std::get<model::VirtualService>(vs_obj->spec);
        for (const Bound& b : bound) {
          if (!AppliesTo(vs.gateways, vs_obj->meta.namespace_, b.gateway) || vs.gateways.empty())
            continue;
          std::string gateway_ns = b.gateway.substr(0, b.gateway.find('/'));
          for (const std::string& raw : vs.hosts) {
            std::string host = model::ResolveHost(raw, vs_obj->meta.namespace_);
            bool admitted = false;
            for (const std::string& sh : b.server->hosts) {
              admitted = admitted || ServerAdmits(sh, host, vs_obj->meta.namespace_, gateway_ns);
            }
            if (!admitted || !merged.insert({vs_obj, host}).second) continue;
            route::VirtualHost*& vh = vhosts[host];
            if (!vh) {
              vh = rc.add_virtual_hosts();
              vh->set_name(absl::StrCat(host, ":", port));
              if (host == "*") {
                vh->add_domains("*");
              } else {
                vh->add_domains(host);
                vh->add_domains(absl::StrCat(host, ":", port));
              }
            }
            for (size_t i = 0; i < vs.http.size(); ++i) {
              AddHttpRoute(vs.http[i], i, *vs_obj, proxy, lookup, host, port, b.gateway, vh);
            }
          }
        }
      }
      // httpsRedirect: plaintext requests are sent to https with a 301.
      if (!https && tls && tls->https_redirect) {
        for (auto& vh : *rc.mutable_virtual_hosts()) vh.set_require_tls(route::VirtualHost::ALL);
      }
      AddRdsChain(rc_name, authz, &l);
      out->jwks_uris.insert(authz.jwks_uris.begin(), authz.jwks_uris.end());
      if (https) {
        envoy::extensions::transport_sockets::tls::v3::DownstreamTlsContext ctx;
        auto* cert = ctx.mutable_common_tls_context()->add_tls_certificates();
        cert->mutable_certificate_chain()->set_filename(tls->server_certificate);
        cert->mutable_private_key()->set_filename(tls->private_key);
        if (tls->mode == TlsMode::kMutual) {
          ctx.mutable_common_tls_context()
              ->mutable_validation_context()
              ->mutable_trusted_ca()
              ->set_filename(tls->ca_certificates);
          ctx.mutable_require_client_certificate()->set_value(true);
        }
        auto* socket = l.mutable_filter_chains(0)->mutable_transport_socket();
        socket->set_name("envoy.transport_sockets.tls");
        socket->mutable_typed_config()->PackFrom(ctx);
      }
      out->by_type[kRouteType][rc_name] = Pack(rc);
    } else if (protocol == "TCP" || protocol == "MONGO") {
      // The first VirtualService bound to this gateway with a tcp route for the port.
      const model::Object* chosen = nullptr;
      std::string host, gateway;
      for (const model::Object* vs_obj : services) {
        const auto& vs = std::get<model::VirtualService>(vs_obj->spec);
        for (const Bound& b : bound) {
          if (!chosen && !vs.tcp.empty() && !vs.gateways.empty() &&
              AppliesTo(vs.gateways, vs_obj->meta.namespace_, b.gateway)) {
            chosen = vs_obj;
            gateway = b.gateway;
            host = model::ResolveHost(vs.hosts[0], vs_obj->meta.namespace_);
          }
        }
      }
      if (!chosen) continue;  // nothing routes this port yet
      TcpProxy tcp = TcpRoute(lookup, proxy, host, port, chosen, gateway);
      if (tcp.cluster().empty() && tcp.weighted_clusters().clusters().empty()) continue;
      AddTcpChain(tcp, authz, &l);
    } else {
      // TLS passthrough, credentialName (Kubernetes secrets) and ISTIO_MUTUAL gateway servers
      // are not served yet.
      continue;
    }
    AddAccessLog(logging, false, &l);
    AddTracing(tracing.client, &l);
    out->by_type[kListenerType][name] = Pack(l);
  }
}

// Istio's inbound cluster metadata: the services behind the port (filter "istio", list
// "services" of host, name and namespace), for the destination side's destination_service.
void SetInboundServices(const std::vector<const model::Object*>& services,
                        envoy::config::cluster::v3::Cluster* c) {
  if (services.empty()) return;
  google::protobuf::ListValue* list =
      (*(*c->mutable_metadata()->mutable_filter_metadata())["istio"].mutable_fields())["services"]
          .mutable_list_value();
  for (const model::Object* o : services) {
    auto& fields = *list->add_values()->mutable_struct_value()->mutable_fields();
    fields["host"].set_string_value(
        absl::StrCat(o->meta.name, ".", o->meta.namespace_, ".svc.cluster.local"));
    fields["name"].set_string_value(o->meta.name);
    fields["namespace"].set_string_value(o->meta.namespace_);
  }
}

void CompileSidecarListeners(const model::ConfigSnapshot& config,
                             const registry::Registry& registry, const Lookup& lookup,
                             const ProxyClass& proxy, Resources* out) {
  // Outbound: per service port, and the HTTP proxy listener over all HTTP services.
  route::RouteConfiguration virtual_outbound;
  virtual_outbound.set_name("virtualOutbound");
  std::map<uint32_t, route::RouteConfiguration> by_port;
  std::map<uint32_t, const registry::ServicePort*> tcp_by_port;
  std::map<std::string, int> http_ports_of_host;
  for (const registry::ServicePort& sp : registry.ports()) {
    if (IsHttp(sp.protocol)) ++http_ports_of_host[sp.host];
  }
  for (const registry::ServicePort& sp : registry.ports()) {
    if (IsHttp(sp.protocol)) {
      route::RouteConfiguration& rc = by_port[sp.port];
      rc.set_name(std::to_string(sp.port));
      // On a per-port listener the port is known, so bare names are unambiguous.
      *rc.add_virtual_hosts() = ServiceVirtualHost(lookup, proxy, sp, true);
      // Through the HTTP proxy listener a bare name means the service's only HTTP port, or 80.
      *virtual_outbound.add_virtual_hosts() =
          ServiceVirtualHost(lookup, proxy, sp, sp.port == 80 || http_ports_of_host[sp.host] == 1);
    } else if (!tcp_by_port.count(sp.port)) {
      tcp_by_port[sp.port] = &sp;
    } else {
      log::Debug("compiler: TCP port ", sp.port, " of ", sp.host, " is shadowed by ",
                 tcp_by_port[sp.port]->host, " on the per-port outbound listener");
    }
  }
  const AccessLogging logging = AccessLoggingFor(config, proxy.ns, proxy.labels, lookup.mesh);
  const Tracing tracing = TracingFor(config, proxy.ns, proxy.labels, lookup.mesh);
  listener::Listener vo = BaseListener("virtualOutbound", 15001, core::OUTBOUND);
  AddRdsChain("virtualOutbound", {}, &vo);
  AddAccessLog(logging, false, &vo);
  AddTracing(tracing.client, &vo);
  out->by_type[kListenerType]["virtualOutbound"] = Pack(vo);
  out->by_type[kRouteType]["virtualOutbound"] = Pack(virtual_outbound);
  for (const auto& [port, rc] : by_port) {
    std::string name = absl::StrCat("0.0.0.0_", port);
    listener::Listener l = BaseListener(name, port, core::OUTBOUND);
    AddRdsChain(rc.name(), {}, &l);
    AddAccessLog(logging, false, &l);
    AddTracing(tracing.client, &l);
    out->by_type[kListenerType][name] = Pack(l);
    out->by_type[kRouteType][rc.name()] = Pack(rc);
  }
  for (const auto& [port, sp] : tcp_by_port) {
    if (by_port.count(port)) continue;  // an HTTP service already owns the port
    std::string name = absl::StrCat("0.0.0.0_", port);
    listener::Listener l = BaseListener(name, port, core::OUTBOUND);
    AddTcpChain(TcpRoute(lookup, proxy, sp->host, port, lookup.VirtualServiceFor(sp->host), ""), {},
                &l);
    AddAccessLog(logging, false, &l);
    out->by_type[kListenerType][name] = Pack(l);
  }

  // Inbound: the proxy's own ports, to the local app.
  for (const InboundPort& in : proxy.inbound) {
    std::string protocol = "TCP";
    uint32_t app_port = in.app_port;
    std::string service_name;
    std::vector<const model::Object*> services;  // the Services this port serves
    config.ForEach(model::Kind::kService, [&](const model::Object& o) {
      const auto& svc = std::get<model::Service>(o.spec);
      if (o.meta.namespace_ != proxy.ns || svc.selector.empty() ||
          !registry::LabelsMatch(svc.selector, proxy.labels))
        return;
      for (const auto& p : svc.ports) {
        if (p.port != in.service_port) continue;
        if (const registry::ServicePort* sp = registry.Find(
                absl::StrCat(o.meta.name, ".", o.meta.namespace_, ".svc.cluster.local"), p.port)) {
          protocol = sp->protocol;
        }
        if (!app_port) app_port = p.target_port ? p.target_port : p.port;
        if (service_name.empty()) service_name = o.meta.name;
        if (services.empty() || services.back() != &o) services.push_back(&o);
      }
    });
    if (!app_port) app_port = in.service_port;
    std::string cluster_name = absl::StrCat("inbound|", in.listen_port, "||");
    envoy::config::cluster::v3::Cluster c;
    c.set_name(cluster_name);
    c.set_type(envoy::config::cluster::v3::Cluster::STATIC);
    SetDuration(absl::Seconds(10), c.mutable_connect_timeout());
    // STATIC: the endpoint travels inside the cluster, as Envoy expects.
    envoy::config::endpoint::v3::ClusterLoadAssignment& cla = *c.mutable_load_assignment();
    cla.set_cluster_name(cluster_name);
    auto* group = cla.add_endpoints();
    group->mutable_locality();
    group->mutable_load_balancing_weight()->set_value(1);
    auto* addr =
        group->add_lb_endpoints()->mutable_endpoint()->mutable_address()->mutable_socket_address();
    addr->set_address("127.0.0.1");
    addr->set_port_value(app_port);
    // The app speaks its port's protocol: HTTP/2 (prior knowledge) for grpc and http2 ports.
    if (IsHttp(protocol)) SetHttpProtocolOptions({}, protocol, &c);
    SetInboundServices(services, &c);
    out->by_type[kClusterType][cluster_name] = Pack(c);

    std::string name = absl::StrCat("inbound|", in.listen_port);
    listener::Listener l = BaseListener(name, in.listen_port, core::INBOUND);
    // Authorization at the destination: the policies' ports are the app's port.
    const AuthzFilters authz =
        BuildAuthz(config, proxy.ns, proxy.labels, {{app_port, in.listen_port}}, lookup.mesh);
    if (IsHttp(protocol)) {
      hcm::HttpConnectionManager m = Manager(name);
      route::RouteConfiguration* rc = m.mutable_route_config();
      rc->set_name(name);
      route::VirtualHost* vh = rc->add_virtual_hosts();
      vh->set_name(name);
      vh->add_domains("*");
      route::Route* r = vh->add_routes();
      r->set_name("default");
      r->mutable_match()->set_prefix("/");
      r->mutable_route()->set_cluster(cluster_name);
      // Istio's inbound span name: the service's host and port.
      r->mutable_decorator()->set_operation(absl::StrCat(
          services.empty() ? name
                           : absl::StrCat(services[0]->meta.name, ".", services[0]->meta.namespace_,
                                          ".svc.cluster.local:", in.service_port),
          "/*"));
      AddHttpChain(std::move(m), authz, &l);
      out->jwks_uris.insert(authz.jwks_uris.begin(), authz.jwks_uris.end());
    } else {
      TcpProxy tcp;
      tcp.set_stat_prefix(name);
      tcp.set_cluster(cluster_name);
      AddTcpChain(tcp, authz, &l);
    }
    // Mutual TLS on the way in, as PeerAuthentication or Policy decide: STRICT terminates TLS
    // and requires a client certificate; PERMISSIVE adds a TLS chain before the plaintext one
    // (picked by transport protocol); DISABLE leaves plaintext.
    model::MtlsMode mode =
        InboundMtls(config, proxy.ns, proxy.labels, service_name, in.service_port, app_port).mode;
    if (mode == model::MtlsMode::kStrict || mode == model::MtlsMode::kPermissive) {
      if (mode == model::MtlsMode::kPermissive) *l.add_filter_chains() = l.filter_chains(0);
      listener::FilterChain& tls_chain = *l.mutable_filter_chains(0);
      if (mode == model::MtlsMode::kPermissive)
        tls_chain.mutable_filter_chain_match()->set_transport_protocol("tls");
      tls_chain.mutable_transport_socket()->set_name("envoy.transport_sockets.tls");
      tls_chain.mutable_transport_socket()->mutable_typed_config()->PackFrom(DownstreamMeshTls());
    }
    AddAccessLog(logging, true, &l);
    AddTracing(tracing.server, &l);
    out->by_type[kListenerType][name] = Pack(l);
  }
}

}  // namespace mesh::compiler::internal
