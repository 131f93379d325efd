#pragma once

#include <string>
#include <vector>

#include "controlplane/compiler/compiler.h"

// Inbound authentication, as Istio decides it: which mutual-TLS mode a workload's port requires,
// from PeerAuthentication (security.istio.io) and the older Policy (authentication.istio.io
// v1alpha1). Pure functions of the config, tested by table.
namespace mesh::compiler {

struct MtlsDecision {
  model::MtlsMode mode = model::MtlsMode::kPermissive;  // Istio's default
  const model::Object* source = nullptr;                // the resource that decided, if any
};

// The mode for traffic to `port` (a service port; `target_port` is the workload's port) of the
// workload in `ns` with `labels`, reached as Service `service` (short name). Most specific wins:
// a PeerAuthentication selecting the workload (its portLevelMtls first), a Policy naming the
// service (and port, if it lists ports), the namespace's PeerAuthentication without selector,
// the namespace's Policy without targets, the mesh-wide PeerAuthentication in istio-system, and
// otherwise PERMISSIVE. At one level a PeerAuthentication beats a Policy; UNSET defers to the
// next level; a Policy without an mTLS peer method means DISABLE.
MtlsDecision InboundMtls(const model::ConfigSnapshot& config, const std::string& ns,
                         const model::Labels& labels, const std::string& service, uint32_t port,
                         uint32_t target_port);

// One row of `meshctl tls-check`: how clients reach a host:port (CLIENT, from its
// DestinationRule) against what its workloads accept (SERVER), and whether they agree.
struct TlsCheckRow {
  std::string host_port, status, server, client, authn_policy, destination_rule;
};
// Rows for every service port whose host contains `filter` (all when empty), sorted. STATUS is
// CONFLICT when a client sends plaintext to a STRICT server or mTLS to a DISABLE one, else OK.
//
// With `proxy_clusters` (the CDS resources one connected proxy holds), the rows are the service
// ports that proxy has clusters for, and CLIENT is what those clusters do, not what the config
// says: mTLS (the mesh identity), TLS, HTTP, or HTTP/mTLS when its subsets differ.
std::vector<TlsCheckRow> TlsCheck(const model::ConfigSnapshot& config,
                                  const registry::Registry& registry, const std::string& filter,
                                  const ResourceMap* proxy_clusters = nullptr);

}  // namespace mesh::compiler
