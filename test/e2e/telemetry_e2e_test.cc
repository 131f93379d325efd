// Observability end to end: Istio's standard metrics as both sidecars of a request report them,
// and meshpilot's control-plane metrics on its monitoring port.
#include <httplib.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
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
  mesh.Apply(absl::StrCat(R"(
apiVersion: v1
kind: Service
metadata: {name: httpbin, namespace: foo}
spec: {selector: {app: httpbin}, ports: [{name: http, port: 8000}]}
)",
                          kStrictMtlsYaml),
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

// The lines of the access log file that contain every one of `parts`.
std::vector<std::string> LogLines(const std::string& path, const std::vector<std::string>& parts) {
  std::vector<std::string> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    bool all = true;
    for (const std::string& p : parts) all = all && absl::StrContains(line, p);
    if (all) out.push_back(line);
  }
  return out;
}

// A mesh whose proxies all log to one file: a client sidecar, httpbin (routes: a fault abort on
// /fault, a 300 ms timeout on /slow), a service without endpoints, and one whose only endpoint
// refuses connections.
struct LoggedMesh {
  explicit LoggedMesh(const std::string& encoding)
      : mesh({"--debounce", "10ms", "--access-log-file", log.path() + "/access.log",
              "--access-log-encoding", encoding}) {
    mesh.Apply(absl::StrCat(R"(
apiVersion: v1
kind: Service
metadata: {name: httpbin}
spec: {selector: {app: httpbin}, ports: [{name: http, port: 8000}]}
---
apiVersion: v1
kind: Service
metadata: {name: empty}
spec: {selector: {app: nobody}, ports: [{name: http, port: 8001}]}
---
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: dead}
spec:
  hosts: [dead.example]
  ports: [{number: 8002, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1, ports: {http: )",
                            FreePort(), R"(}}]
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: httpbin}
spec:
  hosts: [httpbin]
  http:
  - match: [{uri: {prefix: /fault}}]
    fault: {abort: {httpStatus: 418, percentage: {value: 100}}}
    route: [{destination: {host: httpbin}}]
  - match: [{uri: {prefix: /slow}}]
    timeout: 300ms
    retries: {attempts: 0}
    route: [{destination: {host: httpbin}}]
  - route: [{destination: {host: httpbin}}]
)"));
    httpbin = &mesh.Workload("httpbin", "default", "app=httpbin", 8000, {"--name", "httpbin"});
    client = &mesh.Sidecar("sleep", "default", "app=sleep", 9000, FreePort(), "sleep");
    REQUIRE(mesh.WaitReady(30s));
    REQUIRE(WaitFor([&] { return Through(*client, "httpbin:8000", "/ping").status == 200; }, 15s));
  }
  std::string path() const { return log.path() + "/access.log"; }

  TempDir log;
  Mesh mesh;
  Mesh::Proxy* httpbin = nullptr;
  Mesh::Proxy* client = nullptr;
};

TEST_CASE("Access logs: Istio's text format with Envoy's response flags") {
  LoggedMesh m("TEXT");
  INFO(m.mesh.Logs());
  CHECK(Through(*m.client, "httpbin:8000", "/ping?id=ok").status == 200);
  CHECK(Through(*m.client, "nowhere:8000", "/").status == 404);
  CHECK(Through(*m.client, "empty:8001", "/").status == 503);
  CHECK(Through(*m.client, "dead.example:8002", "/").status == 503);
  CHECK(Through(*m.client, "httpbin:8000", "/slow?delay_ms=2000").status == 504);
  CHECK(Through(*m.client, "httpbin:8000", "/fault").status == 418);
  {
    // The client goes away before the answer: DC.
    httplib::Client c(m.client->ip, 15001);
    c.set_read_timeout(std::chrono::milliseconds(200));
    c.Get("/echo?delay_ms=1000&id=gone", {{"Host", "httpbin:8000"}});
  }
  REQUIRE(WaitFor([&] { return !LogLines(m.path(), {"id=gone", " DC "}).empty(); }, 5s));
  std::ifstream whole(m.path());
  INFO(std::string(std::istreambuf_iterator<char>(whole), {}));
  // Each as Istio writes it: [time] "METHOD PATH PROTOCOL" CODE FLAGS DETAILS ...
  const std::string start = "[20";
  auto one = [&](const std::vector<std::string>& parts) {
    std::vector<std::string> lines = LogLines(m.path(), parts);
    for (const auto& l : lines) CHECK(absl::StartsWith(l, start));
    return lines.size();
  };
  // 200 from both sidecars: the client's (outbound) and httpbin's (inbound), with one request id.
  CHECK(one({"\"GET /ping?id=ok HTTP/1.1\" 200 - via_upstream", "outbound|8000||httpbin"}) == 1);
  CHECK(one({"\"GET /ping?id=ok HTTP/1.1\" 200 - via_upstream", "inbound|"}) == 1);
  std::vector<std::string> both = LogLines(m.path(), {"/ping?id=ok"});
  REQUIRE(both.size() == 2);
  auto request_id = [](const std::string& line) {
    std::vector<std::string> quoted = absl::StrSplit(line, '"');
    return quoted.size() > 9 ? quoted[9] : "";
  };
  CHECK(request_id(both[0]).size() == 36);
  CHECK(request_id(both[0]) == request_id(both[1]));
  CHECK(one({"\"GET / HTTP/1.1\" 404 NR route_not_found"}) == 1);
  CHECK(one({"\"GET / HTTP/1.1\" 503 UH no_healthy_upstream", "empty.default"}) == 1);
  CHECK(one({"503 UF upstream_reset_before_response_started{connection_failure}",
             "dead.example"}) == 1);
  CHECK(one({"/slow?delay_ms=2000 HTTP/1.1\" 504 UT upstream_response_timeout"}) == 1);
  CHECK(one({"/fault HTTP/1.1\" 418 FI fault_filter_abort"}) == 1);
  CHECK(one({"id=gone", " DC "}) >= 1);
  CHECK(absl::StrContains(m.client->Admin("/stats/prometheus"),
                          "meshproxy_access_log_lines_total{result=\"dropped\"} 0\n"));
}

TEST_CASE("Access logs: Istio's JSON format, one object per line") {
  LoggedMesh m("JSON");
  INFO(m.mesh.Logs());
  CHECK(Through(*m.client, "httpbin:8000", "/ping?id=json").status == 200);
  CHECK(Through(*m.client, "nowhere:8000", "/").status == 404);
  REQUIRE(WaitFor([&] { return LogLines(m.path(), {"id=json"}).size() == 2; }, 5s));
  REQUIRE(WaitFor([&] { return !LogLines(m.path(), {"\"NR\""}).empty(); }, 5s));
  std::ifstream in(m.path());
  int lines = 0;
  for (std::string line; std::getline(in, line);) {
    ++lines;
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    INFO(line);
    REQUIRE(j.is_object());
    CHECK(j.contains("start_time"));
    CHECK(j["response_code"].is_number());
    auto text = [&](const char* key) {
      return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : std::string();
    };
    if (text("path") == "/ping?id=json") {
      CHECK(j["response_code"] == 200);
      CHECK(j["response_flags"].is_null());  // "-": unset
      CHECK(j["method"] == "GET");
      CHECK(j["request_id"].get<std::string>().size() == 36);
      const std::string cluster = text("upstream_cluster");
      CHECK((cluster == "outbound|8000||httpbin.default.svc.cluster.local" ||
             absl::StartsWith(cluster, "inbound|")));
    }
    if (text("response_flags") == "NR") CHECK(j["response_code"] == 404);
  }
  CHECK(lines >= 3);
}

}  // namespace
}  // namespace mesh::testing
