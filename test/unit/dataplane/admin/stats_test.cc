#include "dataplane/admin/stats.h"

#include <catch2/catch.hpp>

#include "absl/strings/match.h"

namespace mesh::dataplane {
namespace {

TEST_CASE("Worker stats merge, and render as Prometheus text with cumulative buckets") {
  WorkerStats a, b;
  a.CountRequest("0.0.0.0_80", "r", "c", 200);
  a.CountRequest("0.0.0.0_80", "r", "c", 204);
  b.CountRequest("0.0.0.0_80", "r", "c", 503);
  a.upstream_latency["c"].Record(absl::Microseconds(300));  // <= 0.5 ms
  b.upstream_latency["c"].Record(absl::Milliseconds(7));    // <= 10 ms
  b.upstream_latency["c"].Record(absl::Seconds(20));        // +Inf
  a.downstream_active = 2;
  b.downstream_active = 1;
  a.Merge(b);
  CHECK(a.downstream_active == 3);
  ProxyCounters p;
  p.xds_accepted = 4;
  p.xds_rejected = 1;
  std::string text = RenderPrometheus(a, p);
  INFO(text);
  CHECK(absl::StrContains(text,
                          "meshproxy_requests_total{listener=\"0.0.0.0_80\",route=\"r\","
                          "cluster=\"c\",response_class=\"2xx\"} 2\n"));
  CHECK(absl::StrContains(text, "response_class=\"5xx\"} 1\n"));
  const std::string h = "meshproxy_upstream_request_duration_milliseconds_bucket{cluster=\"c\",";
  CHECK(absl::StrContains(text, h + "le=\"0.5\"} 1\n"));
  CHECK(absl::StrContains(text, h + "le=\"5\"} 1\n"));
  CHECK(absl::StrContains(text, h + "le=\"10\"} 2\n"));
  CHECK(absl::StrContains(text, h + "le=\"+Inf\"} 3\n"));
  CHECK(absl::StrContains(
      text, "meshproxy_upstream_request_duration_milliseconds_count{cluster=\"c\"} 3\n"));
  CHECK(absl::StrContains(text, "meshproxy_downstream_connections_active 3\n"));
  CHECK(absl::StrContains(text, "meshproxy_xds_updates_total{result=\"rejected\"} 1\n"));
}

TEST_CASE("Label values are escaped") {
  WorkerStats s;
  s.CountRequest("l", "say \"hi\"\\", "c", 200);
  CHECK(absl::StrContains(RenderPrometheus(s, {}), "route=\"say \\\"hi\\\"\\\\\""));
}

}  // namespace
}  // namespace mesh::dataplane
