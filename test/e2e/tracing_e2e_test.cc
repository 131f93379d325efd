// Distributed tracing end to end: trace context through sidecars, gateways and the app between
// them, spans exported over OTLP/HTTP to meshpilot's collector (read back with Jaeger's query
// API) or to a receiver of the test's own, sampling as configured, and bad input ignored.
#include <httplib.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb.h"
#include "test/support/mesh.h"

namespace mesh::testing {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

// meshpilot's Jaeger API: GET `path` with the admin token; null JSON on failure.
json Jaeger(Mesh& mesh, const std::string& path) {
  auto r = mesh.pilot().Client().Get(path);
  if (!r || r->status != 200) return nullptr;
  return json::parse(r->body, nullptr, false);
}

// The traces of `service` meshpilot holds (up to 1000).
json Traces(Mesh& mesh, const std::string& service) {
  json j = Jaeger(mesh, "/api/traces?lookback=1h&limit=1000&service=" + service);
  return j.is_object() && j["data"].is_array() ? j["data"] : json::array();
}

std::string Tag(const json& span, const std::string& key) {
  for (const json& t : span["tags"]) {
    if (t["key"] == key)
      return t["value"].is_string() ? t["value"].get<std::string>() : t["value"].dump();
  }
  return "";
}

std::string ServiceOf(const json& trace, const json& span) {
  return trace["processes"][span["processID"].get<std::string>()]["serviceName"];
}

// Two services called through the first one's app (/call), and a client sidecar.
struct FrontBack {
  Mesh mesh;
  Mesh::Proxy* client = nullptr;
  explicit FrontBack(std::vector<std::string> flags) : mesh(std::move(flags)) {
    mesh.Apply(R"(
apiVersion: v1
kind: Service
metadata: {name: front}
spec: {selector: {app: front}, ports: [{name: http, port: 8000}]}
---
apiVersion: v1
kind: Service
metadata: {name: back}
spec: {selector: {app: back}, ports: [{name: http, port: 8001}]}
)");
    mesh.Workload("front", "default", "app=front", 8000, {"--name", "front"});
    mesh.Workload("back", "default", "app=back", 8001, {"--name", "back"});
    client = &mesh.Sidecar("client", "default", "app=client", 9000, FreePort());
  }
  // GET front:8000/call/back:8001/echo through the client's sidecar: the echo of what back got.
  Reply Call(const httplib::Headers& extra = {}) {
    httplib::Client c(client->ip, 15001);
    c.set_read_timeout(5s);
    httplib::Headers h = extra;
    h.emplace("Host", "front:8000");
    auto r = c.Get("/call/back:8001/echo", h);
    Reply out;
    if (r) {
      out.status = r->status;
      out.body = r->body;
    }
    return out;
  }
};

// The value of `header` in an echo body ("header: NAME: VALUE" lines).
std::string Echoed(const std::string& echo, const std::string& header) {
  const std::string key = "header: " + header + ": ";
  size_t at = echo.find(key);
  if (at == std::string::npos) return "";
  at += key.size();
  return echo.substr(at, echo.find('\n', at) - at);
}

TEST_CASE("Tracing: a request through gateway, voting-app and analytics is one trace") {
  Mesh mesh({"--debounce", "10ms", "--trace-sampling", "100"});
  mesh.ApplyVotingApp(1);
  Mesh::Proxy& gw = mesh.Gateway();
  const int redis = mesh.Redis();
  mesh.Sidecar("voting-storage-1-0", "voting", "app=voting-storage,version=1.0", 6379, redis);
  for (const std::string app : {"voting-app", "voting-analytics"}) {
    mesh.Workload(app + "-1-0", "voting", "app=" + app + ",version=1.0", 8080,
                  {"--mode", app, "--name", app, "--version", "1.0", "--storage", "redis"});
  }
  REQUIRE(mesh.WaitReady(30s));
  INFO(mesh.Logs().substr(0, 6000));
  REQUIRE(WaitFor([&] { return HttpGet(gw.port, "/").status == 200; }, 15s));
  const std::string id = "0af7651916cd43dd8448eb211c80319c";
  REQUIRE(HttpGet(gw.port, "/", {{"traceparent", "00-" + id + "-b7ad6b7169203331-01"}}).status ==
          200);

  json trace;
  WaitFor(
      [&] {
        json j = Jaeger(mesh, "/api/traces/" + id);
        if (!j.is_object() || j["data"].empty()) return false;
        trace = j["data"][0];
        return trace["spans"].size() >= 4;
      },
      10s);
  INFO(trace.dump(1));
  INFO(Jaeger(mesh, "/api/services").dump());
  REQUIRE(trace["spans"].size() >= 4);
  // The gateway's client span continues the caller's; each hop's span is the child of the one
  // before: gateway -> voting-app (server) -> voting-app (client) -> voting-analytics (server).
  std::map<std::string, json> by_id;
  for (const json& s : trace["spans"]) by_id[s["spanID"]] = s;
  auto parent_of = [&](const json& s) -> std::string {
    return s["references"].empty() ? "" : s["references"][0]["spanID"].get<std::string>();
  };
  auto find = [&](const std::string& service, const std::string& kind) -> json {
    for (const json& s : trace["spans"]) {
      if (ServiceOf(trace, s) == service && Tag(s, "span.kind") == kind &&
          absl::StrContains(s["operationName"].get<std::string>(),
                            service == "voting-app.voting" && kind == "client" ? "analytics" : ""))
        return s;
    }
    return nullptr;
  };
  const json gateway = find("ingressgateway.istio-system", "client");
  const json app_in = find("voting-app.voting", "server");
  const json app_out = find("voting-app.voting", "client");
  const json analytics = find("voting-analytics.voting", "server");
  REQUIRE(!gateway.is_null());
  REQUIRE(!app_in.is_null());
  REQUIRE(!app_out.is_null());
  REQUIRE(!analytics.is_null());
  CHECK(parent_of(gateway) == "b7ad6b7169203331");
  CHECK(parent_of(app_in) == gateway["spanID"]);
  CHECK(parent_of(app_out) == app_in["spanID"]);
  CHECK(parent_of(analytics) == app_out["spanID"]);
  // Istio's names and tags.
  CHECK(gateway["operationName"] == "voting-app.voting.svc.cluster.local:8080/*");
  CHECK(app_in["operationName"] == "voting-app.voting.svc.cluster.local:8080/*");
  CHECK(app_out["operationName"] == "voting-analytics.voting.svc.cluster.local:8080/*");
  CHECK(Tag(gateway, "http.method") == "GET");
  CHECK(Tag(gateway, "http.status_code") == "200");
  CHECK(Tag(gateway, "response_flags") == "-");
  CHECK(Tag(gateway, "upstream_cluster") == "outbound|8080||voting-app.voting.svc.cluster.local");
  CHECK(Tag(gateway, "component") == "proxy");
  CHECK(absl::StrContains(Tag(app_in, "node_id"), "voting-app"));
  CHECK(Tag(analytics, "istio.namespace") == "voting");
  CHECK(absl::StartsWith(Tag(analytics, "upstream_cluster"), "inbound|"));

  json services = Jaeger(mesh, "/api/services");
  REQUIRE(services.is_object());
  std::set<std::string> names(services["data"].begin(), services["data"].end());
  CHECK(names.count("voting-app.voting"));
  CHECK(names.count("voting-analytics.voting"));
  CHECK(names.count("ingressgateway.istio-system"));
}

TEST_CASE("Tracing: with 100 % sampling, 100 requests give 100 traces") {
  FrontBack m({"--debounce", "10ms", "--trace-sampling", "100"});
  REQUIRE(m.mesh.WaitReady(30s));
  INFO(m.mesh.Logs());
  REQUIRE(WaitFor([&] { return m.Call().status == 200; }, 15s));
  REQUIRE(WaitFor([&] { return Traces(m.mesh, "client.default").size() >= 1; }, 10s));
  std::this_thread::sleep_for(1500ms);  // the warm-up's spans are all in
  const size_t before = Traces(m.mesh, "client.default").size();
  for (int i = 0; i < 100; ++i) REQUIRE(m.Call().status == 200);
  REQUIRE(WaitFor([&] { return Traces(m.mesh, "client.default").size() >= before + 100; }, 10s));
  std::this_thread::sleep_for(1500ms);  // a flush more: nothing beyond the 100 arrives
  json traces = Traces(m.mesh, "client.default");
  CHECK(traces.size() == before + 100);
  // Each is whole: client -> front (server, client) -> back (server). Newest first.
  for (size_t i = 0; i < 100 && i < traces.size(); ++i) CHECK(traces[i]["spans"].size() == 4);
}

TEST_CASE("Tracing: with 1 % sampling, about 1 % of requests give a trace") {
  FrontBack m({"--debounce", "10ms"});  // Istio's default, 1 %
  REQUIRE(m.mesh.WaitReady(30s));
  INFO(m.mesh.Logs());
  REQUIRE(WaitFor([&] { return m.Call().status == 200; }, 15s));
  std::this_thread::sleep_for(1500ms);  // the warm-up's spans (if sampled) are all in
  const size_t before = Traces(m.mesh, "client.default").size();
  httplib::Client c(m.client->ip, 15001);
  c.set_keep_alive(true);
  constexpr int kRequests = 3000;
  for (int i = 0; i < kRequests; ++i) {
    auto r = c.Get("/echo", {{"Host", "front:8000"}});
    REQUIRE(r);
    REQUIRE(r->status == 200);
  }
  std::this_thread::sleep_for(2500ms);  // every sidecar's flush
  const size_t traced = Traces(m.mesh, "client.default").size() - before;
  WARN("1 % sampling: " << traced << " traces from " << kRequests << " requests");
  // Binomial(3000, 0.01): mean 30, sd 5.4; this range is more than 3.5 sd wide each side.
  CHECK(traced >= 11);
  CHECK(traced <= 50);
  // Sampled at the first hop only: every trace has the client's and front's spans.
  for (const json& t : Traces(m.mesh, "client.default")) CHECK(t["spans"].size() >= 2);
  // x-envoy-force-trace samples a request whatever the rate.
  Reply forced = m.Call({{"x-envoy-force-trace", "true"}});
  REQUIRE(forced.status == 200);
  const std::string tp = Echoed(forced.body, "traceparent");
  REQUIRE(tp.size() == 55);
  CHECK(absl::EndsWith(tp, "-01"));
  CHECK(
      WaitFor([&] { return Jaeger(m.mesh, "/api/traces/" + tp.substr(3, 32)).is_object(); }, 10s));
}

TEST_CASE("Tracing: traceparent is continued, a malformed one replaced, B3 honoured") {
  FrontBack m({"--debounce", "10ms", "--trace-sampling", "100"});
  REQUIRE(m.mesh.WaitReady(30s));
  INFO(m.mesh.Logs());
  REQUIRE(WaitFor([&] { return m.Call().status == 200; }, 15s));

  // Continued: the last hop sees the same trace, with the previous hop's span as parent.
  const std::string trace = "4bf92f3577b34da6a3ce929d0e0e4736";
  Reply r = m.Call({{"x-request-id", "test-request-1"},
                    {"traceparent", "00-" + trace + "-00f067aa0ba902b7-01"},
                    {"tracestate", "vendor=blue"},
                    {"baggage", "tenant=blue"}});
  REQUIRE(r.status == 200);
  const std::string tp = Echoed(r.body, "traceparent");
  CHECK(absl::StartsWith(tp, "00-" + trace + "-"));
  CHECK(absl::EndsWith(tp, "-01"));
  CHECK(tp.find("00f067aa0ba902b7") == std::string::npos);  // a span of the mesh's own
  CHECK(Echoed(r.body, "x-b3-traceid") == trace);
  CHECK(Echoed(r.body, "x-b3-sampled") == "1");
  CHECK(Echoed(r.body, "tracestate") == "vendor=blue");
  CHECK(Echoed(r.body, "baggage") == "tenant=blue");
  CHECK(Echoed(r.body, "x-request-id") == "test-request-1");
  REQUIRE(WaitFor([&] { return Jaeger(m.mesh, "/api/traces/" + trace).is_object(); }, 10s));
  WaitFor([&] { return Jaeger(m.mesh, "/api/traces/" + trace)["data"][0]["spans"].size() == 4; },
          10s);
  json spans = Jaeger(m.mesh, "/api/traces/" + trace)["data"][0]["spans"];
  CHECK(spans.size() == 4);
  int roots_from_caller = 0;
  for (const json& s : spans) {
    if (!s["references"].empty() && s["references"][0]["spanID"] == "00f067aa0ba902b7")
      ++roots_from_caller;
  }
  CHECK(roots_from_caller == 1);

  // Malformed: ignored, and a new, well-formed trace starts.
  r = m.Call({{"traceparent", "00-zzzz-not-a-trace"}, {"tracestate", std::string(10000, 'a')}});
  REQUIRE(r.status == 200);
  const std::string fresh = Echoed(r.body, "traceparent");
  REQUIRE(fresh.size() == 55);
  CHECK(fresh.substr(0, 3) == "00-");
  CHECK(Echoed(r.body, "tracestate").empty());
  CHECK(Echoed(r.body, "x-request-id").size() == 36);  // made by the first sidecar, kept after

  // B3 alone (an app of the Zipkin era): the trace id and decision are kept, B3 written back.
  const std::string b3trace = "80f198ee56343ba864fe8b2a57d3eff7";
  r = m.Call(
      {{"x-b3-traceid", b3trace}, {"x-b3-spanid", "e457b5a2e4d86bd1"}, {"x-b3-sampled", "1"}});
  REQUIRE(r.status == 200);
  CHECK(Echoed(r.body, "x-b3-traceid") == b3trace);
  CHECK(Echoed(r.body, "x-b3-spanid").size() == 16);
  CHECK(Echoed(r.body, "x-b3-spanid") != "e457b5a2e4d86bd1");
  CHECK(absl::StartsWith(Echoed(r.body, "traceparent"), "00-" + b3trace));
  // The single b3 header too, and its "not sampled": no trace is kept.
  const std::string unsampled = "a0f198ee56343ba864fe8b2a57d3eff7";
  r = m.Call({{"b3", unsampled + "-e457b5a2e4d86bd1-0"}});
  REQUIRE(r.status == 200);
  CHECK(absl::StartsWith(Echoed(r.body, "b3"), unsampled + "-"));
  CHECK(absl::EndsWith(Echoed(r.body, "traceparent"), "-00"));
  REQUIRE(WaitFor([&] { return Jaeger(m.mesh, "/api/traces/" + b3trace).is_object(); }, 10s));
  std::this_thread::sleep_for(1500ms);
  CHECK(Jaeger(m.mesh, "/api/traces/" + unsampled).is_null());  // 404
}

// A collector of the test's own: decodes what arrives with the OTLP protos.
struct OtlpReceiver {
  httplib::Server server;
  std::thread thread;
  int port = 0;
  std::mutex mu;
  std::vector<opentelemetry::proto::collector::trace::v1::ExportTraceServiceRequest> received;
  std::vector<std::string> authorizations;

