#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "dataplane/stream/header_map.h"
#include "dataplane/telemetry/istio_metrics.h"
#include "dataplane/telemetry/peer.h"

// What Istio's stats plugin and metadata exchange do for one HTTP request, fed by the stream
// that carries it: the peer's identity read from (and the peer-metadata headers removed from)
// what crosses the proxy, this proxy's own metadata added, bytes and gRPC messages counted, the
// response code, gRPC status and response flags kept, and one record made at the end. No I/O and
// no clock of its own: unit-tested by feeding heads and bodies.
namespace mesh::dataplane::telemetry {

// A version 4 UUID from two random numbers ("8-4-4-4-12" hex), as x-request-id carries it.
std::string RandomUuid(uint64_t high, uint64_t low);

// Counts the messages of a gRPC body (a 5-byte prefix, then the message) as its bytes arrive.
class GrpcMessageCounter {
 public:
  void Feed(absl::string_view data);
  uint64_t messages() const { return messages_; }

 private:
  unsigned char prefix_[5] = {};
  size_t prefix_got_ = 0;
  uint64_t remaining_ = 0;  // of the current message's payload
  uint64_t messages_ = 0;
};

class RequestTelemetry {
 public:
  // `inbound`: the request arrived on a sidecar's inbound listener (reported as `destination`).
  RequestTelemetry(const LocalWorkload& local, PeerCache& peers, bool inbound, absl::Time start);

  // The client's request head. Inbound, the caller's metadata headers are read; in any case they
  // are removed (an app must not pass itself off as another workload).
  void OnRequestHead(HeaderMap& headers, absl::string_view authority, bool grpc);
  void OnRequestBody(absl::string_view data);
  // The head as it goes upstream to `cluster` (outbound: this proxy's metadata is added;
  // `cluster` must outlive this object). An
  // inbound cluster's `service_hosts` (its Istio metadata) name the destination service: the one
  // the request's host names, else the first.
  void OnUpstreamHead(HeaderMap& headers, absl::string_view cluster,
                      const std::vector<std::string>& service_hosts = {});
  // The upstream's response head. Outbound, the destination's metadata headers are read and
  // removed, else `endpoint` (the EDS metadata of the host that answered) names it; inbound, this
  // proxy's own are added when the caller sent its own.
  void OnResponseHead(int status, HeaderMap& headers, const PeerInfo* endpoint);
  void OnResponseBody(absl::string_view data);
  void OnResponseTrailers(const HeaderMap& trailers);
  // A reply the proxy made itself.
  void OnLocalReply(int status, const std::string* grpc_status, size_t body_bytes,
                    absl::string_view flags);
  // Adds an Envoy response flag ("DC", "DI", ...) unless it is there already.
  void AddFlag(absl::string_view flag);

  // The record for Istio's metrics, made when the stream ends. `peer_principal` is the client's
  // SPIFFE ID proven by mutual TLS (empty when none).
  void Record(absl::Time end, absl::string_view peer_principal, IstioMetrics* metrics) const;

  const std::string& flags() const { return flags_; }
  // Envoy's %RESPONSE_CODE_DETAILS%: via_upstream, route_not_found, fault_filter_abort, ...
  const std::string& details() const { return details_; }
  int response_code() const { return response_code_; }
  absl::Time start() const { return start_; }
  uint64_t request_bytes() const { return request_bytes_; }
  uint64_t response_bytes() const { return response_bytes_; }

 private:
  const LocalWorkload& local_;
  PeerCache& peers_;
  const bool inbound_;
  const absl::Time start_;
  PeerInfoPtr peer_;  // the other side, when known
  const PeerInfo* endpoint_peer_ = nullptr;
  bool peer_sent_metadata_ = false;
  bool grpc_ = false;
  std::string service_;                 // destination_service, inbound
  absl::string_view outbound_service_;  // outbound: in the cluster's name
  int response_code_ = 0;
  std::string grpc_status_;
  std::string flags_;
  std::string details_;
  uint64_t request_bytes_ = 0, response_bytes_ = 0;
  GrpcMessageCounter request_messages_, response_messages_;
};

}  // namespace mesh::dataplane::telemetry
