#include "controlplane/compiler/authn.h"

#include <algorithm>
#include <map>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "controlplane/compiler/builders.h"
#include "envoy/config/cluster/v3/cluster.pb.h"
#include "envoy/extensions/transport_sockets/tls/v3/tls.pb.h"

namespace mesh::compiler {
namespace {

using model::MtlsMode;

using internal::EffectivePolicy;
using internal::Lookup;

constexpr char kRootNamespace[] = "istio-system";

// What a proxy's outbound clusters ("outbound|PORT|SUBSET|HOST") send, by HOST:PORT.
std::map<std::string, std::string> ClientTlsOf(const ResourceMap& clusters) {
  std::map<std::string, std::set<std::string>> modes;
  for (const auto& [name, any] : clusters) {
    std::vector<std::string> parts = absl::StrSplit(name, '|');
    if (parts.size() != 4 || parts[0] != "outbound") continue;
    envoy::config::cluster::v3::Cluster cluster;
    if (!any->UnpackTo(&cluster)) continue;
    std::string mode = "HTTP";
    envoy::extensions::transport_sockets::tls::v3::UpstreamTlsContext tls;
    if (cluster.has_transport_socket() &&
        cluster.transport_socket().typed_config().UnpackTo(&tls)) {
      mode = "TLS";
      for (const auto& sds : tls.common_tls_context().tls_certificate_sds_secret_configs()) {
        if (sds.name() == "default") mode = "mTLS";  // the workload's own mesh certificate
      }
    }
    modes[absl::StrCat(parts[3], ":", parts[1])].insert(mode);
  }
  std::map<std::string, std::string> out;
  for (const auto& [host_port, set] : modes) {
    out[host_port] = set.size() == 1 ? *set.begin() : "HTTP/mTLS";
  }
  return out;
}

// A Policy's mode: its first mTLS peer method's, DISABLE without one.
MtlsMode PolicyMode(const model::Policy& p) {
  return p.peer_mtls == MtlsMode::kUnset ? MtlsMode::kDisable : p.peer_mtls;
}

bool PolicyNames(const model::Policy& p, const std::string& service, uint32_t port) {
  for (const model::Policy::Target& t : p.targets) {
    if (t.name != service) continue;
    if (t.ports.empty() && t.port_names.empty()) return true;
    for (const model::PortSelector& ps : t.ports) {
      if (ps.number == port) return true;
    }
  }
  return false;
}

std::string NameOf(const model::Object* o) {
  return o ? absl::StrCat(o->meta.name, "/", o->meta.namespace_) : "-";
}

}  // namespace

MtlsDecision InboundMtls(const model::ConfigSnapshot& config, const std::string& ns,
                         const model::Labels& labels, const std::string& service, uint32_t port,
                         uint32_t target_port) {
  // Candidates by level; the first decided level wins. Sorted() keeps ties deterministic.
  const model::Object *pa_workload = nullptr, *pa_namespace = nullptr, *pa_mesh = nullptr;
  const model::Object *policy_service = nullptr, *policy_namespace = nullptr;
  for (const model::Object* o : config.Sorted(model::Kind::kPeerAuthentication)) {
    const auto& pa = std::get<model::PeerAuthentication>(o->spec);
    if (o->meta.namespace_ == ns && pa.selector && !pa.selector->empty()) {
      if (!pa_workload && registry::LabelsMatch(*pa.selector, labels)) pa_workload = o;
    } else if (o->meta.namespace_ == ns) {
      if (!pa_namespace) pa_namespace = o;
    } else if (o->meta.namespace_ == kRootNamespace && (!pa.selector || pa.selector->empty())) {
      if (!pa_mesh) pa_mesh = o;
    }
  }
  for (const model::Object* o : config.Sorted(model::Kind::kPolicy)) {
    if (o->meta.namespace_ != ns) continue;
    const auto& p = std::get<model::Policy>(o->spec);
    if (p.targets.empty()) {
      if (!policy_namespace) policy_namespace = o;
    } else if (!policy_service && PolicyNames(p, service, port)) {
      policy_service = o;
    }
  }
  auto pa_mode = [&](const model::Object* o) {
    const auto& pa = std::get<model::PeerAuthentication>(o->spec);
    auto it = pa.port_level_mtls.find(target_port);
    if (it != pa.port_level_mtls.end() && it->second != MtlsMode::kUnset) return it->second;
    return pa.mtls;
  };
  if (pa_workload && pa_mode(pa_workload) != MtlsMode::kUnset)
    return {pa_mode(pa_workload), pa_workload};
  if (policy_service)
    return {PolicyMode(std::get<model::Policy>(policy_service->spec)), policy_service};
  if (pa_namespace && pa_mode(pa_namespace) != MtlsMode::kUnset)
    return {pa_mode(pa_namespace), pa_namespace};
  if (policy_namespace)
    return {PolicyMode(std::get<model::Policy>(policy_namespace->spec)), policy_namespace};
  if (pa_mesh && pa_mode(pa_mesh) != MtlsMode::kUnset) return {pa_mode(pa_mesh), pa_mesh};
  return {};
}

std::vector<TlsCheckRow> TlsCheck(const model::ConfigSnapshot& config,
                                  const registry::Registry& registry, const std::string& filter,
                                  const ResourceMap* proxy_clusters) {
  Lookup lookup(config, registry);
  std::map<std::string, std::string> held;
  if (proxy_clusters) held = ClientTlsOf(*proxy_clusters);
  std::vector<TlsCheckRow> rows;
  for (const registry::ServicePort& sp : registry.ports()) {
    if (!filter.empty() && !absl::StrContains(sp.host, filter)) continue;
    const std::string host_port = absl::StrCat(sp.host, ":", sp.port);
    auto proxy_view = held.find(host_port);
    if (proxy_clusters && proxy_view == held.end()) continue;
    // The Service behind the host, for its selector and target port.
    std::string service = sp.host.substr(0, sp.host.find('.'));
    model::Labels selector;
    uint32_t target_port = sp.port;
    if (const model::Object* svc = config.Find(model::Kind::kService, sp.ns, service)) {
      const auto& s = std::get<model::Service>(svc->spec);
      selector = s.selector;
      for (const auto& p : s.ports) {
        if (p.port == sp.port && p.target_port) target_port = p.target_port;
      }
    }
    MtlsDecision server = InboundMtls(config, sp.ns, selector, service, sp.port, target_port);
    std::string client = "HTTP";
    const model::Object* dr_obj = lookup.DestinationRuleFor(sp.host);
    if (dr_obj) {
      model::TrafficPolicy tp =
          EffectivePolicy(&std::get<model::DestinationRule>(dr_obj->spec), nullptr, sp.port);
      using Mode = model::ClientTLSSettings::Mode;
      if (tp.tls && tp.tls->mode == Mode::kIstioMutual) client = "mTLS";
      if (tp.tls && (tp.tls->mode == Mode::kSimple || tp.tls->mode == Mode::kMutual))
        client = "TLS";
    }
    if (proxy_clusters) client = proxy_view->second;
    std::string server_text = server.mode == MtlsMode::kStrict    ? "mTLS"
                              : server.mode == MtlsMode::kDisable ? "HTTP"
                                                                  : "HTTP/mTLS";
    bool conflict = (server.mode == MtlsMode::kStrict && client != "mTLS") ||
                    (server.mode == MtlsMode::kDisable && client == "mTLS");
    rows.push_back({host_port, conflict ? "CONFLICT" : "OK", server_text, client,
                    NameOf(server.source), NameOf(dr_obj)});
  }
  std::sort(rows.begin(), rows.end(),
            [](const TlsCheckRow& a, const TlsCheckRow& b) { return a.host_port < b.host_port; });
  return rows;
}

}  // namespace mesh::compiler
