#include "dataplane/upstream/policies.h"

#include <catch2/catch.hpp>

namespace mesh::dataplane {
namespace {

using K = AttemptResult::Kind;
const absl::Time kNow = absl::FromUnixSeconds(1'700'000'000);

TEST_CASE("Retry conditions follow Envoy's retry_on meanings") {
  RetryPolicy p5xx{{"5xx"}, 2, std::nullopt, {}};
  CHECK(Retriable(p5xx, {K::kResponse, 500, ""}));
  CHECK(Retriable(p5xx, {K::kResponse, 503, ""}));
  CHECK(!Retriable(p5xx, {K::kResponse, 404, ""}));
  CHECK(Retriable(p5xx, {K::kReset, 0, ""}));
  CHECK(Retriable(p5xx, {K::kConnectFailure, 0, ""}));
  RetryPolicy gateway{{"gateway-error"}, 2, std::nullopt, {}};
  CHECK(Retriable(gateway, {K::kResponse, 502, ""}));
  CHECK(!Retriable(gateway, {K::kResponse, 500, ""}));
  RetryPolicy connect{{"connect-failure"}, 2, std::nullopt, {}};
  CHECK(Retriable(connect, {K::kConnectFailure, 0, ""}));
  CHECK(!Retriable(connect, {K::kResponse, 503, ""}));
  CHECK(!Retriable(connect, {K::kReset, 0, ""}));
  RetryPolicy codes{{"retriable-status-codes"}, 2, std::nullopt, {429}};
  CHECK(Retriable(codes, {K::kResponse, 429, ""}));
  CHECK(!Retriable(codes, {K::kResponse, 503, ""}));
  RetryPolicy grpc{{"unavailable", "retriable-4xx"}, 2, std::nullopt, {}};
  CHECK(Retriable(grpc, {K::kResponse, 200, "14"}));
  CHECK(!Retriable(grpc, {K::kResponse, 200, "13"}));
  CHECK(Retriable(grpc, {K::kResponse, 409, ""}));
}

TEST_CASE("Retry back-off is full jitter over a doubling window capped at 250 ms") {
  CHECK(RetryBackoff(1, 0) == absl::ZeroDuration());
  CHECK(RetryBackoff(1, 25'000) == absl::Milliseconds(25));  // the window's top
  CHECK(RetryBackoff(1, 25'001) == absl::ZeroDuration());    // wraps within the window
  CHECK(RetryBackoff(2, 50'000) == absl::Milliseconds(50));
  CHECK(RetryBackoff(10, 250'000) == absl::Milliseconds(250));
  for (uint64_t r = 0; r < 1000; r += 37)
    CHECK(RetryBackoff(20, r * 12345) <= absl::Milliseconds(250));
}

Cluster Outlier(size_t hosts, uint32_t consecutive_5xx, uint32_t max_percent) {
  Cluster c;
  c.name = "c";
  c.outlier.enabled = true;
  c.outlier.consecutive_5xx = consecutive_5xx;
  c.outlier.base_ejection_time = absl::Seconds(30);
  c.outlier.max_ejection_percent = max_percent;
  for (size_t i = 0; i < hosts; ++i)
    c.hosts.push_back({"10.0.0." + std::to_string(i), 80, 1, std::make_shared<HostState>()});
  c.next = std::make_shared<std::atomic<uint64_t>>(0);
  return c;
}

TEST_CASE(
    "A host is ejected after consecutive 5xx, for longer each time, and a success resets the "
    "count") {
  Cluster c = Outlier(4, 3, 50);
  const Host& h = c.hosts[0];
  CHECK(!RecordForOutlierDetection(c, h, {K::kResponse, 500, ""}, kNow));
  CHECK(!RecordForOutlierDetection(c, h, {K::kResponse, 200, ""}, kNow));  // resets
  CHECK(!RecordForOutlierDetection(c, h, {K::kResponse, 503, ""}, kNow));
  CHECK(!RecordForOutlierDetection(c, h, {K::kConnectFailure, 0, ""}, kNow));
  CHECK(RecordForOutlierDetection(c, h, {K::kResponse, 500, ""}, kNow));
  CHECK(h.state->Ejected(kNow + absl::Seconds(29)));
  CHECK(!h.state->Ejected(kNow + absl::Seconds(30)));  // readmitted after base_ejection_time
  absl::Time later = kNow + absl::Seconds(60);
  for (int i = 0; i < 2; ++i) RecordForOutlierDetection(c, h, {K::kResponse, 500, ""}, later);
  CHECK(RecordForOutlierDetection(c, h, {K::kResponse, 500, ""}, later));
  CHECK(h.state->Ejected(later + absl::Seconds(59)));  // the second ejection lasts twice as long
  CHECK(!h.state->Ejected(later + absl::Seconds(60)));
}

TEST_CASE("Ejections stop at max_ejection_percent, though one host may always go") {
  Cluster c = Outlier(4, 1, 25);
  CHECK(RecordForOutlierDetection(c, c.hosts[0], {K::kResponse, 500, ""}, kNow));
  CHECK(!RecordForOutlierDetection(c, c.hosts[1], {K::kResponse, 500, ""}, kNow));  // 2 of 4 > 25%
  Cluster small = Outlier(2, 1, 10);
  CHECK(RecordForOutlierDetection(small, small.hosts[0], {K::kResponse, 502, ""},
                                  kNow));  // at least one
  Cluster off = Outlier(2, 1, 100);
  off.outlier.enabled = false;
  CHECK(!RecordForOutlierDetection(off, off.hosts[0], {K::kResponse, 500, ""}, kNow));
}

}  // namespace
}  // namespace mesh::dataplane