  OtlpReceiver() {
    server.Post("/v1/traces", [this](const httplib::Request& req, httplib::Response& res) {
      opentelemetry::proto::collector::trace::v1::ExportTraceServiceRequest r;
      if (req.get_header_value("Content-Type") != "application/x-protobuf" ||
          !r.ParseFromString(req.body)) {
        res.status = 400;
        return;
      }
      std::lock_guard lock(mu);
      received.push_back(std::move(r));
      authorizations.push_back(req.get_header_value("Authorization"));
      res.set_content(std::string(), "application/x-protobuf");
    });
    port = server.bind_to_any_port("127.0.0.1");
    thread = std::thread([this] { server.listen_after_bind(); });
  }
  ~OtlpReceiver() {
    server.stop();
    thread.join();
  }
  // Per service name, the span names received.
  std::map<std::string, std::vector<std::string>> Spans() {
    std::lock_guard lock(mu);
    std::map<std::string, std::vector<std::string>> out;
    for (const auto& r : received) {
      for (const auto& rs : r.resource_spans()) {
        std::string service = rs.resource().attributes(0).value().string_value();
        for (const auto& ss : rs.scope_spans()) {
          for (const auto& s : ss.spans()) out[service].push_back(s.name());
        }
      }
    }
    return out;
  }
};

TEST_CASE("Tracing: a Telemetry sends one namespace's spans to another OTLP receiver") {
  OtlpReceiver receiver;
  FrontBack m({"--debounce", "10ms", "--trace-provider",
               absl::StrCat("recv=http://127.0.0.1:", receiver.port, "/v1/traces")});
  m.mesh.Apply(R"(
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: tracing}
spec:
  tracing:
  - providers: [{name: recv}]
    randomSamplingPercentage: 100
    customTags:
      team: {literal: {value: blue}}
)");
  REQUIRE(m.mesh.WaitReady(30s));
  INFO(m.mesh.Logs());
  REQUIRE(WaitFor([&] { return m.Call().status == 200; }, 15s));
  for (int i = 0; i < 5; ++i) REQUIRE(m.Call().status == 200);
  // Each sidecar flushes on its own clock: wait for all three.
  std::map<std::string, std::vector<std::string>> spans;
  WaitFor(
      [&] {
        spans = receiver.Spans();
        return spans["back.default"].size() >= 5 && spans["client.default"].size() >= 6 &&
               spans["front.default"].size() >= 12;
      },
      10s);
  REQUIRE(spans["back.default"].size() >= 5);
  REQUIRE(spans["client.default"].size() >= 6);
  CHECK(spans["front.default"].size() >= 12);  // a server and a client span per request
  CHECK(spans["client.default"][0] == "front.default.svc.cluster.local:8000/*");
  {
    std::lock_guard lock(receiver.mu);
    CHECK(receiver.authorizations[0].empty());  // meshpilot's ingest token goes to it alone
    bool tagged = false;
    for (const auto& kv :
         receiver.received[0].resource_spans(0).scope_spans(0).spans(0).attributes())
      tagged = tagged || (kv.key() == "team" && kv.value().string_value() == "blue");
    CHECK(tagged);
  }
  // Nothing went to meshpilot's own collector.
  CHECK(Traces(m.mesh, "client.default").empty());
  // A Telemetry naming a provider meshpilot does not know is refused, with its path.
  CHECK_THROWS_WITH(m.mesh.Apply(R"(
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: bad}
spec: {tracing: [{providers: [{name: zipkin}]}]}
)"),
                    Catch::Contains("spec.tracing[0].providers[0].name"));
}

