// Access logging decided per workload from meshConfig and Telemetry resources, by table.
#include "controlplane/compiler/telemetry.h"

#include <catch2/catch.hpp>

#include "envoy/config/listener/v3/listener.pb.h"
#include "envoy/config/route/v3/route.pb.h"
#include "envoy/config/trace/v3/http_tracer.pb.h"
#include "envoy/extensions/access_loggers/file/v3/file.pb.h"
#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb.h"
#include "test/support/config_fixture.h"

namespace mesh::compiler {
namespace {

std::string Tel(const std::string& name, const std::string& ns, const std::string& spec) {
  return "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: " + name +
         ", namespace: " + ns + "}\nspec: " + spec + "\n---\n";
}

// client/server for app=httpbin in foo, as "CS", "C-", "-S" or "--".
std::string Sides(const std::string& yaml, const MeshConfig& mesh = {},
                  const model::Labels& labels = {{"app", "httpbin"}}) {
  auto config =
      testing::Config(yaml +
                      "apiVersion: v1\nkind: Service\nmetadata: {name: httpbin, namespace: foo}\n"
                      "spec: {selector: {app: httpbin}, ports: [{port: 8000}]}\n");
  AccessLogging l = AccessLoggingFor(*config, "foo", labels, mesh);
  return std::string(l.client ? "C" : "-") + (l.server ? "S" : "-");
}

TEST_CASE("Access logging: meshConfig's file, then the most specific Telemetry decides") {
  MeshConfig on;
  on.access_log_file = "/dev/stdout";
  CHECK(Sides("") == "--");  // Istio's default: no access logs
  CHECK(Sides("", on) == "CS");
  const std::string mesh_wide = Tel("mesh", "istio-system", "{accessLogging: [{}]}");
  const std::string ns_off = Tel("ns", "foo", "{accessLogging: [{disabled: true}]}");
  const std::string workload_server =
      Tel("w", "foo",
          "{selector: {matchLabels: {app: httpbin}}, accessLogging: [{match: {mode: SERVER}}]}");
  CHECK(Sides(mesh_wide) == "CS");
  CHECK(Sides(mesh_wide + ns_off) == "--");                    // the namespace's beats the mesh's
  CHECK(Sides(mesh_wide + ns_off + workload_server) == "-S");  // the workload's beats both
  CHECK(Sides(mesh_wide + ns_off + workload_server, {}, {{"app", "other"}}) == "--");
  CHECK(Sides(ns_off, on) == "--");
  CHECK(Sides(Tel("c", "foo", "{accessLogging: [{match: {mode: CLIENT}, disabled: true}]}"), on) ==
        "-S");
  // Another namespace's Telemetry is not this workload's.
  CHECK(Sides(Tel("elsewhere", "bar", "{accessLogging: [{}]}")) == "--");
}

TEST_CASE("Access logging: the file logger goes on every connection manager of a listener") {
  AccessLogging logging{true, false, "/var/log/mesh.log", false};
  envoy::config::listener::v3::Listener l;
  envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager m;
  l.add_filter_chains()->add_filters()->mutable_typed_config()->PackFrom(m);
  AddAccessLog(logging, /*server=*/true, &l);  // the server side is off
  REQUIRE(l.filter_chains(0).filters(0).typed_config().UnpackTo(&m));
  CHECK(m.access_log_size() == 0);
  AddAccessLog(logging, /*server=*/false, &l);
  REQUIRE(l.filter_chains(0).filters(0).typed_config().UnpackTo(&m));
  REQUIRE(m.access_log_size() == 1);
  envoy::extensions::access_loggers::file::v3::FileAccessLog file;
  REQUIRE(m.access_log(0).typed_config().UnpackTo(&file));
  CHECK(file.path() == "/var/log/mesh.log");
  CHECK(file.log_format().text_format_source().inline_string() == kIstioTextFormat);
}

MeshConfig WithProviders() {
  MeshConfig mesh;
  mesh.trace_providers = {{"meshpilot", "http://pilot:15080/v1/traces", {{"authorization", "t"}}},
                          {"jaeger", "http://jaeger:4318/v1/traces", {}}};
  mesh.default_trace_provider = "meshpilot";
  return mesh;
}

TEST_CASE(
    "Tracing: meshConfig's default, then Telemetry fields override root, namespace, workload") {
  const MeshConfig mesh = WithProviders();
  const std::string service =
      "apiVersion: v1\nkind: Service\nmetadata: {name: httpbin, namespace: foo}\n"
      "spec: {selector: {app: httpbin}, ports: [{port: 8000}]}\n";
  auto tracing = [&](const std::string& yaml, const model::Labels& labels = {{"app", "httpbin"}}) {
    return TracingFor(*testing::Config(yaml + service), "foo", labels, mesh);
  };
  Tracing t = tracing("");
  REQUIRE(t.client.provider);
  CHECK(t.client.provider->name == "meshpilot");
  CHECK(t.client.sampling == 1.0);  // Istio's 1 %
  CHECK(t.server.report);

  const std::string root = Tel("mesh", "istio-system",
                               "{tracing: [{randomSamplingPercentage: 10, customTags: {team: "
                               "{literal: {value: blue}}}}]}");
  const std::string ns = Tel("ns", "foo", "{tracing: [{providers: [{name: jaeger}]}]}");
  const std::string workload =
      Tel("w", "foo",
          "{selector: {matchLabels: {app: httpbin}}, tracing: [{match: {mode: SERVER}, "
          "randomSamplingPercentage: 100, disableSpanReporting: true, customTags: {team: "
          "{literal: {value: red}}}}]}");
  t = tracing(root + ns + workload);
  // The client side: the root's sampling and tag, the namespace's provider.
  CHECK(t.client.provider->name == "jaeger");
  CHECK(t.client.sampling == 10);
  CHECK(t.client.report);
  CHECK(t.client.custom_tags.at("team").value == "blue");
  // The server side: the workload's overrides on top.
  CHECK(t.server.provider->name == "jaeger");
  CHECK(t.server.sampling == 100);
  CHECK_FALSE(t.server.report);
  CHECK(t.server.custom_tags.at("team").value == "red");
  // Another workload of the namespace: not the workload's Telemetry.
  t = tracing(root + ns + workload, {{"app", "other"}});
  CHECK(t.server.sampling == 10);
  // No default provider and no Telemetry: no tracing; an unknown provider (flags changed since
  // the Telemetry was applied) traces nothing.
  MeshConfig off = mesh;
  off.default_trace_provider.clear();
  CHECK_FALSE(TracingFor(*testing::Config(service), "foo", {}, off).client.provider);
  CHECK_FALSE(
      tracing(Tel("gone", "foo", "{tracing: [{providers: [{name: gone}]}]}")).client.provider);
}

TEST_CASE("Tracing: the HCM gets Envoy's OpenTelemetry tracer with the provider and tags") {
  const MeshConfig mesh = WithProviders();
  TracingSide side;
  side.provider = &mesh.trace_providers[0];
  side.sampling = 2.5;
  side.custom_tags["user"] = {model::Telemetry::CustomTag::Kind::kHeader, "end-user", "none"};
  envoy::config::listener::v3::Listener l;
  envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager m;
  l.add_filter_chains()->add_filters()->mutable_typed_config()->PackFrom(m);
  AddTracing(side, &l);
  REQUIRE(l.filter_chains(0).filters(0).typed_config().UnpackTo(&m));
  REQUIRE(m.has_tracing());
  CHECK(m.tracing().random_sampling().value() == 2.5);
  CHECK(m.tracing().provider().name() == "envoy.tracers.opentelemetry");
  envoy::config::trace::v3::OpenTelemetryConfig otel;
  REQUIRE(m.tracing().provider().typed_config().UnpackTo(&otel));
  CHECK(otel.http_service().http_uri().uri() == "http://pilot:15080/v1/traces");
  REQUIRE(otel.http_service().request_headers_to_add_size() == 1);
  CHECK(otel.http_service().request_headers_to_add(0).header().value() == "t");
  REQUIRE(m.tracing().custom_tags_size() == 1);
  CHECK(m.tracing().custom_tags(0).request_header().name() == "end-user");
  // Span reporting off: the tracer stays (context and sampling), with nowhere to send spans.
  side.report = false;
  AddTracing(side, &l);
  REQUIRE(l.filter_chains(0).filters(0).typed_config().UnpackTo(&m));
  REQUIRE(m.tracing().provider().typed_config().UnpackTo(&otel));
  CHECK_FALSE(otel.has_http_service());
  // No provider: nothing added.
  envoy::config::listener::v3::Listener bare;
  bare.add_filter_chains()->add_filters()->mutable_typed_config()->PackFrom(
      envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager());
  AddTracing(TracingSide{}, &bare);
  REQUIRE(bare.filter_chains(0).filters(0).typed_config().UnpackTo(&m));
  CHECK_FALSE(m.has_tracing());
}

TEST_CASE("Tracing: span names are Istio's route operations") {
  envoy::config::route::v3::Route r;
  r.mutable_match()->set_prefix("/");
  r.mutable_route()->set_cluster("outbound|9080||reviews.default.svc.cluster.local");
  CHECK(RouteOperation(r, "x:1") == "reviews.default.svc.cluster.local:9080/*");
  r.mutable_match()->set_prefix("/api/");
  CHECK(RouteOperation(r, "x:1") == "reviews.default.svc.cluster.local:9080/api/*");
  r.mutable_match()->set_path("/login");
  r.mutable_route()->mutable_weighted_clusters()->add_clusters()->set_name(
      "outbound|9080|v2|reviews.default.svc.cluster.local");
  CHECK(RouteOperation(r, "x:1") == "reviews.default.svc.cluster.local:9080/login");
  envoy::config::route::v3::Route inbound;
  inbound.mutable_route()->set_cluster("inbound|15006||");
  CHECK(RouteOperation(inbound, "reviews.default.svc.cluster.local:9080") ==
        "reviews.default.svc.cluster.local:9080/*");
}

}  // namespace
}  // namespace mesh::compiler
