#pragma once

#include <grpcpp/generic/async_generic_service.h>

#include <array>
#include <atomic>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/prometheus.h"
#include "controlplane/xds/snapshot_cache.h"
#include "nlohmann/json_fwd.hpp"

namespace mesh::xds {

class AdsStream;

struct AdsServerOptions {
  // Lets sidecars on plaintext streams (no proven identity) register as endpoints. Off by
  // default: then only a stream whose certificate matched its node's namespace and service
  // account registers.
  bool allow_plaintext_registration = false;
  // A stream whose proxy has not taken a response for this long while another waits is closed
  // (Istio's PILOT_XDS_SEND_TIMEOUT). Zero: never.
  absl::Duration send_timeout = absl::Seconds(30);
};

// envoy.service.discovery.v3.AggregatedDiscoveryService, state of the world, on gRPC's callback
// API (no thread per stream). It is served as a generic (byte-level) service so that a response
// is serialized once per snapshot and subscription and shared, without copying, by every stream
// of the class; each stream appends only its nonce. Each stream is classified by its node
// metadata (ROLE, NAMESPACE, LABELS, as Istio's), gets its class's shared snapshot, and follows the
// xDS protocol: per-type versions and nonces, ACK and NACK (a NACKed version is not sent again, and
// the proxy keeps its last good one), names subscribed before they exist answered once they appear,
// CDS before EDS and LDS before RDS, and only types whose requested resources changed are pushed.
class AdsServer : public grpc::CallbackGenericService {
 public:
  using Options = AdsServerOptions;
  explicit AdsServer(SnapshotCache* cache, Options options = {});
  ~AdsServer() override;

  // CallbackGenericService: StreamAggregatedResources; every other method is UNIMPLEMENTED.
  grpc::ServerGenericBidiReactor* CreateReactor(
      grpc::GenericCallbackServerContext* context) override;

  // Per connected proxy and type: sent version, acked version, last NACK (GET /debug/syncz).
  std::string SynczJson();
  // The resources proxy `id` gets, as JSON (GET /debug/config_dump?proxy=ID). NotFound if no
  // stream has that node id.
  absl::StatusOr<std::string> ConfigDump(const std::string& id);
  // The snapshot proxy `id` was last sent; NotFound if no stream has that node id.
  absl::StatusOr<SnapshotPtr> ProxySnapshot(const std::string& id);
  // Prometheus text: connected proxies, pushes, ACKs, NACKs, and pilot's names.
  std::string MetricsText();
  // Every connected proxy that told its metrics address (node metadata METRICS_ADDRESS), as
  // Prometheus http_sd target groups: the address, __metrics_path__ /stats/prometheus, and the
  // labels namespace, proxy (node id), app, version and role.
  nlohmann::json PrometheusTargets();

 private:
  friend class AdsStream;
  void Register(AdsStream* stream);
  void Unregister(AdsStream* stream);

  SnapshotCache* cache_;
  const Options options_;
  std::mutex mu_;
  std::set<AdsStream*> streams_;
  std::atomic<int64_t> pushes_{0}, acks_{0}, nacks_{0}, refused_{0}, unregistered_{0}, stalled_{0};
  void ObserveCommitToAck(double seconds);
  // A response of `type` taken by the proxy `seconds` after it was queued.
  void ObservePush(const std::string& type, double seconds);
  void CountNack(const std::string& type);
  std::mutex metrics_mu_;
  // Seconds from a store commit to a proxy's ACK of the version compiled from it, in meshpilot's
  // buckets and in Istio's (pilot_proxy_convergence_time).
  prometheus::Histogram commit_to_ack_ ABSL_GUARDED_BY(metrics_mu_){
      {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}};
  prometheus::Histogram convergence_ ABSL_GUARDED_BY(metrics_mu_){{.1, .5, 1, 3, 5, 10, 20, 30}};
  // Per xDS type ("cds", "eds", ...): pushes, their time on the wire (pilot_xds_push_time), and
  // NACKs (pilot_total_xds_rejects).
  struct TypeMetrics {
    int64_t pushes = 0, rejects = 0;
    prometheus::Histogram push_time{{.01, .1, 1, 3, 5, 10, 20, 30}};
  };
  std::map<std::string, TypeMetrics> by_type_ ABSL_GUARDED_BY(metrics_mu_);
};

}  // namespace mesh::xds
