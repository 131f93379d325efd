#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "controlplane/compiler/compiler.h"
#include "controlplane/registry/registry.h"
#include "envoy/config/core/v3/base.pb.h"

namespace mesh::xds {

// What a proxy's node says about itself (Istio's node metadata keys), read once and strictly.
struct NodeInfo {
  std::string id;
  compiler::Role role = compiler::Role::kProxyless;  // ROLE; absent: a proxyless gRPC client
  std::string ns = "default";                        // NAMESPACE
  std::string service_account = "default";           // SERVICE_ACCOUNT
  model::Labels labels;                              // LABELS
  std::string workload_name;                         // WORKLOAD_NAME (Istio's metrics)
  // METRICS_ADDRESS: where Prometheus scrapes the proxy's /stats/prometheus (host:port); empty
  // when absent or not a host:port.
  std::string metrics_address;
  // INBOUND_PORTS (service port = listen port) joined with APP_PORTS (listen port = app port).
  std::vector<compiler::InboundPort> inbound;
  std::vector<std::string> ips;  // INSTANCE_IPS
  // Why the node's registration fields (INSTANCE_IPS, INBOUND_PORTS, APP_PORTS) cannot make it
  // an endpoint; empty when they can. The stream is still served.
  std::string registration_error;

  // The workload this node registers as (the first instance IP; its inbound ports).
  registry::Workload ToWorkload() const;
};

// Reads `node`. InvalidArgument, naming the field, when what decides the proxy's config is
// malformed or oversized: an empty or over-long id, a namespace or service account that is not
// a DNS label, labels that are not strings or exceed Kubernetes' limits (64 labels, 63-character
// values). Registration fields are checked as strictly (every IP parses, every port is in
// 1-65535, at most 64 ports and 16 IPs), but a bad one only sets `registration_error`: such a
// node gets config and is never an endpoint.
absl::StatusOr<NodeInfo> ParseNode(const envoy::config::core::v3::Node& node);

}  // namespace mesh::xds
