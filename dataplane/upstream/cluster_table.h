#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "dataplane/config/proxy_config.h"
#include "dataplane/telemetry/peer.h"

// meshproxy's upstream clusters: an immutable, validated view of CDS and EDS (endpoints, load
// balancer, limits, outlier detection, TLS), rebuilt on every update, plus per-host runtime state
// (active requests, ejection) that survives updates for hosts that stay.
namespace mesh::dataplane {

// Runtime state of one upstream host, shared by every table that lists it and by all workers.
struct HostState {
  std::atomic<int64_t> active_requests{0};
  std::atomic<int64_t> ejected_until_ns{0};  // absl::ToUnixNanos; 0 when not ejected
  std::atomic<uint32_t> consecutive_5xx{0};
  std::atomic<uint32_t> consecutive_gateway_errors{0};
  std::atomic<uint32_t> ejections{0};

  bool Ejected(absl::Time now) const {
    return ejected_until_ns.load(std::memory_order_relaxed) > absl::ToUnixNanos(now);
  }
};

// Runtime state of one cluster, shared by all workers and kept across config updates: what its
// circuit breakers count.
struct ClusterState {
  std::atomic<int64_t> connections{0};  // upstream connections open, idle ones included
  std::atomic<int64_t> pending{0};      // requests waiting for a connection
  std::atomic<int64_t> requests{0};     // requests in flight
  std::atomic<int64_t> retries{0};      // retries in flight
  std::atomic<uint64_t> overflows{0};   // requests refused by a limit
};

struct Host {
  std::string address;
  uint32_t port = 0;
  uint32_t weight = 1;
  std::shared_ptr<HostState> state;
  // Its connections' key in the connection pool: the cluster's pool_prefix, then address:port.
  // Made once per update, so the request path builds no string to find a connection.
  std::string pool_key;
  // The workload behind it, from Istio's EDS metadata ("istio" filter, "workload"); may be null.
  telemetry::PeerInfoPtr peer;
};

struct Limits {
  uint32_t max_connections = 1024, max_pending_requests = 1024, max_requests = 1024,
           max_retries = 3;
  uint32_t max_requests_per_connection = 0;    // 0: unlimited
  std::optional<absl::Duration> idle_timeout;  // of an upstream connection; default: the pool's
};

struct OutlierSettings {
  bool enabled = false;
  uint32_t consecutive_5xx = 5, consecutive_gateway_errors = 0;  // 0: not counted
  absl::Duration interval = absl::Seconds(10), base_ejection_time = absl::Seconds(30);
  uint32_t max_ejection_percent = 10;
};

// How a cluster's connections are secured (an UpstreamTlsContext transport socket).
struct UpstreamTls {
  // ISTIO_MUTUAL: the workload certificate ("default") and the mesh root ("ROOTCA").
  bool istio_mutual = false;
  // SIMPLE or MUTUAL with files: the CA to verify the server with (none: the system's roots, or
  // no verification when `verify` is false), and a client certificate for MUTUAL.
  bool files = false;
  std::string ca_file, cert_file, key_file;
  bool verify = true;
  // A TLS setup this proxy cannot make (credentialName, Kubernetes secrets): requests get a 503
  // rather than travelling in plaintext.
  bool unsupported = false;
  std::string sni;
  std::vector<std::string> san_uris;  // accepted peer identities; any mesh identity when empty
};

struct Cluster {
  enum class Policy { kRoundRobin, kLeastRequest, kRandom, kRingHash };
  // What the cluster's hosts speak, from its HttpProtocolOptions: HTTP/1.1, HTTP/2, or whatever
  // the client spoke (useClientProtocol).
  enum class Protocol { kHttp11, kHttp2, kDownstream };
  std::string name;
  Protocol protocol = Protocol::kHttp11;
  uint32_t max_concurrent_streams = 0;  // HTTP/2, per connection; 0: the peer's setting
  Policy policy = Policy::kRoundRobin;
  absl::Duration connect_timeout = absl::Seconds(10);
  Limits limits;
  OutlierSettings outlier;
  std::optional<UpstreamTls> tls;
  // Prefixes the pool key of every connection to a host of this cluster: the TLS settings the
  // connection was made with. A change of mode, SNI, accepted identities or files gives new keys,
  // so connections made under the old settings are never handed out again.
  std::string pool_prefix;
  std::vector<Host> hosts;  // usable endpoints only (valid, and not reported unhealthy)
  // An inbound cluster's services (Istio's cluster metadata "istio"/"services"), by host: what
  // the destination side reports as destination_service.
  std::vector<std::string> service_hosts;
  // EDS endpoints dropped from this update: no IP address, a port outside 1-65535.
  uint32_t invalid_endpoints = 0;
  // EDS endpoints skipped because the control plane reported them UNHEALTHY, DRAINING or TIMEOUT.
  uint32_t unhealthy_endpoints = 0;
  // Ring hash: sorted (point, host index); built once per update.
  std::vector<std::pair<uint64_t, size_t>> ring;
  // Round-robin position, shared across updates of the same cluster.
  std::shared_ptr<std::atomic<uint64_t>> next;
  // Circuit-breaker counters, shared across updates of the same cluster.
  std::shared_ptr<ClusterState> state;

  // Chooses a host: skips ejected hosts unless all are ejected (Envoy's panic mode); nullptr if
  // the cluster has no host. `random` is a fresh random number; `hash` the request's hash key
  // (ring hash only; without one a random host is used).
  const Host* Pick(uint64_t random, std::optional<uint64_t> hash, absl::Time now) const;
};

// Whether an EDS endpoint can be dialled: an IPv4 or IPv6 address, a port in 1-65535.
bool UsableEndpoint(const std::string& address, uint32_t port);

class ClusterTable {
 public:
  // Builds from applied xDS config. Hosts (by address and port) and round-robin positions of
  // clusters that were in `previous` keep their runtime state. InvalidArgument names the
  // cluster when its config cannot be served.
  static absl::StatusOr<std::shared_ptr<const ClusterTable>> Build(const ProxyConfig& config,
                                                                   const ClusterTable* previous);
  const Cluster* Find(const std::string& name) const;
  const std::map<std::string, Cluster>& clusters() const { return clusters_; }

 private:
  std::map<std::string, Cluster> clusters_;
};
using ClusterTablePtr = std::shared_ptr<const ClusterTable>;

// A stable 64-bit hash for ring placement and request keys.
uint64_t HashKey(absl::string_view key);

}  // namespace mesh::dataplane
