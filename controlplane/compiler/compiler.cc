#include "controlplane/compiler/compiler.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <set>
#include <string_view>
#include <tuple>
#include <unordered_map>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/istio_labels.h"
#include "controlplane/compiler/builders.h"
#include "controlplane/compiler/telemetry.h"
#include "controlplane/model/names.h"
#include "envoy/config/cluster/v3/cluster.pb.h"
#include "envoy/config/endpoint/v3/endpoint.pb.h"
#include "envoy/config/listener/v3/listener.pb.h"
#include "envoy/config/route/v3/route.pb.h"
#include "envoy/extensions/filters/http/fault/v3/fault.pb.h"
#include "envoy/extensions/filters/http/router/v3/router.pb.h"
#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb.h"
#include "envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.pb.h"
#include "envoy/extensions/transport_sockets/tls/v3/tls.pb.h"
#include "envoy/extensions/upstreams/http/v3/http_protocol_options.pb.h"
#include "nlohmann/json.hpp"

namespace mesh::compiler {
namespace internal {

namespace core = envoy::config::core::v3;
namespace route = envoy::config::route::v3;
namespace cluster = envoy::config::cluster::v3;
namespace endpoint = envoy::config::endpoint::v3;
namespace listener = envoy::config::listener::v3;

// The cluster named in Istio's endpoint metadata (Istio's default cluster id).
constexpr char kClusterId[] = "Kubernetes";
namespace hcm = envoy::extensions::filters::network::http_connection_manager::v3;
using model::StringMatch;

std::string ClusterName(uint32_t port, const std::string& subset, const std::string& host) {
  return absl::StrCat("outbound|", port, "|", subset, "|", host);
}

void SetDuration(absl::Duration d, google::protobuf::Duration* out) {
  int64_t nanos = absl::ToInt64Nanoseconds(d);
  out->set_seconds(nanos / 1000000000);
  out->set_nanos(static_cast<int32_t>(nanos % 1000000000));
}

bool VisibleToMesh(const std::vector<std::string>& gateways) {
  return gateways.empty() || std::find(gateways.begin(), gateways.end(), "mesh") != gateways.end();
}

bool AppliesTo(const std::vector<std::string>& refs, const std::string& ns,
               const std::string& gateway) {
  if (gateway.empty()) return VisibleToMesh(refs);
  for (const std::string& ref : refs) {
    if (ref == "mesh") continue;
    std::string full = ref.find('/') == std::string::npos ? absl::StrCat(ns, "/", ref) : ref;
    if (full == gateway) return true;
  }
  return false;
}

void SetRegex(const std::string& regex, envoy::type::matcher::v3::RegexMatcher* out) {
  out->mutable_google_re2();
  out->set_regex(regex);
}

// A non-presence StringMatch as an Envoy StringMatcher.
void SetStringMatcher(const StringMatch& m, envoy::type::matcher::v3::StringMatcher* out) {
  switch (m.type) {
    case StringMatch::Type::kExact: out->set_exact(m.value); break;
    case StringMatch::Type::kPrefix: out->set_prefix(m.value); break;
    case StringMatch::Type::kRegex: SetRegex(m.value, out->mutable_safe_regex()); break;
    case StringMatch::Type::kPresent: break;  // callers express presence themselves
  }
}

void AddHeaderMatch(const std::string& name, const StringMatch& m, bool invert,
                    route::RouteMatch* match) {
  route::HeaderMatcher* h = match->add_headers();
  h->set_name(name);
  h->set_invert_match(invert);
  switch (m.type) {
    case StringMatch::Type::kExact: h->set_exact_match(m.value); break;
    case StringMatch::Type::kPrefix: h->set_prefix_match(m.value); break;
    case StringMatch::Type::kRegex: SetRegex(m.value, h->mutable_safe_regex_match()); break;
    case StringMatch::Type::kPresent: h->set_present_match(true); break;
  }
}

// The port a destination reaches: the one it names, the only one its service has, or the port
// being routed when the destination is the routed service itself.
uint32_t DestinationPort(const Lookup& lookup, const std::string& host, const model::Destination& d,
                         uint32_t routed_port, const std::string& routed_host) {
  if (d.port) return d.port->number;
  const std::vector<uint32_t>& ports = lookup.PortsOf(host);
  if (ports.size() == 1) return ports[0];
  if (host == routed_host) return routed_port;
  return ports.empty() ? routed_port : ports[0];
}

void AddHeaderOps(const model::HeaderOperations& ops,
                  google::protobuf::RepeatedPtrField<core::HeaderValueOption>* add,
                  google::protobuf::RepeatedPtrField<std::string>* remove) {
  for (const auto& [k, v] : ops.set) {
    core::HeaderValueOption* o = add->Add();
    o->mutable_header()->set_key(k);
    o->mutable_header()->set_value(v);
    o->set_append_action(core::HeaderValueOption::OVERWRITE_IF_EXISTS_OR_ADD);
  }
  for (const auto& [k, v] : ops.add) {
    core::HeaderValueOption* o = add->Add();
    o->mutable_header()->set_key(k);
    o->mutable_header()->set_value(v);
    o->set_append_action(core::HeaderValueOption::APPEND_IF_EXISTS_OR_ADD);
  }
  for (const std::string& r : ops.remove) *remove->Add() = r;
}

// Istio's translation of HTTPRetry: retryOn's numeric entries are status codes to retry
// (retriable-status-codes), and with none given retriable-status-codes means 503.
void SetRetryPolicy(const model::HTTPRetry& retries, route::RetryPolicy* retry) {
  std::vector<std::string> on;
  const std::string& given =
      retries.retry_on.empty() ? IstioDefaultHttpRetry().retry_on : retries.retry_on;
  for (absl::string_view token : absl::StrSplit(given, ',', absl::SkipEmpty())) {
    token = absl::StripAsciiWhitespace(token);
    uint32_t code;
    if (absl::SimpleAtoi(token, &code)) {
      retry->add_retriable_status_codes(code);
    } else {
      on.emplace_back(token);
    }
  }
  const bool codes = retry->retriable_status_codes_size() > 0;
  if (codes && std::find(on.begin(), on.end(), "retriable-status-codes") == on.end())
    on.push_back("retriable-status-codes");
  if (!codes && std::find(on.begin(), on.end(), "retriable-status-codes") != on.end())
    retry->add_retriable_status_codes(503);
  retry->set_retry_on(absl::StrJoin(on, ","));
  retry->mutable_num_retries()->set_value(static_cast<uint32_t>(retries.attempts));
  if (retries.per_try_timeout)
    SetDuration(*retries.per_try_timeout, retry->mutable_per_try_timeout());
}

// Builds the routes of one VirtualService HTTP route, one per match (or one catch-all).
void AddHttpRoute(const model::HTTPRoute& r, size_t index, const model::Object& vs_obj,
                  const ProxyClass& proxy, const Lookup& lookup, const std::string& host,
                  uint32_t port, const std::string& gateway, route::VirtualHost* vh) {
  std::vector<const model::HTTPMatchRequest*> matches;
  for (const auto& m : r.match) {
    if (m.port && m.port != port) continue;
    if (!registry::LabelsMatch(m.source_labels, proxy.labels)) continue;
    if (!m.gateways.empty() && !AppliesTo(m.gateways, vs_obj.meta.namespace_, gateway)) continue;
    if (!m.source_namespace.empty() && m.source_namespace != proxy.ns) continue;
    matches.push_back(&m);
  }
  if (!r.match.empty() && matches.empty()) return;  // no match applies to this proxy
  if (matches.empty()) matches.push_back(nullptr);

  for (const model::HTTPMatchRequest* m : matches) {
    route::Route* out = vh->add_routes();
    out->set_name(r.name.empty()
                      ? absl::StrCat(vs_obj.meta.namespace_, "/", vs_obj.meta.name, "#", index)
                      : r.name);
    route::RouteMatch* match = out->mutable_match();
    if (m && m->uri) {
      switch (m->uri->type) {
        case StringMatch::Type::kExact: match->set_path(m->uri->value); break;
        case StringMatch::Type::kPrefix: match->set_prefix(m->uri->value); break;
        case StringMatch::Type::kRegex: SetRegex(m->uri->value, match->mutable_safe_regex()); break;
        case StringMatch::Type::kPresent: match->set_prefix("/"); break;
      }
    } else {
      match->set_prefix("/");
    }
    if (m) {
      if (m->ignore_uri_case) match->mutable_case_sensitive()->set_value(false);
      for (const auto& [name, sm] : m->headers) AddHeaderMatch(name, sm, false, match);
      for (const auto& [name, sm] : m->without_headers) AddHeaderMatch(name, sm, true, match);
      if (m->method) AddHeaderMatch(":method", *m->method, false, match);
      if (m->authority) AddHeaderMatch(":authority", *m->authority, false, match);
      if (m->scheme) AddHeaderMatch(":scheme", *m->scheme, false, match);
      for (const auto& [name, sm] : m->query_params) {
        route::QueryParameterMatcher* q = match->add_query_parameters();
        q->set_name(name);
        if (sm.type == StringMatch::Type::kPresent)
          q->set_present_match(true);
        else
          SetStringMatcher(sm, q->mutable_string_match());
      }
    }
    AddHeaderOps(r.headers.request, out->mutable_request_headers_to_add(),
                 out->mutable_request_headers_to_remove());
    AddHeaderOps(r.headers.response, out->mutable_response_headers_to_add(),
                 out->mutable_response_headers_to_remove());

    if (r.redirect) {
      route::RedirectAction* redirect = out->mutable_redirect();
      if (!r.redirect->uri.empty()) redirect->set_path_redirect(r.redirect->uri);
      if (!r.redirect->authority.empty()) redirect->set_host_redirect(r.redirect->authority);
      if (r.redirect->port) redirect->set_port_redirect(r.redirect->port);
      if (!r.redirect->scheme.empty()) redirect->set_scheme_redirect(r.redirect->scheme);
      switch (r.redirect->redirect_code) {
        case 302: redirect->set_response_code(route::RedirectAction::FOUND); break;
        case 303: redirect->set_response_code(route::RedirectAction::SEE_OTHER); break;
        case 307: redirect->set_response_code(route::RedirectAction::TEMPORARY_REDIRECT); break;
        case 308: redirect->set_response_code(route::RedirectAction::PERMANENT_REDIRECT); break;
        default: redirect->set_response_code(route::RedirectAction::MOVED_PERMANENTLY); break;
      }
      continue;
    }
    if (r.route.empty()) {
      out->mutable_direct_response()->set_status(404);
      continue;
    }
    route::RouteAction* action = out->mutable_route();
    auto cluster_of = [&](const model::Destination& d) {
      std::string dest_host = model::ResolveHost(d.host, vs_obj.meta.namespace_);
      return ClusterName(DestinationPort(lookup, dest_host, d, port, host), d.subset, dest_host);
    };
    if (r.route.size() == 1) {
      action->set_cluster(cluster_of(r.route[0].destination));
    } else {
      route::WeightedCluster* wc = action->mutable_weighted_clusters();
      for (const model::HTTPRouteDestination& d : r.route) {
        if (d.weight == 0) continue;
        route::WeightedCluster::ClusterWeight* cw = wc->add_clusters();
        cw->set_name(cluster_of(d.destination));
        cw->mutable_weight()->set_value(static_cast<uint32_t>(d.weight));
        AddHeaderOps(d.headers.request, cw->mutable_request_headers_to_add(),
                     cw->mutable_request_headers_to_remove());
        AddHeaderOps(d.headers.response, cw->mutable_response_headers_to_add(),
                     cw->mutable_response_headers_to_remove());
      }
      wc->mutable_total_weight()->set_value(100);
    }
    out->mutable_decorator()->set_operation(RouteOperation(*out, absl::StrCat(host, ":", port)));
    if (r.fault) {
      envoy::extensions::filters::http::fault::v3::HTTPFault fault;
      auto percent = [](double pct, envoy::type::v3::FractionalPercent* out) {
        out->set_numerator(static_cast<uint32_t>(pct * 10000 + 0.5));
        out->set_denominator(envoy::type::v3::FractionalPercent::MILLION);
      };
      if (r.fault->delay) {
        SetDuration(r.fault->delay->fixed_delay, fault.mutable_delay()->mutable_fixed_delay());
        percent(r.fault->delay->percentage, fault.mutable_delay()->mutable_percentage());
      }
      if (r.fault->abort) {
        if (r.fault->abort->grpc_status) {
          fault.mutable_abort()->set_grpc_status(*r.fault->abort->grpc_status);
        } else {
          fault.mutable_abort()->set_http_status(
              static_cast<uint32_t>(r.fault->abort->http_status));
        }
        percent(r.fault->abort->percentage, fault.mutable_abort()->mutable_percentage());
      }
      (*out->mutable_typed_per_filter_config())["envoy.filters.http.fault"].PackFrom(fault);
    }
    if (r.cors_policy) {
      route::CorsPolicy* cors = action->mutable_cors();
      for (const StringMatch& o : r.cors_policy->allow_origins) {
        SetStringMatcher(o, cors->add_allow_origin_string_match());
      }
      cors->set_allow_methods(absl::StrJoin(r.cors_policy->allow_methods, ","));
      cors->set_allow_headers(absl::StrJoin(r.cors_policy->allow_headers, ","));
      cors->set_expose_headers(absl::StrJoin(r.cors_policy->expose_headers, ","));
      if (r.cors_policy->max_age)
        cors->set_max_age(std::to_string(absl::ToInt64Seconds(*r.cors_policy->max_age)));
      if (r.cors_policy->allow_credentials)
        cors->mutable_allow_credentials()->set_value(*r.cors_policy->allow_credentials);
    }
    // Consistent hashing is a property of the destination's DestinationRule, but Envoy reads
    // the hash key from the route.
    {
      const model::Destination& d = r.route[0].destination;
      std::string dest_host = model::ResolveHost(d.host, vs_obj.meta.namespace_);
      if (const model::Object* dr_obj = lookup.DestinationRuleFor(dest_host)) {
        const auto& dr = std::get<model::DestinationRule>(dr_obj->spec);
        const model::Subset* subset = nullptr;
        for (const auto& s : dr.subsets) {
          if (s.name == d.subset) subset = &s;
        }
        model::TrafficPolicy tp =
            EffectivePolicy(&dr, subset, DestinationPort(lookup, dest_host, d, port, host));
        if (tp.load_balancer && tp.load_balancer->consistent_hash) {
          const auto& ch = *tp.load_balancer->consistent_hash;
          route::RouteAction::HashPolicy* hp = action->add_hash_policy();
          if (!ch.http_header_name.empty()) {
            hp->mutable_header()->set_header_name(ch.http_header_name);
          } else if (ch.http_cookie) {
            hp->mutable_cookie()->set_name(ch.http_cookie->name);
            hp->mutable_cookie()->set_path(ch.http_cookie->path);
            if (ch.http_cookie->ttl)
              SetDuration(*ch.http_cookie->ttl, hp->mutable_cookie()->mutable_ttl());
          } else if (ch.use_source_ip) {
            hp->mutable_connection_properties()->set_source_ip(true);
          } else if (!ch.http_query_parameter_name.empty()) {
            hp->mutable_query_parameter()->set_name(ch.http_query_parameter_name);
          }
        }
      }
    }
    if (r.rewrite) {
      if (!r.rewrite->uri.empty()) action->set_prefix_rewrite(r.rewrite->uri);
      if (!r.rewrite->authority.empty()) action->set_host_rewrite_literal(r.rewrite->authority);
    }
    if (r.timeout) SetDuration(*r.timeout, action->mutable_timeout());
    // The route's own policy, else the mesh's default; attempts 0 means none.
    const model::HTTPRetry* retries =
        r.retries ? &*r.retries
                  : (lookup.mesh.default_http_retry ? &*lookup.mesh.default_http_retry : nullptr);
    if (retries && retries->attempts > 0) SetRetryPolicy(*retries, action->mutable_retry_policy());
    if (r.mirror) {
      route::RouteAction::RequestMirrorPolicy* mirror = action->add_request_mirror_policies();
      mirror->set_cluster(cluster_of(*r.mirror));
      double pct = r.mirror_percentage.value_or(100);
      auto* fraction = mirror->mutable_runtime_fraction()->mutable_default_value();
      fraction->set_numerator(static_cast<uint32_t>(pct * 10000));
      fraction->set_denominator(envoy::type::v3::FractionalPercent::MILLION);
    }
  }
}

route::VirtualHost ServiceVirtualHost(const Lookup& lookup, const ProxyClass& proxy,
                                      const registry::ServicePort& sp, bool bare_hosts) {
  route::VirtualHost vh;
  vh.set_name(absl::StrCat(sp.host, ":", sp.port));
  // Clients match on the authority they dialled: the FQDN, and Kubernetes' shorter forms.
  std::vector<std::string> hosts = {sp.host};
  if (absl::EndsWith(sp.host, ".svc.cluster.local")) {
    std::vector<std::string> parts = absl::StrSplit(sp.host, '.');
    hosts.push_back(absl::StrCat(parts[0], ".", parts[1], ".svc"));
    hosts.push_back(absl::StrCat(parts[0], ".", parts[1]));
    if (parts[1] == proxy.ns) hosts.push_back(parts[0]);
  }
  for (const std::string& h : hosts) {
    if (bare_hosts) vh.add_domains(h);
    vh.add_domains(absl::StrCat(h, ":", sp.port));
  }
  if (const model::Object* vs_obj = lookup.VirtualServiceFor(sp.host)) {
    const auto& vs = std::get<model::VirtualService>(vs_obj->spec);
    for (size_t i = 0; i < vs.http.size(); ++i) {
      AddHttpRoute(vs.http[i], i, *vs_obj, proxy, lookup, sp.host, sp.port, "", &vh);
    }
  }
  if (vh.routes_size() == 0) {
    route::Route* r = vh.add_routes();
    r->set_name("default");
    r->mutable_match()->set_prefix("/");
    r->mutable_route()->set_cluster(ClusterName(sp.port, "", sp.host));
    r->mutable_decorator()->set_operation(absl::StrCat(sp.host, ":", sp.port, "/*"));
  }
  return vh;
}

route::RouteConfiguration BuildRouteConfig(const Lookup& lookup, const ProxyClass& proxy,
                                           const registry::ServicePort& sp,
                                           const std::string& name) {
  route::RouteConfiguration rc;
  rc.set_name(name);
  *rc.add_virtual_hosts() = ServiceVirtualHost(lookup, proxy, sp, true);
  rc.mutable_virtual_hosts(0)->set_name(name);
  return rc;
}

// Traffic policy for one cluster: the DestinationRule's top level, overridden by the port-level
// settings for this port, overridden by the subset's policy (Istio's precedence).
model::TrafficPolicy EffectivePolicy(const model::DestinationRule* dr, const model::Subset* subset,
                                     uint32_t port) {
  model::TrafficPolicy out;
  auto overlay = [&](const model::TrafficPolicy& tp) {
    if (tp.load_balancer) out.load_balancer = tp.load_balancer;
    if (tp.connection_pool) out.connection_pool = tp.connection_pool;
    if (tp.outlier_detection) out.outlier_detection = tp.outlier_detection;
    if (tp.tls) out.tls = tp.tls;
    for (const auto& p : tp.port_level_settings) {
      if (p.port.number != port) continue;
      if (p.load_balancer) out.load_balancer = p.load_balancer;
      if (p.connection_pool) out.connection_pool = p.connection_pool;
      if (p.outlier_detection) out.outlier_detection = p.outlier_detection;
      if (p.tls) out.tls = p.tls;
    }
  };
  if (dr && dr->traffic_policy) overlay(*dr->traffic_policy);
  if (subset && subset->traffic_policy) overlay(*subset->traffic_policy);
  return out;
}

namespace tls = envoy::extensions::transport_sockets::tls::v3;

tls::SdsSecretConfig AdsSecret(const std::string& name) {
  tls::SdsSecretConfig sds;
  sds.set_name(name);
  sds.mutable_sds_config()->mutable_ads();
  sds.mutable_sds_config()->set_resource_api_version(core::V3);
  return sds;
}

// DestinationRule TLS settings as an UpstreamTlsContext. ISTIO_MUTUAL uses the mesh identity
// over SDS, with Istio's secret names: "default" (the workload certificate, which stays on the
// proxy) and "ROOTCA" (the mesh root, sent by meshpilot).
tls::UpstreamTlsContext UpstreamTls(const model::ClientTLSSettings& t,
                                    const std::string& cluster_name) {
  using M = model::ClientTLSSettings::Mode;
  tls::UpstreamTlsContext ctx;
  tls::CommonTlsContext* common = ctx.mutable_common_tls_context();
  ctx.set_sni(t.sni);
  tls::CertificateValidationContext validation;
  for (const std::string& san : t.subject_alt_names) {
    tls::SubjectAltNameMatcher* m = validation.add_match_typed_subject_alt_names();
    m->set_san_type(absl::StartsWith(san, "spiffe://") ? tls::SubjectAltNameMatcher::URI
                                                       : tls::SubjectAltNameMatcher::DNS);
    m->mutable_matcher()->set_exact(san);
  }
  if (t.mode == M::kIstioMutual) {
    *common->add_tls_certificate_sds_secret_configs() = AdsSecret("default");
    auto* combined = common->mutable_combined_validation_context();
    *combined->mutable_default_validation_context() = validation;
    *combined->mutable_validation_context_sds_secret_config() = AdsSecret("ROOTCA");
    if (t.sni.empty()) ctx.set_sni(cluster_name);
    return ctx;
  }
  if (!t.credential_name.empty()) {
    *common->add_tls_certificate_sds_secret_configs() = AdsSecret(t.credential_name);
    auto* combined = common->mutable_combined_validation_context();
    *combined->mutable_default_validation_context() = validation;
    *combined->mutable_validation_context_sds_secret_config() =
        AdsSecret(t.credential_name + "-cacert");
    return ctx;
  }
  if (t.mode == M::kMutual) {
    tls::TlsCertificate* cert = common->add_tls_certificates();
    cert->mutable_certificate_chain()->set_filename(t.client_certificate);
    cert->mutable_private_key()->set_filename(t.private_key);
  }
  if (!t.ca_certificates.empty()) validation.mutable_trusted_ca()->set_filename(t.ca_certificates);
  if (!t.insecure_skip_verify || !t.ca_certificates.empty())
    *common->mutable_validation_context() = validation;
  return ctx;
}

// The upstream HTTP protocol, as Istio decides it: HTTP/2 for ports whose protocol is HTTP2, GRPC
// or GRPC-WEB, and for HTTP ports whose DestinationRule says h2UpgradePolicy: UPGRADE; the
// client's own protocol under useClientProtocol. Sent as Envoy does, in the cluster's
// typed_extension_protocol_options, with the pool's idle timeout, requests per connection and
// concurrent streams.
void SetHttpProtocolOptions(const model::TrafficPolicy& tp, const std::string& port_protocol,
                            cluster::Cluster* c) {
  namespace uhttp = envoy::extensions::upstreams::http::v3;
  if (port_protocol == "TCP" || port_protocol == "TLS" || port_protocol == "MONGO" ||
      port_protocol == "REDIS" || port_protocol == "MYSQL") {
    return;
  }
  const model::ConnectionPoolSettings::Http* http =
      tp.connection_pool && tp.connection_pool->http ? &*tp.connection_pool->http : nullptr;
  const bool h2_port =
      port_protocol == "HTTP2" || port_protocol == "GRPC" || port_protocol == "GRPC-WEB";
  const bool upgrade = http && http->h2_upgrade_policy == "UPGRADE";
  const bool downstream = http && http->use_client_protocol;
  const bool common = http && (http->idle_timeout || http->max_requests_per_connection);
  if (!h2_port && !upgrade && !downstream && !common) return;
  uhttp::HttpProtocolOptions options;
  if (http && http->idle_timeout) {
    SetDuration(*http->idle_timeout,
                options.mutable_common_http_protocol_options()->mutable_idle_timeout());
  }
  if (http && http->max_requests_per_connection) {
    options.mutable_common_http_protocol_options()
        ->mutable_max_requests_per_connection()
        ->set_value(static_cast<uint32_t>(*http->max_requests_per_connection));
  }
  envoy::config::core::v3::Http2ProtocolOptions h2;
  if (http && http->max_concurrent_streams) {
    h2.mutable_max_concurrent_streams()->set_value(
        static_cast<uint32_t>(*http->max_concurrent_streams));
  }
  if (downstream) {
    auto* config = options.mutable_use_downstream_protocol_config();
    config->mutable_http_protocol_options();
    *config->mutable_http2_protocol_options() = h2;
  } else if (h2_port || upgrade) {
    *options.mutable_explicit_http_config()->mutable_http2_protocol_options() = h2;
  } else {
    options.mutable_explicit_http_config()->mutable_http_protocol_options();
  }
  (*c->mutable_typed_extension_protocol_options())
      ["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
          .PackFrom(options);
}

cluster::Cluster BuildCluster(const std::string& name, const model::TrafficPolicy& tp,
                              const std::string& port_protocol) {
  cluster::Cluster c;
  c.set_name(name);
  c.set_type(cluster::Cluster::EDS);
  c.mutable_eds_cluster_config()->mutable_eds_config()->mutable_ads();
  c.mutable_eds_cluster_config()->mutable_eds_config()->set_resource_api_version(core::V3);
  c.mutable_eds_cluster_config()->set_service_name(name);
  SetDuration(absl::Seconds(10), c.mutable_connect_timeout());
  c.set_lb_policy(cluster::Cluster::ROUND_ROBIN);
  if (tp.load_balancer) {
    using S = model::LoadBalancerSettings::Simple;
    if (tp.load_balancer->consistent_hash) {
      c.set_lb_policy(cluster::Cluster::RING_HASH);
      if (tp.load_balancer->consistent_hash->minimum_ring_size) {
        c.mutable_ring_hash_lb_config()->mutable_minimum_ring_size()->set_value(
            tp.load_balancer->consistent_hash->minimum_ring_size);
      }
    } else if (tp.load_balancer->simple == S::kLeastConn ||
               tp.load_balancer->simple == S::kLeastRequest) {
      c.set_lb_policy(cluster::Cluster::LEAST_REQUEST);
    } else if (tp.load_balancer->simple == S::kRandom) {
      c.set_lb_policy(cluster::Cluster::RANDOM);
    }
  }
  if (tp.connection_pool) {
    const auto& pool = *tp.connection_pool;
    auto* t = c.mutable_circuit_breakers()->add_thresholds();
    if (pool.tcp && pool.tcp->connect_timeout)
      SetDuration(*pool.tcp->connect_timeout, c.mutable_connect_timeout());
    if (pool.tcp && pool.tcp->max_connections)
      t->mutable_max_connections()->set_value(static_cast<uint32_t>(*pool.tcp->max_connections));
    if (pool.http && pool.http->http1_max_pending_requests) {
      t->mutable_max_pending_requests()->set_value(
          static_cast<uint32_t>(*pool.http->http1_max_pending_requests));
    }
    if (pool.http && pool.http->http2_max_requests)
      t->mutable_max_requests()->set_value(static_cast<uint32_t>(*pool.http->http2_max_requests));
    if (pool.http && pool.http->max_retries)
      t->mutable_max_retries()->set_value(static_cast<uint32_t>(*pool.http->max_retries));
  }
  SetHttpProtocolOptions(tp, port_protocol, &c);
  if (tp.tls && tp.tls->mode != model::ClientTLSSettings::Mode::kDisable) {
    c.mutable_transport_socket()->set_name("envoy.transport_sockets.tls");
    c.mutable_transport_socket()->mutable_typed_config()->PackFrom(UpstreamTls(*tp.tls, name));
  }
  if (tp.outlier_detection) {
    const auto& od = *tp.outlier_detection;
    auto* o = c.mutable_outlier_detection();
    if (od.consecutive_5xx_errors)
      o->mutable_consecutive_5xx()->set_value(*od.consecutive_5xx_errors);
    else
      o->mutable_enforcing_consecutive_5xx()->set_value(0);
    if (od.consecutive_gateway_errors) {
      o->mutable_consecutive_gateway_failure()->set_value(*od.consecutive_gateway_errors);
      o->mutable_enforcing_consecutive_gateway_failure()->set_value(100);
    }
    if (od.interval) SetDuration(*od.interval, o->mutable_interval());
    if (od.base_ejection_time) SetDuration(*od.base_ejection_time, o->mutable_base_ejection_time());
    if (od.max_ejection_percent)
      o->mutable_max_ejection_percent()->set_value(static_cast<uint32_t>(*od.max_ejection_percent));
    o->set_split_external_local_origin_errors(od.split_external_local_origin_errors);
    if (od.consecutive_local_origin_failures) {
      o->mutable_consecutive_local_origin_failure()->set_value(
          *od.consecutive_local_origin_failures);
    }
  }
  return c;
}

endpoint::ClusterLoadAssignment BuildLoadAssignment(const std::string& name,
                                                    const registry::ServicePort& sp,
                                                    const model::Labels& subset_labels) {
  endpoint::ClusterLoadAssignment cla;
  cla.set_cluster_name(name);
  // gRPC drops endpoints without a locality and a locality weight, so every group has both.
  std::map<std::string, endpoint::LocalityLbEndpoints*> by_locality;
  for (const registry::Endpoint& e : sp.endpoints) {
    if (!registry::LabelsMatch(subset_labels, e.labels)) continue;
    endpoint::LocalityLbEndpoints*& group = by_locality[e.locality];
    if (!group) {
      group = cla.add_endpoints();
      std::vector<std::string> parts = absl::StrSplit(e.locality, '/');
      if (parts.size() > 0) group->mutable_locality()->set_region(parts[0]);
      if (parts.size() > 1) group->mutable_locality()->set_zone(parts[1]);
      if (parts.size() > 2) group->mutable_locality()->set_sub_zone(parts[2]);
      group->mutable_load_balancing_weight()->set_value(1);
    }
    endpoint::LbEndpoint* lb = group->add_lb_endpoints();
    auto* addr = lb->mutable_endpoint()->mutable_address()->mutable_socket_address();
    addr->set_address(e.address);
    addr->set_port_value(e.port);
    // A registered workload that has not reported itself able to serve is sent, but marked:
    // proxies and gRPC's client skip it.
    lb->set_health_status(e.healthy ? core::HEALTHY : core::UNHEALTHY);
    lb->mutable_load_balancing_weight()->set_value(e.weight ? e.weight : 1);
    // Istio's endpoint metadata: the workload behind it, for the client side's telemetry.
    if (!e.workload.empty()) {
      (*(*lb->mutable_metadata()->mutable_filter_metadata())["istio"].mutable_fields())["workload"]
          .set_string_value(absl::StrCat(e.workload, ";", e.workload_ns, ";",
                                         istio_labels::CanonicalService(e.labels, e.workload), ";",
                                         istio_labels::CanonicalRevision(e.labels), ";",
                                         kClusterId));
    }
  }
  return cla;
}

hcm::HttpConnectionManager Manager(const std::string& stat_prefix) {
  hcm::HttpConnectionManager m;
  m.set_stat_prefix(stat_prefix);
  // The fault filter acts only on routes that carry a per-route fault config.
  hcm::HttpFilter* fault = m.add_http_filters();
  fault->set_name("envoy.filters.http.fault");
  fault->mutable_typed_config()->PackFrom(envoy::extensions::filters::http::fault::v3::HTTPFault());
  hcm::HttpFilter* router = m.add_http_filters();
  router->set_name("envoy.filters.http.router");
  router->mutable_typed_config()->PackFrom(envoy::extensions::filters::http::router::v3::Router());
  return m;
}

listener::Listener BuildApiListener(const std::string& name) {
  hcm::HttpConnectionManager manager = Manager(name);
  manager.mutable_rds()->set_route_config_name(name);
  manager.mutable_rds()->mutable_config_source()->mutable_ads();
  manager.mutable_rds()->mutable_config_source()->set_resource_api_version(core::V3);
  listener::Listener l;
  l.set_name(name);
  l.mutable_api_listener()->mutable_api_listener()->PackFrom(manager);
  return l;
}

}  // namespace internal

using namespace internal;

std::string ProxyClass::ToString() const {
  std::vector<std::string> labels_text;
  for (const auto& [k, v] : labels) labels_text.push_back(absl::StrCat(k, "=", v));
  const char* role_text = role == Role::kGateway   ? "gateway"
                          : role == Role::kSidecar ? "sidecar"
                                                   : "proxyless";
  return absl::StrCat(role_text, "/", ns, "/{", absl::StrJoin(labels_text, ","), "}");
}

ProxyClass ClassOf(const model::ConfigSnapshot& config, Role role, const std::string& ns,
                   const model::Labels& labels) {
  std::set<std::string> keys;
  config.ForEach(model::Kind::kVirtualService, [&](const model::Object& o) {
    const auto& vs = std::get<model::VirtualService>(o.spec);
    for (const auto& r : vs.http) {
      for (const auto& m : r.match) {
        for (const auto& [k, v] : m.source_labels) keys.insert(k);
      }
    }
    for (const auto& r : vs.tcp) {
      for (const auto& m : r.match) {
        for (const auto& [k, v] : m.source_labels) keys.insert(k);
      }
    }
  });
  // The selectors of the AuthorizationPolicies and RequestAuthentications that can apply to it
  // (its namespace's and the root namespace's).
  auto security_selector = [&](const model::Object& o, const std::optional<model::Labels>& s) {
    if (o.meta.namespace_ != ns && o.meta.namespace_ != "istio-system") return;
    if (s) {
      for (const auto& [k, v] : *s) keys.insert(k);
    }
  };
  config.ForEach(model::Kind::kAuthorizationPolicy, [&](const model::Object& o) {
    security_selector(o, std::get<model::AuthorizationPolicy>(o.spec).selector);
  });
  config.ForEach(model::Kind::kRequestAuthentication, [&](const model::Object& o) {
    security_selector(o, std::get<model::RequestAuthentication>(o.spec).selector);
  });
  config.ForEach(model::Kind::kTelemetry, [&](const model::Object& o) {
    security_selector(o, std::get<model::Telemetry>(o.spec).selector);
  });
  if (role == Role::kGateway) {
    config.ForEach(model::Kind::kGateway, [&](const model::Object& o) {
      for (const auto& [k, v] : std::get<model::Gateway>(o.spec).selector) keys.insert(k);
    });
  }
  if (role == Role::kSidecar) {
    config.ForEach(model::Kind::kService, [&](const model::Object& o) {
      if (o.meta.namespace_ != ns) return;
      for (const auto& [k, v] : std::get<model::Service>(o.spec).selector) keys.insert(k);
    });
    config.ForEach(model::Kind::kPeerAuthentication, [&](const model::Object& o) {
      if (o.meta.namespace_ != ns) return;
      const auto& selector = std::get<model::PeerAuthentication>(o.spec).selector;
      if (selector) {
        for (const auto& [k, v] : *selector) keys.insert(k);
      }
    });
  }
  ProxyClass c{role, ns, {}, {}};
  for (const auto& [k, v] : labels) {
    if (keys.count(k)) c.labels[k] = v;
  }
  return c;
}

const ResourceMap& Resources::Of(const std::string& type_url) const {
  static const ResourceMap kEmpty;
  auto it = by_type.find(type_url);
  return it == by_type.end() ? kEmpty : it->second;
}

namespace {

// Compiles the resources of one service port, appending (type, name, resource) to `out`.
void CompileServicePort(
    const Lookup& lookup, const ProxyClass& proxy, const registry::ServicePort& sp,
    const model::Object* dr_obj,
    std::vector<std::pair<
        const char*, std::pair<std::string, std::shared_ptr<const google::protobuf::Any>>>>* out) {
  const model::DestinationRule* dr =
      dr_obj ? &std::get<model::DestinationRule>(dr_obj->spec) : nullptr;
  auto add = [&](const char* type, std::string name,
                 std::shared_ptr<const google::protobuf::Any> any) {
    out->emplace_back(type, std::make_pair(std::move(name), std::move(any)));
  };
  std::string name = ClusterName(sp.port, "", sp.host);
  add(kClusterType, name,
      Pack(BuildCluster(name, EffectivePolicy(dr, nullptr, sp.port), sp.protocol)));
  add(kEndpointType, name, Pack(BuildLoadAssignment(name, sp, {})));
  if (dr) {
    for (const model::Subset& subset : dr->subsets) {
      std::string sub_name = ClusterName(sp.port, subset.name, sp.host);
      add(kClusterType, sub_name,
          Pack(BuildCluster(sub_name, EffectivePolicy(dr, &subset, sp.port), sp.protocol)));
      add(kEndpointType, sub_name, Pack(BuildLoadAssignment(sub_name, sp, subset.labels)));
    }
  }
  if (proxy.role == Role::kProxyless) {
    std::string listener_name = absl::StrCat(sp.host, ":", sp.port);
    add(kListenerType, listener_name, Pack(BuildApiListener(listener_name)));
    add(kRouteType, listener_name, Pack(BuildRouteConfig(lookup, proxy, sp, listener_name)));
  }
}

// Which service ports exist: routes depend on it (a destination without a port takes its
// service's only port), so a change here invalidates every cached route.
size_t PortsSignature(const registry::Registry& registry) {
  size_t h = 0;
  for (const registry::ServicePort& sp : registry.ports()) {
    h = h * 1000003 ^ (std::hash<std::string>()(sp.host) + sp.port);
  }
  return h;
}

}  // namespace

model::HTTPRetry IstioDefaultHttpRetry() {
  model::HTTPRetry retry;
  retry.attempts = 2;
  retry.retry_on = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes";
  return retry;
}

Resources Compile(const model::ConfigSnapshotPtr& config, const registry::Registry& registry,
                  const ProxyClass& proxy, CompileCache* cache, const MeshConfig& mesh) {
  Resources out;
  for (const char* type : {kListenerType, kRouteType, kClusterType, kEndpointType})
    out.by_type[type];
  Lookup lookup(*config, registry);
  lookup.mesh = mesh;
  size_t signature = PortsSignature(registry);
  bool reusable = cache && cache->held_;
  // Routes depend on which service ports exist; everything else of a service depends only on
  // its own inputs.
  bool routes_reusable = reusable && cache->ports_signature_ == signature;
  std::map<std::pair<std::string, uint32_t>, CompileCache::Entry> next;
  size_t reused = 0;
  for (const registry::ServicePort& sp : registry.ports()) {
    const model::Object* vs = lookup.VirtualServiceFor(sp.host);
    const model::Object* dr = lookup.DestinationRuleFor(sp.host);
    CompileCache::Entry entry;
    if (reusable) {
      auto it = cache->entries_.find({sp.host, sp.port});
      if (it != cache->entries_.end() && it->second.vs == vs && it->second.dr == dr &&
          it->second.endpoints == sp.endpoints) {
        entry = std::move(it->second);
        ++reused;
        if (!routes_reusable) {
          for (auto& [type, named] : entry.outputs) {
            if (std::string_view(type) != kRouteType) continue;
            named.second = Pack(BuildRouteConfig(lookup, proxy, sp, named.first));
          }
        }
      }
    }
    if (entry.outputs.empty()) {
      entry.vs = vs;
      entry.dr = dr;
      entry.endpoints = sp.endpoints;
      CompileServicePort(lookup, proxy, sp, dr, &entry.outputs);
    }
    for (const auto& [type, named] : entry.outputs) out.by_type[type][named.first] = named.second;
    if (cache) next.emplace(std::make_pair(sp.host, sp.port), std::move(entry));
  }
  if (proxy.role == Role::kGateway) CompileGatewayListeners(*config, lookup, proxy, &out);
  if (proxy.role == Role::kSidecar) CompileSidecarListeners(*config, registry, lookup, proxy, &out);
  if (cache) {
    cache->entries_ = std::move(next);
    cache->held_ = config;
    cache->ports_signature_ = signature;
    cache->reused_ = reused;
  }
  return out;
}

Resources Compile(const model::ConfigSnapshot& config, const registry::Registry& registry,
                  const ProxyClass& proxy, const MeshConfig& mesh) {
  // No cache: hand the compile a non-owning pointer; nothing outlives this call.
  return Compile(model::ConfigSnapshotPtr(model::ConfigSnapshotPtr(), &config), registry, proxy,
                 nullptr, mesh);
}

absl::Status CheckConsistency(const Resources& resources) {
  std::vector<std::string> missing;
  const ResourceMap& clusters = resources.Of(kClusterType);
  const ResourceMap& routes = resources.Of(kRouteType);
  const ResourceMap& endpoints = resources.Of(kEndpointType);
  auto check_tcp = [&](const std::string& where,
                       const envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy& tcp) {
    std::vector<std::string> named;
    if (!tcp.cluster().empty()) named.push_back(tcp.cluster());
    for (const auto& cw : tcp.weighted_clusters().clusters()) named.push_back(cw.name());
    for (const std::string& c : named) {
      if (!clusters.count(c)) missing.push_back(absl::StrCat(where, " names cluster ", c));
    }
  };
  for (const auto& [name, any] : resources.Of(kListenerType)) {
    listener::Listener l;
    any->UnpackTo(&l);
    std::vector<const google::protobuf::Any*> configs;
    if (l.has_api_listener()) configs.push_back(&l.api_listener().api_listener());
    for (const auto& chain : l.filter_chains()) {
      for (const auto& f : chain.filters()) configs.push_back(&f.typed_config());
    }
    for (const google::protobuf::Any* config : configs) {
      hcm::HttpConnectionManager manager;
      envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy tcp;
      if (config->UnpackTo(&manager) && manager.has_rds() &&
          !routes.count(manager.rds().route_config_name())) {
        missing.push_back(absl::StrCat("listener ", name, " names route config ",
                                       manager.rds().route_config_name()));
      }
      if (config->Is<decltype(tcp)>() && config->UnpackTo(&tcp))
        check_tcp(absl::StrCat("listener ", name), tcp);
      for (const auto& vh : manager.route_config().virtual_hosts()) {
        for (const auto& r : vh.routes()) {
          if (!r.route().cluster().empty() && !clusters.count(r.route().cluster())) {
            missing.push_back(
                absl::StrCat("listener ", name, " names cluster ", r.route().cluster()));
          }
        }
      }
    }
  }
  for (const auto& [name, any] : routes) {
    route::RouteConfiguration rc;
    any->UnpackTo(&rc);
    for (const auto& vh : rc.virtual_hosts()) {
      for (const auto& r : vh.routes()) {
        std::vector<std::string> named;
        if (!r.route().cluster().empty()) named.push_back(r.route().cluster());
        for (const auto& cw : r.route().weighted_clusters().clusters()) named.push_back(cw.name());
        for (const auto& m : r.route().request_mirror_policies()) named.push_back(m.cluster());
        for (const std::string& c : named) {
          if (!clusters.count(c))
            missing.push_back(absl::StrCat("route config ", name, " names cluster ", c));
        }
      }
    }
  }
  for (const auto& [name, any] : clusters) {
    cluster::Cluster c;
    any->UnpackTo(&c);
    if (c.type() == cluster::Cluster::EDS &&
        !endpoints.count(c.eds_cluster_config().service_name())) {
      missing.push_back(absl::StrCat("cluster ", name, " has no load assignment"));
    }
  }
  if (missing.empty()) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrJoin(missing, "; "));
}

std::string ToJson(const Resources& resources) {
  nlohmann::json out = nlohmann::json::object();
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  for (const auto& [type, map] : resources.by_type) {
    nlohmann::json& by_name = out[type];
    by_name = nlohmann::json::object();
    for (const auto& [name, any] : map) {
      std::string text;
      (void)google::protobuf::util::MessageToJsonString(*any, &text, options);
      by_name[name] = nlohmann::json::parse(text, nullptr, false);
    }
  }
  return out.dump(2);
}

}  // namespace mesh::compiler
