// Observability end to end: Istio's standard metrics as both sidecars of a request report them,
// and meshpilot's control-plane metrics on its monitoring port.
#include <httplib.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "test/support/mesh.h"

namespace mesh::testing {
namespace {

using namespace std::chrono_literals;

// The lines of a Prometheus text that start with `metric{` and contain every one of `parts`.
std::vector<std::string> Lines(const std::string& text, const std::string& metric,
                               const std::vector<std::string>& parts) {
  std::vector<std::string> out;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (!absl::StartsWith(line, metric + "{")) continue;
    bool all = true;
    for (const std::string& p : parts) all = all && absl::StrContains(line, p);
    if (all) out.emplace_back(line);
  }
  return out;
}

// The value at the end of a sample line.
double Value(const std::string& line) {
  return std::stod(line.substr(line.rfind(' ') + 1));
}

Reply Through(const Mesh::Proxy& client, const std::string& host, const std::string& path) {
  httplib::Client c(client.ip, 15001);
  c.set_connection_timeout(3s);
  c.set_read_timeout(5s);
  httplib::Result r = c.Get(path, {{"Host", host}});
  Reply out;
  if (r) {
    out.status = r->status;
    out.body = r->body;
  }
  return out;
}

TEST_CASE("Istio metrics: both sidecars report a request, with workloads, flags and mTLS") {
  Mesh mesh;
  mesh.Apply(R"(
apiVersion: v1
kind: Service
metadata: {name: httpbin, namespace: foo}
spec: {selector: {app: httpbin}, ports: [{name: http, port: 8000}]}
---
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: mesh-mtls, namespace: istio-system}
spec: {host: "*.svc.cluster.local", trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}}
)",
             "foo");
  Mesh::Proxy& httpbin =
      mesh.Workload("httpbin", "foo", "app=httpbin,version=v1", 8000, {"--name", "httpbin"});
  Mesh::Proxy& sleep =
      mesh.Sidecar("sleep", "foo", "app=sleep,version=v2", 9000, FreePort(), "sleep");
  REQUIRE(mesh.WaitReady(30s));
  INFO(mesh.Logs());
  const std::string host = "httpbin.foo.svc.cluster.local:8000";
  REQUIRE(WaitFor([&] { return Through(sleep, host, "/ping").status == 200; }, 15s));
  // The app never sees the peer-metadata headers the sidecars exchange.
  Reply echo = Through(sleep, host, "/echo");
  CHECK(echo.status == 200);
  CHECK_FALSE(absl::StrContains(echo.body, "x-envoy-peer-metadata"));
  for (int i = 0; i < 20; ++i) REQUIRE(Through(sleep, host, "/ping").status == 200);
  CHECK(Through(sleep, "nowhere.foo.svc.cluster.local:8000", "/").status == 404);

  const std::string client_stats = sleep.Admin("/stats/prometheus");
  const std::string server_stats = httpbin.Admin("/stats/prometheus");
  INFO(client_stats);
  INFO(server_stats);
  // The client's sidecar: reporter source; the destination learnt from the response's metadata.
  std::vector<std::string> source =
      Lines(client_stats, "istio_requests_total",
            {"reporter=\"source\"", "source_workload=\"sleep\"", "source_version=\"v2\"",
             "source_principal=\"spiffe://cluster.local/ns/foo/sa/sleep\"",
             "destination_workload=\"httpbin\"", "destination_version=\"v1\"",
             "destination_service=\"httpbin.foo.svc.cluster.local\"",
             "destination_service_name=\"httpbin\"", "destination_service_namespace=\"foo\"",
             "response_code=\"200\"", "response_flags=\"-\""});
  REQUIRE(source.size() == 1);
  CHECK(Value(source[0]) >= 22);
  // The server's sidecar: reporter destination; the caller from the request's metadata and its
  // certificate.
  std::vector<std::string> destination =
      Lines(server_stats, "istio_requests_total",
            {"reporter=\"destination\"", "source_workload=\"sleep\"",
             "source_principal=\"spiffe://cluster.local/ns/foo/sa/sleep\"",
             "destination_workload=\"httpbin\"", "destination_app=\"httpbin\"",
             "response_code=\"200\"", "connection_security_policy=\"mutual_tls\""});
  REQUIRE(destination.size() == 1);
  CHECK(Value(destination[0]) == Value(source[0]));
  // A request no route takes: 404 with NR, reported by the client's sidecar.
  CHECK(Lines(client_stats, "istio_requests_total",
              {"response_code=\"404\"", "response_flags=\"NR\""})
            .size() == 1);
  CHECK(!Lines(client_stats, "istio_request_duration_milliseconds_bucket",
               {"destination_workload=\"httpbin\"", "le=\"+Inf\""})
             .empty());
  CHECK(absl::StrContains(client_stats, "istio_build{component=\"proxy\""));
}

TEST_CASE("meshpilot's metrics: pilot's and Citadel's names, on the monitoring port, tokenless") {
  Mesh mesh;
  mesh.Apply(R"(
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {selector: {app: web}, ports: [{name: http, port: 8080}]}
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: web}
spec: {hosts: [web], http: [{route: [{destination: {host: web}}]}]}
)");
  Mesh::Proxy& web = mesh.Workload("web", "default", "app=web", 8080, {"--name", "web"});
  REQUIRE(mesh.WaitReady(30s));
  (void)web;
  httplib::Client monitoring("127.0.0.1", mesh.pilot().monitoring_port());
  std::string text;
  REQUIRE(WaitFor(
      [&] {
        httplib::Result r = monitoring.Get("/metrics");
        text = r && r->status == 200 ? r->body : "";
        return absl::StrContains(text, "pilot_xds_pushes{type=\"lds\"}");
      },
      10s));
  INFO(text);
  for (const char* expect :
       {"pilot_xds{version=", "pilot_xds_pushes{type=\"cds\"}", "pilot_xds_push_time_bucket{",
        "pilot_proxy_convergence_time_bucket{", "pilot_total_xds_rejects", "pilot_services 1\n",
        "pilot_virt_services 1\n", "citadel_server_csr_count ",
        "citadel_server_success_cert_issuance_count ", "citadel_server_root_cert_expiry_timestamp ",
        "istio_build{component=\"pilot\"", "process_cpu_seconds_total ",
        "process_resident_memory_bytes "}) {
    CHECK(absl::StrContains(text, expect));
  }
  // The monitoring port shows metrics only: no config, no token taken or needed.
  CHECK(monitoring.Get("/apis/networking.istio.io/v1beta1/virtualservices")->status == 404);
  // The REST port's /metrics stays behind the token.
  CHECK(mesh.pilot().Client().Get("/metrics")->status == 200);
  httplib::Client anonymous("127.0.0.1", mesh.pilot().port());
  CHECK(anonymous.Get("/metrics")->status == 401);
}

}  // namespace
}  // namespace mesh::testing
