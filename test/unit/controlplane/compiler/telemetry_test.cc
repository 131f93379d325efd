// Access logging decided per workload from meshConfig and Telemetry resources, by table.
#include "controlplane/compiler/telemetry.h"

#include <catch2/catch.hpp>

#include "envoy/config/listener/v3/listener.pb.h"
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

}  // namespace
}  // namespace mesh::compiler
