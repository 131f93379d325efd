#pragma once

#include <map>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "controlplane/model/config_index.h"
#include "controlplane/registry/registry.h"
#include "google/protobuf/any.pb.h"

// The compiler: a pure, deterministic function from a config snapshot and a registry to the xDS
// resources of one proxy class. Names follow Istio: clusters
// "outbound|8080|v1|reviews.default.svc.cluster.local", proxyless listeners and route configs
// "reviews.default.svc.cluster.local:8080".
namespace mesh::compiler {

inline constexpr char kListenerType[] = "type.googleapis.com/envoy.config.listener.v3.Listener";
inline constexpr char kRouteType[] = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
inline constexpr char kClusterType[] = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
inline constexpr char kEndpointType[] =
    "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";

enum class Role { kProxyless, kSidecar, kGateway };

// Everything that decides a proxy's resources. Proxies of one class share one compiled result.
struct ProxyClass {
  Role role = Role::kProxyless;
  std::string ns;
  model::Labels labels;  // only the labels some sourceLabels or selector looks at (see ClassOf)
  bool operator<(const ProxyClass& o) const {
    return std::tie(role, ns, labels) < std::tie(o.role, o.ns, o.labels);
  }
  bool operator==(const ProxyClass& o) const = default;
  std::string ToString() const;
};

// Reduces a proxy's labels to those that some VirtualService sourceLabels mentions, so proxies
// that differ only in irrelevant labels share a class.
ProxyClass ClassOf(const model::ConfigSnapshot& config, Role role, const std::string& ns,
                   const model::Labels& labels);

// Per type URL, resource name -> the resource packed in an Any. Shared, never modified.
using ResourceMap = std::map<std::string, std::shared_ptr<const google::protobuf::Any>>;
struct Resources {
  std::map<std::string, ResourceMap> by_type;
  const ResourceMap& Of(const std::string& type_url) const;
};

Resources Compile(const model::ConfigSnapshot& config, const registry::Registry& registry,
                  const ProxyClass& proxy);

// Checks that every cluster a route names, and every route config a listener names, exists, and
// every EDS cluster has a load assignment. Returns FailedPrecondition listing what is missing.
absl::Status CheckConsistency(const Resources& resources);

// The resources as JSON, by type and name (table tests, /debug/config_dump).
std::string ToJson(const Resources& resources);

}  // namespace mesh::compiler