TEST_CASE("Tracing: a collector that is down costs no request, its spans are dropped and counted") {
  const int dead = FreePort();  // nothing listens
  FrontBack m({"--debounce", "10ms", "--trace-sampling", "100", "--trace-collector",
               absl::StrCat("http://127.0.0.1:", dead, "/v1/traces")});
  REQUIRE(m.mesh.WaitReady(30s));
  INFO(m.mesh.Logs());
  REQUIRE(WaitFor([&] { return m.Call().status == 200; }, 15s));
  for (int i = 0; i < 20; ++i) REQUIRE(m.Call().status == 200);
  std::string stats;
  CHECK(WaitFor(
      [&] {
        stats = m.client->Admin("/stats/prometheus");
        return !absl::StrContains(
            stats, "meshproxy_tracing_spans_dropped_total{reason=\"export_failed\"} 0");
      },
      10s));
  INFO(stats);
  CHECK(absl::StrContains(stats, "envoy_tracing_opentelemetry_spans_sent 0"));
}

TEST_CASE("Tracing: meshpilot's OTLP endpoint refuses what is not OTLP, and its token is narrow") {
  Mesh mesh;
  httplib::Client admin = mesh.pilot().Client();
  auto bad = admin.Post("/v1/traces", "not a protobuf \xff\xff", "application/x-protobuf");
  REQUIRE(bad);
  CHECK(bad->status == 400);
  auto json_body = admin.Post("/v1/traces", "{}", "application/json");
  REQUIRE(json_body);
  CHECK(json_body->status == 415);
  httplib::Client anonymous("127.0.0.1", mesh.pilot().port());
  auto none = anonymous.Post("/v1/traces", "", "application/x-protobuf");
  REQUIRE(none);
  CHECK(none->status == 401);
  CHECK(anonymous.Get("/api/traces?service=x")->status == 401);
  // A flood: spans with no valid ids are refused and counted; the store stays answerable.
  opentelemetry::proto::collector::trace::v1::ExportTraceServiceRequest flood;
  auto* spans = flood.add_resource_spans()->add_scope_spans();
  for (int i = 0; i < 5000; ++i) spans->add_spans()->set_name("junk");
  auto r = admin.Post("/v1/traces", flood.SerializeAsString(), "application/x-protobuf");
  REQUIRE(r);
  CHECK(r->status == 200);
  opentelemetry::proto::collector::trace::v1::ExportTraceServiceResponse answer;
  REQUIRE(answer.ParseFromString(r->body));
  CHECK(answer.partial_success().rejected_spans() == 5000);
  CHECK(Jaeger(mesh, "/api/services")["data"].empty());
  CHECK(absl::StrContains(admin.Get("/metrics")->body,
                          "meshpilot_trace_store_spans_rejected_total 5000"));
}

}  // namespace
}  // namespace mesh::testing
