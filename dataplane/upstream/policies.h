#pragma once

#include <cstdint>
#include <optional>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "dataplane/config/route_table.h"
#include "dataplane/upstream/cluster_table.h"

// Decisions the proxy makes after each upstream attempt, as Envoy makes them: whether to retry,
// how long to back off, and whether a host has failed often enough to be ejected. Pure functions
// of their inputs (and of the host's shared state for ejection), so they are tested without a
// network or a clock.
namespace mesh::dataplane {

// How an attempt ended.
struct AttemptResult {
  enum class Kind { kResponse, kConnectFailure, kReset, kTimeout };
  Kind kind = Kind::kResponse;
  int status = 0;                 // HTTP status, for kResponse
  absl::string_view grpc_status;  // the grpc-status header or trailer, if any
};

// Whether `result` may be retried under `policy` (retry_on: 5xx, gateway-error, reset,
// connect-failure, retriable-4xx, retriable-status-codes, and the gRPC conditions cancelled,
// deadline-exceeded, internal, resource-exhausted, unavailable).
bool Retriable(const RetryPolicy& policy, const AttemptResult& result);

// Envoy's default retry back-off: full jitter over 25 ms × 2^(retry-1), capped at 250 ms.
// `retry` counts from 1; `random` is a fresh random number.
absl::Duration RetryBackoff(int retry, uint64_t random);

// Counts an attempt's result against `host` for outlier detection, and ejects it when it reaches
// the cluster's consecutive 5xx or gateway-error threshold, unless that would eject more than
// max_ejection_percent of the cluster's hosts (at least one host may always be ejected).
// An ejection lasts base_ejection_time × the number of times the host was ejected. Returns
// whether this result ejected the host. Any non-error result resets the counters.
bool RecordForOutlierDetection(const Cluster& cluster, const Host& host,
                               const AttemptResult& result, absl::Time now);

// A grpc-timeout header's value (gRPC over HTTP/2: up to 8 digits and a unit, H M S m u n);
// nullopt when it is malformed, which gRPC says to treat as no timeout.
std::optional<absl::Duration> ParseGrpcTimeout(absl::string_view value);

}  // namespace mesh::dataplane
