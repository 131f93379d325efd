#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "dataplane/telemetry/peer.h"

// Istio's standard metrics (istio_requests_total and its histograms, the istio_tcp_* counters),
// under Istio's names, types and labels, as Envoy's Prometheus endpoint shows them with Istio's
// stats plugin. Each worker owns one IstioMetrics and is its only writer; the admin endpoint
// merges copies. The number of label sets is capped per worker, and what the cap turns away is
// counted.
namespace mesh::dataplane::telemetry {

// Envoy's default histogram buckets, which Istio's histograms use.
inline constexpr std::array<double, 19> kIstioBuckets = {
    0.5,  1,    5,     10,    25,    50,     100,    250,     500,    1000,
    2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000};

struct BucketHistogram {
  std::array<uint64_t, kIstioBuckets.size() + 1> buckets{};  // the last one is +Inf
  uint64_t count = 0;
  double sum = 0;
  void Record(double value);
  void Merge(const BucketHistogram& other);
};

// Who reports: `source` for a sidecar's outbound traffic and for gateways, `destination` for a
// sidecar's inbound traffic.
enum class Reporter { kSource, kDestination };

// One finished request, as the stats plugin sees it. Null peers and empty strings are written
// "unknown".
struct RequestRecord {
  Reporter reporter = Reporter::kSource;
  const PeerInfo* source = nullptr;
  const PeerInfo* destination = nullptr;
  absl::string_view source_principal, destination_principal;
  absl::string_view destination_service;         // the service host (FQDN)
  absl::string_view request_protocol;            // "http" or "grpc"
  int response_code = 0;                         // 0: no response was sent
  absl::string_view grpc_response_status;        // empty for HTTP
  absl::string_view response_flags;              // "-" when none
  absl::string_view connection_security_policy;  // "mutual_tls", "none" or "unknown"
  absl::Duration duration;
  uint64_t request_bytes = 0, response_bytes = 0;
  uint64_t request_messages = 0, response_messages = 0;  // gRPC
};

// One TCP connection's contribution: opened, bytes moved since the last record, closed.
struct TcpRecord {
  Reporter reporter = Reporter::kSource;
  const PeerInfo* source = nullptr;
  const PeerInfo* destination = nullptr;
  absl::string_view source_principal, destination_principal;
  absl::string_view destination_service;
  absl::string_view response_flags;
  absl::string_view connection_security_policy;
  bool opened = false, closed = false;
  uint64_t sent_bytes = 0, received_bytes = 0;  // to and from the downstream peer
};

class IstioMetrics {
 public:
  explicit IstioMetrics(size_t max_series = 10000) : max_series_(max_series) {}

  void Record(const RequestRecord& r);
  void Record(const TcpRecord& r);
  void Merge(const IstioMetrics& other);
  // The Prometheus text of every series, and istio_build for `component` and `tag`.
  std::string Render(absl::string_view component, absl::string_view tag) const;

  size_t series() const { return http_.size() + tcp_.size(); }
  uint64_t dropped() const { return dropped_; }  // records turned away by the cap

 private:
  struct HttpSeries {
    uint64_t requests = 0;
    BucketHistogram duration_ms, request_bytes, response_bytes;
    uint64_t request_messages = 0, response_messages = 0;
    bool grpc = false;
  };
  struct TcpSeries {
    uint64_t sent = 0, received = 0, opened = 0, closed = 0;
  };

  size_t max_series_;
  // Keyed by the label values (see istio_metrics.cc), hashed: a lookup builds no new string once
  // `key_` has grown to size.
  absl::flat_hash_map<std::string, HttpSeries> http_;
  absl::flat_hash_map<std::string, TcpSeries> tcp_;
  std::string key_;  // scratch
  uint64_t dropped_ = 0;
};

}  // namespace mesh::dataplane::telemetry
