// Who may become an endpoint: sidecars register only with a proven identity that fits the
// service, whatever labels they claim.
#include <catch2/catch.hpp>
#include <chrono>
#include <csignal>
#include <map>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "test/support/mesh.h"

namespace mesh::testing {
namespace {

using namespace std::chrono_literals;

const std::string kPongYaml =
    "apiVersion: v1\nkind: Service\nmetadata: {name: pong}\nspec:\n  selector: {app: pong}\n"
    "  ports: [{name: http, port: 8080}]\n---\n"
    "apiVersion: networking.istio.io/v1alpha3\nkind: Gateway\nmetadata: {name: gw}\nspec:\n"
    "  selector: {istio: ingressgateway}\n"
    "  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]\n---\n"
    "apiVersion: networking.istio.io/v1alpha3\nkind: VirtualService\nmetadata: {name: pong}\n"
    "spec:\n  hosts: ['*']\n  gateways: [gw]\n  http: [{route: [{destination: {host: pong}}]}]\n";

TEST_CASE("Sidecars claiming a service's labels without its identity never receive its traffic") {
  Mesh mesh;
  mesh.Apply(kPongYaml);
  Mesh::Proxy& gateway = mesh.Gateway();
  mesh.Workload("pong-v1", "default", "app=pong,version=v1", 8080,
                {"--name", "pong", "--version", "v1"});
  REQUIRE(mesh.WaitReady());
  REQUIRE(WaitFor([&] { return HttpGet(gateway.port, "/").body == "pong v1\n"; }, 10s));

  // An intruder without a token, on the plaintext xDS port.
  int plain_app = mesh.App("plain-intruder", {"--name", "pong", "--version", "plain-intruder"});
  std::string ip = mesh.NextIp();
  mesh.RawProxy("plain-intruder", {"--role", "sidecar", "--namespace", "default", "--labels",
                                   "app=pong", "--address", ip, "--outbound", ip + ":15001",
                                   "--inbound", absl::StrCat("8080=", FreePort(), ":", plain_app)});
  // An intruder with a valid token, for another service account of the same namespace.
  int sa_app = mesh.App("sa-intruder", {"--name", "pong", "--version", "sa-intruder"});
  ip = mesh.NextIp();
  mesh.RawProxy("sa-intruder",
                {"--role", "sidecar", "--namespace", "default", "--labels", "app=pong",
                 "--service-account", "intruder", "--address", ip, "--outbound", ip + ":15001",
                 "--inbound", absl::StrCat("8080=", FreePort(), ":", sa_app), "--token-file",
                 mesh.TokenFile("sa-intruder", "default", "intruder")});
  REQUIRE(WaitFor(
      [&] {
        auto r = mesh.pilot().Registrations();
        return r.count("plain-intruder") && absl::StartsWith(r["sa-intruder"], "refused");
      },
      10s));
  std::map<std::string, std::string> r = mesh.pilot().Registrations();
  CHECK(r["pong-v1"] == "registered");
  CHECK(r["plain-intruder"] ==
        "not registered: a plaintext stream proves no identity (connect to the TLS xDS port with a "
        "workload certificate)");
  CHECK(r["sa-intruder"] ==
        "refused: not an endpoint of pong.default.svc.cluster.local: it runs as service account "
        "intruder, the service's workloads as default");

  std::map<std::string, int> seen;
  for (int i = 0; i < 200; ++i) ++seen[HttpGet(gateway.port, "/").body];
  CHECK(seen == std::map<std::string, int>{{"pong v1\n", 200}});
  CHECK(absl::StrContains(mesh.pilot().Client().Get("/metrics")->body,
                          "meshpilot_xds_unregistered_sidecars_total 1"));
}

TEST_CASE("A sidecar whose app stops accepting leaves load balancing, and returns with it") {
  Mesh mesh;
  mesh.Apply(kPongYaml);
  Mesh::Proxy& gateway = mesh.Gateway();
  mesh.Workload("pong-v1", "default", "app=pong,version=v1", 8080,
                {"--name", "pong", "--version", "v1"});
  Mesh::Proxy& v2 = mesh.Workload("pong-v2", "default", "app=pong,version=v2", 8080,
                                  {"--name", "pong", "--version", "v2"});
  REQUIRE(mesh.WaitReady());
  auto count = [&](int n) {
    std::map<std::string, int> seen;
    for (int i = 0; i < n; ++i) ++seen[HttpGet(gateway.port, "/").body];
    return seen;
  };
  REQUIRE(WaitFor([&] { return count(20).size() == 2; }, 10s));
  // (Polled: /debug/syncz can show a sidecar's first report a moment after EDS has the newer.)
  CHECK(WaitFor([&] { return mesh.pilot().Registrations()["pong-v2"] == "registered"; }, 10s));

  v2.app->Stop(SIGKILL);
  REQUIRE(WaitFor(
      [&] {
        return mesh.pilot().Registrations()["pong-v2"] ==
               absl::StrCat("registered, unhealthy: app port ", v2.port, " refuses connections");
      },
      10s));
  REQUIRE(WaitFor(
      [&] {
        return absl::StrContains(gateway.Admin("/stats/prometheus"),
                                 "meshproxy_eds_endpoints_unhealthy{cluster=\"outbound|8080||pong."
                                 "default.svc.cluster.local\"} 1");
      },
      10s));
  CHECK(count(100) == std::map<std::string, int>{{"pong v1\n", 100}});

  Process again({MESH_DEMO_APP_BIN, "--listen", absl::StrCat("127.0.0.1:", v2.port), "--name",
                 "pong", "--version", "v2"},
                mesh.dir() / "pong-v2-again.log");
  REQUIRE(WaitFor([&] { return mesh.pilot().Registrations()["pong-v2"] == "registered"; }, 10s));
  REQUIRE(WaitFor([&] { return count(20).count("pong v2\n") == 1; }, 10s));
}

}  // namespace
}  // namespace mesh::testing
