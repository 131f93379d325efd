#pragma once

// Building blocks shared by the compiler's files (compiler.cc: per-service resources and the
// proxyless listeners; listeners.cc: gateway and sidecar listeners). Internal to the compiler.
#include <memory>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "absl/strings/match.h"
#include "absl/time/time.h"
#include "controlplane/compiler/compiler.h"
#include "controlplane/model/names.h"
#include "envoy/config/cluster/v3/cluster.pb.h"
#include "envoy/config/route/v3/route.pb.h"
#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb.h"
#include "envoy/extensions/transport_sockets/tls/v3/tls.pb.h"
#include "google/protobuf/duration.pb.h"

namespace mesh::compiler::internal {

// "outbound|8080|v1|reviews.default.svc.cluster.local" (Istio's naming).
std::string ClusterName(uint32_t port, const std::string& subset, const std::string& host);
void SetDuration(absl::Duration d, google::protobuf::Duration* out);
// Whether a VirtualService bound to these gateways applies to sidecars and proxyless clients.
bool VisibleToMesh(const std::vector<std::string>& gateways);
// Whether gateway references ("name" relative to `ns`, or "ns/name", or "mesh") include
// `gateway` ("ns/name"); an empty `gateway` asks about the mesh.
bool AppliesTo(const std::vector<std::string>& refs, const std::string& ns,
               const std::string& gateway);

template <typename T>
std::shared_ptr<const google::protobuf::Any> Pack(const T& message) {
  auto any = std::make_shared<google::protobuf::Any>();
  any->PackFrom(message);
  return any;
}

// Lookups the compiler makes per service, prepared once per Compile so that compiling N services
// stays O(N log N).
class Lookup {
 public:
  MeshConfig mesh;  // the mesh-wide settings of this compile

  Lookup(const model::ConfigSnapshot& config, const registry::Registry& registry) {
    std::vector<const model::Object*> vss = config.Sorted(model::Kind::kVirtualService);
    for (size_t i = 0; i < vss.size(); ++i) {
      const auto& vs = std::get<model::VirtualService>(vss[i]->spec);
      if (!VisibleToMesh(vs.gateways)) continue;
      for (const std::string& h : vs.hosts)
        Add(model::ResolveHost(h, vss[i]->meta.namespace_), i, vss[i], &vs_);
    }
    std::vector<const model::Object*> drs = config.Sorted(model::Kind::kDestinationRule);
    for (size_t i = 0; i < drs.size(); ++i) {
      const auto& dr = std::get<model::DestinationRule>(drs[i]->spec);
      Add(model::ResolveHost(dr.host, drs[i]->meta.namespace_), i, drs[i], &dr_);
    }
    for (const registry::ServicePort& sp : registry.ports()) ports_[sp.host].push_back(sp.port);
  }

  // The VirtualService that routes `host` for the mesh: the first, by namespace and name, whose
  // hosts cover it (Istio resolves conflicts by age; names keep this deterministic).
  const model::Object* VirtualServiceFor(const std::string& host) const {
    return First(vs_, host, false);
  }
  // The DestinationRule for `host`: an exact host first, then the first wildcard that covers it.
  const model::Object* DestinationRuleFor(const std::string& host) const {
    return First(dr_, host, true);
  }
  const std::vector<uint32_t>& PortsOf(const std::string& host) const {
    static const std::vector<uint32_t> kNone;
    auto it = ports_.find(host);
    return it == ports_.end() ? kNone : it->second;
  }

 private:
  struct ByHost {
    std::unordered_map<std::string, std::pair<size_t, const model::Object*>> exact;  // first only
    std::vector<std::tuple<std::string, size_t, const model::Object*>> wildcard;
  };
  static void Add(const std::string& host, size_t order, const model::Object* o, ByHost* by) {
    if (absl::StartsWith(host, "*"))
      by->wildcard.emplace_back(host, order, o);
    else
      by->exact.emplace(host, std::make_pair(order, o));  // keeps the first
  }
  static const model::Object* First(const ByHost& by, const std::string& host, bool exact_wins) {
    const model::Object* best = nullptr;
    size_t best_order = SIZE_MAX;
    if (auto it = by.exact.find(host); it != by.exact.end()) {
      if (exact_wins) return it->second.second;
      std::tie(best_order, best) = it->second;
    }
    for (const auto& [pattern, order, o] : by.wildcard) {
      if (order < best_order && model::HostMatches(pattern, host)) {
        best_order = order;
        best = o;
      }
    }
    return best;
  }
  ByHost vs_, dr_;
  std::unordered_map<std::string, std::vector<uint32_t>> ports_;
};

// The port a destination reaches: the one it names, the only one its service has, or the port
// being routed when the destination is the routed service itself.
uint32_t DestinationPort(const Lookup& lookup, const std::string& host, const model::Destination& d,
                         uint32_t routed_port, const std::string& routed_host);

// Appends the routes of one VirtualService HTTP route (one per applicable match) to `vh`.
// `gateway` is "ns/name" when compiling for a gateway, empty for the mesh.
void AddHttpRoute(const model::HTTPRoute& r, size_t index, const model::Object& vs_obj,
                  const ProxyClass& proxy, const Lookup& lookup, const std::string& host,
                  uint32_t port, const std::string& gateway,
                  envoy::config::route::v3::VirtualHost* vh);

// The virtual host of one service port: its names (with the port, and without when
// `bare_hosts`), and the routes of the mesh VirtualService for it, or one default route.
envoy::config::route::v3::VirtualHost ServiceVirtualHost(const Lookup& lookup,
                                                         const ProxyClass& proxy,
                                                         const registry::ServicePort& sp,
                                                         bool bare_hosts);

// An HTTP connection manager with the fault and router filters, routes to be set by the caller.
envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager Manager(
    const std::string& stat_prefix);

// An SDS secret reference fetched over the ADS stream ("default", "ROOTCA", ...).
envoy::extensions::transport_sockets::tls::v3::SdsSecretConfig AdsSecret(const std::string& name);

// The cluster's upstream HTTP protocol and pool options (typed_extension_protocol_options), as
// Istio sets them for a port of `port_protocol` under `tp`.
void SetHttpProtocolOptions(const model::TrafficPolicy& tp, const std::string& port_protocol,
                            envoy::config::cluster::v3::Cluster* c);

// The traffic policy for one cluster: the DestinationRule's top level, overridden by the
// port-level settings for `port`, overridden by the subset's policy (Istio's precedence).
model::TrafficPolicy EffectivePolicy(const model::DestinationRule* dr, const model::Subset* subset,
                                     uint32_t port);

// Gateway and sidecar listeners with their route configs (listeners.cc).
void CompileGatewayListeners(const model::ConfigSnapshot& config, const Lookup& lookup,
                             const ProxyClass& proxy, Resources* out);
void CompileSidecarListeners(const model::ConfigSnapshot& config,
                             const registry::Registry& registry, const Lookup& lookup,
                             const ProxyClass& proxy, Resources* out);

}  // namespace mesh::compiler::internal
