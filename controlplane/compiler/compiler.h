#pragma once

#include <map>
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <vector>

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
inline constexpr char kSecretType[] =
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

enum class Role { kProxyless, kSidecar, kGateway };

// A sidecar's inbound port: mesh traffic for `service_port` arrives on `listen_port` and goes
// to the local app on `app_port` (0: the service's targetPort).
struct InboundPort {
  uint32_t service_port = 0, listen_port = 0, app_port = 0;
  bool operator<(const InboundPort& o) const {
    return std::tie(service_port, listen_port, app_port) <
           std::tie(o.service_port, o.listen_port, o.app_port);
  }
  bool operator==(const InboundPort&) const = default;
};

// Everything that decides a proxy's resources. Proxies of one class share one compiled result.
struct ProxyClass {
  Role role = Role::kProxyless;
  std::string ns;
  model::Labels labels;  // only the labels some sourceLabels or selector looks at (see ClassOf)
  std::vector<InboundPort> inbound;  // sidecars only; sorted
  bool operator<(const ProxyClass& o) const {
    return std::tie(role, ns, labels, inbound) < std::tie(o.role, o.ns, o.labels, o.inbound);
  }
  bool operator==(const ProxyClass& o) const = default;
  std::string ToString() const;
};

// Reduces a proxy's labels to those that decide its resources (VirtualService sourceLabels; for
// gateways, Gateway selectors; for sidecars, the selectors of Services in its namespace), so
// proxies that differ only in irrelevant labels share a class.
ProxyClass ClassOf(const model::ConfigSnapshot& config, Role role, const std::string& ns,
                   const model::Labels& labels);

// Per type URL, resource name -> the resource packed in an Any. Shared, never modified.
using ResourceMap = std::map<std::string, std::shared_ptr<const google::protobuf::Any>>;
struct Resources {
  std::map<std::string, ResourceMap> by_type;
  // The jwksUris whose keys these resources carry (for proxy-status, when a fetch fails).
  std::set<std::string> jwks_uris;
  const ResourceMap& Of(const std::string& type_url) const;
};

// Istio's default HTTP retry policy, for routes whose VirtualService sets none: 2 retries on
// connect-failure, refused-stream, unavailable, cancelled and retriable-status-codes (503).
model::HTTPRetry IstioDefaultHttpRetry();

// Mesh-wide settings (Istio's meshConfig) that the compiler applies where config is silent.
struct MeshConfig {
  // meshConfig.defaultHttpRetryPolicy: applied to every HTTP route without `retries`; none
  // (or attempts 0) turns retries off where a route is silent. A route's `attempts: 0` always
  // turns them off for that route.
  std::optional<model::HTTPRetry> default_http_retry = IstioDefaultHttpRetry();
  // The key sets meshpilot fetched for RequestAuthentication `jwksUri`s, by URI (the last good
  // one of each). A URI with none yet gets a key set no token verifies with, as Istio does, so
  // a token for that issuer is refused (401) rather than waved through.
  std::shared_ptr<const std::map<std::string, std::string>> fetched_jwks;
  // meshConfig.accessLogFile: where every proxy writes an access log line per request and TCP
  // connection ("" = none, Istio's default); Telemetry resources turn logs on and off per
  // workload, to this file (/dev/stdout when it is empty). accessLogEncoding JSON: Istio's JSON
  // format instead of its text format.
  std::string access_log_file;
  bool access_log_json = false;
  // Tracing: an OpenTelemetry collector over HTTP (meshConfig.extensionProviders), by name; the
  // built-in "meshpilot" is meshpilot's own collector. Headers go with every export.
  struct TraceProvider {
    std::string name, uri;
    std::vector<std::pair<std::string, std::string>> headers;
    bool operator==(const TraceProvider&) const = default;
  };
  std::vector<TraceProvider> trace_providers;
  // defaultProviders.tracing: the provider of workloads no Telemetry gives one ("": none, and no
  // tracing unless a Telemetry turns it on); meshConfig.defaultConfig.tracing.sampling, the
  // percentage of new traces sampled (Istio's default is 1).
  std::string default_trace_provider;
  double trace_sampling = 1.0;
};

Resources Compile(const model::ConfigSnapshot& config, const registry::Registry& registry,
                  const ProxyClass& proxy, const MeshConfig& mesh = MeshConfig());

// Remembers, per service port, what the last compile produced and from which inputs (the
// VirtualService and DestinationRule objects, the endpoints; for routes, the set of service
// ports too), so that
// a recompile after a small change rebuilds only the services it touches. Objects are compared
// by identity: the config index shares unchanged objects between snapshots, and the cache holds
// the snapshot it last compiled so those objects stay alive. One cache per proxy class; not
// thread-safe.
class CompileCache {
 public:
  size_t reused() const {
    return reused_;
  }  // service ports taken from the cache by the last compile

 private:
  friend Resources Compile(const model::ConfigSnapshotPtr&, const registry::Registry&,
                           const ProxyClass&, CompileCache*, const MeshConfig&);
  struct Entry {
    const model::Object* vs = nullptr;
    const model::Object* dr = nullptr;
    std::vector<registry::Endpoint> endpoints;
    std::vector<std::pair<const char*,
                          std::pair<std::string, std::shared_ptr<const google::protobuf::Any>>>>
        outputs;
  };
  model::ConfigSnapshotPtr held_;
  size_t ports_signature_ = 0;
  std::map<std::pair<std::string, uint32_t>, Entry> entries_;
  size_t reused_ = 0;
};

// The same result as Compile, reusing what `cache` holds for unchanged services.
Resources Compile(const model::ConfigSnapshotPtr& config, const registry::Registry& registry,
                  const ProxyClass& proxy, CompileCache* cache,
                  const MeshConfig& mesh = MeshConfig());

// Checks that every cluster a route names, and every route config a listener names, exists, and
// every EDS cluster has a load assignment. Returns FailedPrecondition listing what is missing.
absl::Status CheckConsistency(const Resources& resources);

// The resources as JSON, by type and name (table tests, /debug/config_dump).
std::string ToJson(const Resources& resources);

}  // namespace mesh::compiler
