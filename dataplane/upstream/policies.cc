#include "dataplane/upstream/policies.h"

#include <algorithm>

namespace mesh::dataplane {
namespace {

bool Has(const RetryPolicy& p, absl::string_view condition) {
  return std::find(p.retry_on.begin(), p.retry_on.end(), condition) != p.retry_on.end();
}

bool IsGatewayError(int status) {
  return status == 502 || status == 503 || status == 504;
}

}  // namespace

bool Retriable(const RetryPolicy& policy, const AttemptResult& r) {
  using K = AttemptResult::Kind;
  bool failed_to_answer = r.kind == K::kReset || r.kind == K::kTimeout;
  if (r.kind == K::kConnectFailure) {
    return Has(policy, "connect-failure") || Has(policy, "5xx") || Has(policy, "gateway-error") ||
           Has(policy, "reset");
  }
  if (failed_to_answer) return Has(policy, "reset") || Has(policy, "5xx");
  if (r.status >= 500 && Has(policy, "5xx")) return true;
  if (IsGatewayError(r.status) && Has(policy, "gateway-error")) return true;
  if (r.status == 409 && Has(policy, "retriable-4xx")) return true;
  if (Has(policy, "retriable-status-codes") &&
      std::find(policy.retriable_status_codes.begin(), policy.retriable_status_codes.end(),
                static_cast<uint32_t>(r.status)) != policy.retriable_status_codes.end()) {
    return true;
  }
  // gRPC conditions, by grpc-status code.
  static constexpr std::pair<absl::string_view, absl::string_view> kGrpc[] = {
      {"cancelled", "1"},
      {"deadline-exceeded", "4"},
      {"resource-exhausted", "8"},
      {"internal", "13"},
      {"unavailable", "14"}};
  for (auto [condition, code] : kGrpc) {
    if (r.grpc_status == code && Has(policy, condition)) return true;
  }
  return false;
}

absl::Duration RetryBackoff(int retry, uint64_t random) {
  const absl::Duration base = absl::Milliseconds(25), cap = absl::Milliseconds(250);
  absl::Duration window =
      std::min(cap, base * (int64_t{1} << std::min(std::max(retry - 1, 0), 16)));
  int64_t window_us = absl::ToInt64Microseconds(window);
  return absl::Microseconds(static_cast<int64_t>(random % static_cast<uint64_t>(window_us + 1)));
}

bool RecordForOutlierDetection(const Cluster& cluster, const Host& host, const AttemptResult& r,
                               absl::Time now) {
  if (!cluster.outlier.enabled) return false;
  using K = AttemptResult::Kind;
  bool local_failure = r.kind != K::kResponse;
  bool is_5xx = local_failure || r.status >= 500;
  bool is_gateway = local_failure || IsGatewayError(r.status);
  HostState& s = *host.state;
  if (!is_5xx) {
    // The common case: nothing to reset, so no write to a line other workers read.
    if (s.consecutive_5xx.load(std::memory_order_relaxed))
      s.consecutive_5xx.store(0, std::memory_order_relaxed);
    if (s.consecutive_gateway_errors.load(std::memory_order_relaxed))
      s.consecutive_gateway_errors.store(0, std::memory_order_relaxed);
    return false;
  }
  uint32_t c5 = s.consecutive_5xx.fetch_add(1) + 1;
  uint32_t cg = is_gateway ? s.consecutive_gateway_errors.fetch_add(1) + 1
                           : (s.consecutive_gateway_errors = 0, 0u);
  bool trip = (cluster.outlier.consecutive_5xx && c5 >= cluster.outlier.consecutive_5xx) ||
              (cluster.outlier.consecutive_gateway_errors &&
               cg >= cluster.outlier.consecutive_gateway_errors);
  if (!trip || s.Ejected(now)) return false;
  size_t ejected = 0;
  for (const Host& h : cluster.hosts) ejected += h.state->Ejected(now) ? 1 : 0;
  if (ejected > 0 &&
      (ejected + 1) * 100 > cluster.hosts.size() * cluster.outlier.max_ejection_percent)
    return false;
  uint32_t times = s.ejections.fetch_add(1) + 1;
  s.ejected_until_ns =
      absl::ToUnixNanos(now + cluster.outlier.base_ejection_time * static_cast<int64_t>(times));
  s.consecutive_5xx = 0;
  s.consecutive_gateway_errors = 0;
  return true;
}

std::optional<absl::Duration> ParseGrpcTimeout(absl::string_view value) {
  if (value.size() < 2 || value.size() > 9) return std::nullopt;
  int64_t n = 0;
  for (char c : value.substr(0, value.size() - 1)) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + (c - '0');
  }
  switch (value.back()) {
    case 'H': return absl::Hours(n);
    case 'M': return absl::Minutes(n);
    case 'S': return absl::Seconds(n);
    case 'm': return absl::Milliseconds(n);
    case 'u': return absl::Microseconds(n);
    case 'n': return absl::Nanoseconds(n);
    default: return std::nullopt;
  }
}

}  // namespace mesh::dataplane
