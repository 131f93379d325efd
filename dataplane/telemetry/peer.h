#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "dataplane/telemetry/tracing.h"

// Who is at either end of a request, as Istio's telemetry names workloads: the proxy's own
// workload, and its peer's, learnt from the peer-metadata headers sidecars exchange
// (x-envoy-peer-metadata: a base64 protobuf Struct, as Istio's metadata exchange writes it) or
// from the endpoint metadata meshpilot sends in EDS. Pure functions, unit-tested.
namespace mesh::dataplane::telemetry {

struct PeerInfo {
  std::string workload, ns, app, version, canonical_service, canonical_revision, cluster;
  std::string service_account;  // may be empty
  bool operator==(const PeerInfo&) const = default;
};
using PeerInfoPtr = std::shared_ptr<const PeerInfo>;

// A workload from its labels, as Istio derives the canonical names: the service from
// service.istio.io/canonical-name, app.kubernetes.io/name, app, else the workload name; the
// revision from service.istio.io/canonical-revision, app.kubernetes.io/version, version, else
// "latest".
PeerInfo PeerFromLabels(const std::string& workload, const std::string& ns,
                        const std::map<std::string, std::string>& labels,
                        const std::string& cluster, const std::string& service_account = "");

// The proxy's own workload, and the values of the headers it sends about itself.
struct LocalWorkload {
  PeerInfo peer;
  std::string principal;  // its SPIFFE ID when it has a mesh certificate
  // A sidecar reports its inbound traffic as `destination`, everything else as `source`; a
  // gateway reports all of its traffic as `source`.
  bool sidecar = false;
  std::string metadata, metadata_id;
  // Whether requests and connections are recorded in Istio's metrics (--istio-metrics).
  bool metrics = true;
  // What this proxy's spans say about it, and where sampled spans go (none: not exported).
  SpanIdentity span_identity;
  SpanSink* spans = nullptr;
};
using LocalWorkloadPtr = std::shared_ptr<const LocalWorkload>;

inline constexpr char kPeerMetadataHeader[] = "x-envoy-peer-metadata";
inline constexpr char kPeerMetadataIdHeader[] = "x-envoy-peer-metadata-id";
// Larger header values are ignored unread.
inline constexpr size_t kMaxPeerMetadataBytes = 8192;

// The x-envoy-peer-metadata value for `peer`: base64 of a google.protobuf.Struct with NAME,
// NAMESPACE, WORKLOAD_NAME, CLUSTER_ID, SERVICE_ACCOUNT and LABELS (app, version and the
// canonical names), the fields Istio's proxies write and read.
std::string EncodePeerMetadata(const PeerInfo& peer, const std::string& node_name);
// The x-envoy-peer-metadata-id value: "sidecar~IP~NAME.NAMESPACE~NAMESPACE.svc.cluster.local".
std::string PeerMetadataId(const std::string& role, const std::string& ip,
                           const std::string& node_name, const std::string& ns);
// Reads a header value; nullopt when it is too large, not base64, not a Struct, or names no
// workload.
std::optional<PeerInfo> DecodePeerMetadata(absl::string_view value);

// The service an outbound cluster leads to: HOST of "outbound|PORT|SUBSET|HOST" (a view into
// `cluster`); empty for any other cluster.
absl::string_view OutboundClusterService(absl::string_view cluster);

// Istio's EDS endpoint metadata, filter "istio", field "workload":
// "NAME;NAMESPACE;CANONICAL_SERVICE;CANONICAL_REVISION;CLUSTER".
std::string EndpointWorkloadField(const PeerInfo& peer);
std::optional<PeerInfo> PeerFromEndpointWorkload(absl::string_view field);

// Decoded header values by value, so a worker decodes each peer's header once. Holds at most
// `capacity` entries: when full it starts over (counted in `resets`). One per worker.
class PeerCache {
 public:
  explicit PeerCache(size_t capacity = 256) : capacity_(capacity) {}
  // nullptr when the value is invalid.
  PeerInfoPtr Decode(absl::string_view value);
  uint64_t resets() const { return resets_; }
  uint64_t invalid() const { return invalid_; }

 private:
  size_t capacity_;
  std::map<std::string, PeerInfoPtr, std::less<>> entries_;
  uint64_t resets_ = 0, invalid_ = 0;
};

}  // namespace mesh::dataplane::telemetry
