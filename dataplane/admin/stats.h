#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <tuple>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "dataplane/telemetry/istio_metrics.h"

// meshproxy's request statistics. Each worker owns one WorkerStats and is its only writer, so the
// request path counts without locks or atomics; the admin endpoint merges copies taken on each
// worker's own thread.
namespace mesh::dataplane {

// A latency histogram with fixed buckets, in milliseconds (Prometheus `le` bounds).
struct Histogram {
  static constexpr std::array<double, 14> kBoundsMs = {0.5, 1,   2.5, 5,    10,   25,   50,
                                                       100, 250, 500, 1000, 2500, 5000, 10000};
  std::array<uint64_t, kBoundsMs.size() + 1> buckets{};  // the last one is +Inf
  uint64_t count = 0;
  double sum_ms = 0;

  void Record(absl::Duration d);
  void Merge(const Histogram& other);
};

struct RequestKey {
  std::string listener, route, cluster;
  int response_class = 0;  // 2 for 2xx ... 5 for 5xx
};

// Orders keys, and finds one by views of its parts, so counting a request copies no string.
struct RequestKeyLess {
  using is_transparent = void;
  using View = std::tuple<absl::string_view, absl::string_view, absl::string_view, int>;
  static View Of(const RequestKey& k) { return {k.listener, k.route, k.cluster, k.response_class}; }
  static const View& Of(const View& v) { return v; }
  template <class A, class B>
  bool operator()(const A& a, const B& b) const {
    return Of(a) < Of(b);
  }
};

struct WorkerStats {
  std::map<RequestKey, uint64_t, RequestKeyLess> requests;
  std::map<std::string, Histogram> upstream_latency;                             // by cluster
  std::map<std::string, uint64_t> upstream_connect_failures, upstream_timeouts;  // by cluster
  std::map<std::string, uint64_t> no_healthy_upstream;                           // by cluster
  std::map<std::string, uint64_t> overflows;  // by cluster: refused by a circuit breaker
  int64_t downstream_active = 0;              // connections now open on this worker (HTTP and TCP)
  uint64_t downstream_total = 0;
  uint64_t downstream_rejected = 0;  // malformed or oversized requests, header timeouts
  uint64_t tcp_bytes_sent = 0, tcp_bytes_received = 0;
  // Refused by an RBAC filter (AuthorizationPolicy): requests (403) and TCP connections (closed).
  uint64_t rbac_denied = 0, rbac_denied_connections = 0;
  uint64_t jwt_refused = 0;       // requests with a token that did not verify (401)
  telemetry::IstioMetrics istio;  // Istio's standard metrics

  void CountRequest(const std::string& listener, const std::string& route,
                    const std::string& cluster, int status);
  void Merge(const WorkerStats& other);
};

// What the admin endpoint adds from outside the workers.
struct ProxyCounters {
  int64_t xds_accepted = 0, xds_rejected = 0;
  bool xds_connected = false;
  int64_t listeners_active = 0, listeners_draining = 0;
};

// Prometheus text exposition of the merged stats.
std::string RenderPrometheus(const WorkerStats& stats, const ProxyCounters& proxy);

class ClusterTable;
// Per-cluster state shared by the workers: outlier ejections (total, and hosts ejected now) and
// what the circuit breakers count (open connections, pending requests, requests in flight).
std::string RenderClusterGauges(const ClusterTable& clusters, absl::Time now);

}  // namespace mesh::dataplane
