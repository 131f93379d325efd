#pragma once

#include <grpcpp/generic/async_generic_service.h>

#include <array>
#include <atomic>
#include <iterator>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "controlplane/xds/snapshot_cache.h"

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
  // Prometheus text: connected proxies, pushes, ACKs, NACKs.
  std::string MetricsText();

 private:
  friend class AdsStream;
  void Register(AdsStream* stream);
  void Unregister(AdsStream* stream);

  SnapshotCache* cache_;
  const Options options_;
  std::mutex mu_;
  std::set<AdsStream*> streams_;
  std::atomic<int64_t> pushes_{0}, acks_{0}, nacks_{0}, refused_{0}, unregistered_{0}, stalled_{0};
  // Seconds from a store commit to a proxy's ACK of the version compiled from it, per type.
  static constexpr double kBuckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  void ObserveCommitToAck(double seconds);
  std::mutex histogram_mu_;
  std::array<int64_t, std::size(kBuckets) + 1> histogram_{};
  double histogram_sum_ = 0;
};

}  // namespace mesh::xds
