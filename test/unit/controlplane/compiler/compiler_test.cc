// Compiler table tests: manifests in, xDS (as JSON) out.
#include "controlplane/compiler/compiler.h"

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "envoy/config/cluster/v3/cluster.pb.h"
#include "nlohmann/json.hpp"
#include "test/support/config_fixture.h"
#include "test/support/service_fixture.h"
#include "test/support/voting_app.h"

namespace mesh::compiler {
namespace {

using nlohmann::json;

const std::string kTestdata =
    std::string(MESH_SOURCE_DIR) + "/test/unit/controlplane/compiler/testdata";

json CompileJson(const std::string& yaml, ProxyClass proxy = {Role::kProxyless, "default", {}, {}},
                 const MeshConfig& mesh = MeshConfig()) {
  auto config = testing::Config(yaml);
  registry::Registry reg = registry::Registry::Build(*config, {});
  Resources res = Compile(*config, reg, proxy, mesh);
  REQUIRE(CheckConsistency(res).ok());
  return json::parse(ToJson(res));
}

const char* kCanary = R"(
apiVersion: v1
kind: Service
metadata: {name: echo}
spec: {selector: {app: echo}, ports: [{name: grpc, port: 9000}]}
---
apiVersion: networking.istio.io/v1beta1
kind: WorkloadEntry
metadata: {name: echo-v1}
spec: {address: 10.0.0.1, ports: {grpc: 7001}, labels: {app: echo, version: v1}}
---
apiVersion: networking.istio.io/v1beta1
kind: WorkloadEntry
metadata: {name: echo-v2}
spec: {address: 10.0.0.2, ports: {grpc: 7002}, labels: {app: echo, version: v2}, locality: us/east/a}
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: echo}
spec:
  host: echo
  trafficPolicy:
    loadBalancer: {simple: LEAST_REQUEST}
    connectionPool: {tcp: {maxConnections: 10, connectTimeout: 250ms}, http: {http1MaxPendingRequests: 5}}
    outlierDetection: {consecutive5xxErrors: 3, interval: 1s, baseEjectionTime: 30s, maxEjectionPercent: 50}
  subsets:
  - {name: v1, labels: {version: v1}}
  - name: v2
    labels: {version: v2}
    trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-user}}}
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: echo}
spec:
  hosts: [echo]
  http:
  - name: jason
    match:
    - headers: {end-user: {exact: jason}, cookie: {regex: "^(.*?; ?)?(featureflag=on)(;.*)?$"}}
      uri: {prefix: /api}
      queryParams: {debug: {exact: "1"}}
    route: [{destination: {host: echo, subset: v2}}]
    timeout: 2s
    retries: {attempts: 3, perTryTimeout: 500ms, retryOn: "5xx,connect-failure"}
  - route:
    - {destination: {host: echo, subset: v1}, weight: 80}
    - {destination: {host: echo, subset: v2}, weight: 20}
)";

TEST_CASE("The canary table: routes, weights, clusters and endpoints match the golden JSON") {
  json got = CompileJson(kCanary);
  std::string golden_path = kTestdata + "/canary.json";
  if (std::getenv("MESH_UPDATE_GOLDEN")) {
    std::ofstream(golden_path) << got.dump(2) << "\n";
  }
  json want = json::parse(mesh::testing::ReadText(golden_path));
  CHECK(got == want);
}

TEST_CASE("Routes carry the VirtualService's matches and actions field by field") {
  json got = CompileJson(kCanary);
  const json& rc = got[kRouteType]["echo.default.svc.cluster.local:9000"];
  const json& vh = rc["virtual_hosts"][0];
  CHECK(vh["domains"] ==
        json({"echo.default.svc.cluster.local", "echo.default.svc.cluster.local:9000",
              "echo.default.svc", "echo.default.svc:9000", "echo.default", "echo.default:9000",
              "echo", "echo:9000"}));
  const json& first = vh["routes"][0];
  CHECK(first["name"] == "jason");
  CHECK(first["match"]["prefix"] == "/api");
  // gRPC 1.51 rejects HeaderMatcher.string_match, so the older one-of fields are used.
  CHECK(first["match"]["headers"][0] ==
        json({{"name", "cookie"},
              {"safe_regex_match",
               {{"google_re2", json::object()}, {"regex", "^(.*?; ?)?(featureflag=on)(;.*)?$"}}}}));
  CHECK(first["match"]["headers"][1] == json({{"name", "end-user"}, {"exact_match", "jason"}}));
  CHECK(first["match"]["query_parameters"][0] ==
        json({{"name", "debug"}, {"string_match", {{"exact", "1"}}}}));
  CHECK(first["route"]["cluster"] == "outbound|9000|v2|echo.default.svc.cluster.local");
  CHECK(first["route"]["timeout"] == "2s");
  CHECK(first["route"]["retry_policy"]["retry_on"] == "5xx,connect-failure");
  CHECK(first["route"]["retry_policy"]["num_retries"] == 3);
  CHECK(first["route"]["retry_policy"]["per_try_timeout"] == "0.500s");
  const json& weighted = vh["routes"][1]["route"]["weighted_clusters"];
  CHECK(weighted["total_weight"] == 100);
  CHECK(weighted["clusters"][0] ==
        json({{"name", "outbound|9000|v1|echo.default.svc.cluster.local"}, {"weight", 80}}));
  CHECK(weighted["clusters"][1]["weight"] == 20);
}

TEST_CASE("Clusters carry the DestinationRule's policies, subsets overriding the top level") {
  json got = CompileJson(kCanary);
  const json& whole = got[kClusterType]["outbound|9000||echo.default.svc.cluster.local"];
  CHECK(whole["type"] == "EDS");
  CHECK(whole["eds_cluster_config"]["service_name"] ==
        "outbound|9000||echo.default.svc.cluster.local");
  CHECK(whole["lb_policy"] == "LEAST_REQUEST");
  CHECK(whole["connect_timeout"] == "0.250s");
  CHECK(whole["circuit_breakers"]["thresholds"][0]["max_connections"] == 10);
  CHECK(whole["circuit_breakers"]["thresholds"][0]["max_pending_requests"] == 5);
  CHECK(whole["outlier_detection"]["consecutive_5xx"] == 3);
  CHECK(whole["outlier_detection"]["max_ejection_percent"] == 50);
  const json& v2 = got[kClusterType]["outbound|9000|v2|echo.default.svc.cluster.local"];
  CHECK(v2["lb_policy"] == "RING_HASH");
  CHECK(v2["outlier_detection"]["consecutive_5xx"] == 3);  // inherited from the top level
}

TEST_CASE("Port-level settings override the top level for their port, subsets override both") {
  json got = CompileJson(R"(
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {selector: {app: web}, ports: [{name: http, port: 8080}, {name: http-admin, port: 9090}]}
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: web}
spec:
  host: web
  trafficPolicy:
    loadBalancer: {simple: RANDOM}
    connectionPool: {http: {idleTimeout: 30s, maxRequestsPerConnection: 10}}
    portLevelSettings:
    - port: {number: 9090}
      loadBalancer: {simple: LEAST_REQUEST}
  subsets:
  - name: v2
    labels: {version: v2}
    trafficPolicy:
      loadBalancer: {simple: ROUND_ROBIN}
)");
  auto cluster = [&](const std::string& name) { return got[kClusterType][name]; };
  CHECK(cluster("outbound|8080||web.default.svc.cluster.local")["lb_policy"] == "RANDOM");
  CHECK(cluster("outbound|9090||web.default.svc.cluster.local")["lb_policy"] == "LEAST_REQUEST");
  CHECK(!cluster("outbound|8080|v2|web.default.svc.cluster.local").contains("lb_policy"));
  json options = cluster("outbound|8080||web.default.svc.cluster.local")
      ["typed_extension_protocol_options"]
      ["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"];
  CHECK(options["common_http_protocol_options"]["idle_timeout"] == "30s");
  CHECK(options["common_http_protocol_options"]["max_requests_per_connection"] == 10);
  CHECK(options["explicit_http_config"] == json({{"http_protocol_options", json::object()}}));
}

TEST_CASE(
    "The upstream protocol follows Istio: HTTP/2 for grpc and http2 ports, on UPGRADE, "
    "and the client's under useClientProtocol") {
  json got = CompileJson(R"(
apiVersion: v1
kind: Service
metadata: {name: rpc}
spec:
  ports:
  - {name: grpc, port: 9000}
  - {name: web, port: 8080, appProtocol: http2}
  - {name: http, port: 80}
  - {name: tcp-db, port: 5432}
---
apiVersion: v1
kind: Service
metadata: {name: up}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: up}
spec:
  host: up
  trafficPolicy: {connectionPool: {http: {h2UpgradePolicy: UPGRADE, maxConcurrentStreams: 50}}}
  subsets:
  - name: mirror
    labels: {v: m}
    trafficPolicy: {connectionPool: {http: {useClientProtocol: true}}}
)");
  const std::string kOptions = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
  auto options = [&](const std::string& cluster) {
    const json& c = got[kClusterType][cluster];
    return c.contains("typed_extension_protocol_options")
               ? c["typed_extension_protocol_options"][kOptions]
               : json();
  };
  CHECK(options("outbound|9000||rpc.default.svc.cluster.local")["explicit_http_config"] ==
        json({{"http2_protocol_options", json::object()}}));
  CHECK(options("outbound|8080||rpc.default.svc.cluster.local")["explicit_http_config"] ==
        json({{"http2_protocol_options", json::object()}}));
  CHECK(options("outbound|80||rpc.default.svc.cluster.local").is_null());
  CHECK(options("outbound|5432||rpc.default.svc.cluster.local").is_null());
  CHECK(options("outbound|80||up.default.svc.cluster.local")["explicit_http_config"] ==
        json({{"http2_protocol_options", {{"max_concurrent_streams", 50}}}}));
  CHECK(options("outbound|80|mirror|up.default.svc.cluster.local")
            .contains("use_downstream_protocol_config"));
}

TEST_CASE("connectionPool.tcp.idleTimeout becomes the TCP proxy's idle timeout") {
  json got = CompileJson(R"(
apiVersion: v1
kind: Service
metadata: {name: storage}
spec: {selector: {app: storage}, ports: [{name: redis, port: 6379}]}
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: storage}
spec:
  host: storage
  trafficPolicy:
    connectionPool: {tcp: {idleTimeout: 30s}}
)",
                         {Role::kSidecar, "default", {}, {}});
  const json& tcp =
      got[kListenerType]["0.0.0.0_6379"]["filter_chains"][0]["filters"][0]["typed_config"];
  CHECK(tcp["cluster"] == "outbound|6379||storage.default.svc.cluster.local");
  CHECK(tcp["idle_timeout"] == "30s");
}

TEST_CASE("Inbound listeners carry the mTLS mode: STRICT one TLS chain, PERMISSIVE two") {
  const std::string services =
      "apiVersion: v1\nkind: Service\nmetadata: {name: web}\n"
      "spec: {selector: {app: web}, ports: [{name: http, port: 8080}]}\n";
  ProxyClass proxy{Role::kSidecar, "default", {{"app", "web"}}, {{8080, 18080, 9080}}};
  auto chains = [&](const std::string& extra) {
    json got = CompileJson(services + extra, proxy);
    return got[kListenerType]["inbound|18080"]["filter_chains"];
  };
  json permissive = chains("");
  REQUIRE(permissive.size() == 2);
  CHECK(permissive[0]["filter_chain_match"]["transport_protocol"] == "tls");
  CHECK(permissive[0]["transport_socket"]["typed_config"]["require_client_certificate"] == true);
  CHECK(!permissive[1].contains("transport_socket"));
  json strict = chains(
      "---\napiVersion: security.istio.io/v1beta1\nkind: PeerAuthentication\n"
      "metadata: {name: default}\nspec: {mtls: {mode: STRICT}}\n");
  REQUIRE(strict.size() == 1);
  CHECK(strict[0].contains("transport_socket"));
  json disabled = chains(
      "---\napiVersion: security.istio.io/v1beta1\nkind: PeerAuthentication\n"
      "metadata: {name: default}\nspec: {mtls: {mode: DISABLE}}\n");
  REQUIRE(disabled.size() == 1);
  CHECK(!disabled[0].contains("transport_socket"));
}

TEST_CASE("Load assignments filter endpoints by subset labels, each locality weighted") {
  json got = CompileJson(kCanary);
  const json& v1 = got[kEndpointType]["outbound|9000|v1|echo.default.svc.cluster.local"];
  REQUIRE(v1["endpoints"].size() == 1);
  CHECK(v1["endpoints"][0]["locality"] == json::object());
  CHECK(v1["endpoints"][0]["load_balancing_weight"] == 1);
  CHECK(v1["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"] ==
        json({{"address", "10.0.0.1"}, {"port_value", 7001}}));
  const json& v2 = got[kEndpointType]["outbound|9000|v2|echo.default.svc.cluster.local"];
  CHECK(v2["endpoints"][0]["locality"] ==
        json({{"region", "us"}, {"zone", "east"}, {"sub_zone", "a"}}));
  CHECK(got[kEndpointType]["outbound|9000||echo.default.svc.cluster.local"]["endpoints"].size() ==
        2);
}

TEST_CASE("Proxyless listeners carry an api_listener that names their route config over ADS") {
  json got = CompileJson(kCanary);
  const json& l = got[kListenerType]["echo.default.svc.cluster.local:9000"];
  const json& hcm = l["api_listener"]["api_listener"];
  CHECK(hcm["@type"] ==
        "type.googleapis.com/"
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager");
  CHECK(hcm["rds"]["route_config_name"] == "echo.default.svc.cluster.local:9000");
  CHECK(hcm["rds"]["config_source"] ==
        json({{"ads", json::object()}, {"resource_api_version", "V3"}}));
  CHECK(hcm["http_filters"].back()["typed_config"]["@type"] ==
        "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router");
}

TEST_CASE("Without a VirtualService a service gets one route to its whole cluster") {
  json got = CompileJson(
      "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {ports: [{port: 80, name: "
      "http}]}\n");
  const json& routes =
      got[kRouteType]["web.default.svc.cluster.local:80"]["virtual_hosts"][0]["routes"];
  REQUIRE(routes.size() == 1);
  CHECK(routes[0]["route"]["cluster"] == "outbound|80||web.default.svc.cluster.local");
}

TEST_CASE("sourceLabels routes apply only to proxies of the matching class") {
  std::string yaml = R"(
apiVersion: v1
kind: Service
metadata: {name: voting-analytics, namespace: voting}
spec: {selector: {app: voting-analytics}, ports: [{name: http, port: 8080}]}
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: voting-analytics, namespace: voting}
spec:
  host: voting-analytics.voting.svc.cluster.local
  subsets: [{name: v1-1, labels: {version: "1.1"}}, {name: v2-0, labels: {version: "2.0"}}]
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: voting-analytics, namespace: voting}
spec:
  hosts: [voting-analytics.voting.svc.cluster.local]
  http:
  - match: [{sourceLabels: {app: voting-app, version: "1.0"}}]
    route: [{destination: {host: voting-analytics.voting.svc.cluster.local, subset: v1-1}}]
  - match: [{sourceLabels: {app: voting-app, version: "2.0"}}]
    route: [{destination: {host: voting-analytics.voting.svc.cluster.local, subset: v2-0}}]
)";
  auto config = testing::Config(yaml);
  registry::Registry reg = registry::Registry::Build(*config, {});
  ProxyClass v1 = ClassOf(*config, Role::kProxyless, "voting",
                          {{"app", "voting-app"}, {"version", "1.0"}, {"pod", "a"}});
  ProxyClass v2 =
      ClassOf(*config, Role::kProxyless, "voting", {{"app", "voting-app"}, {"version", "2.0"}});
  CHECK(v1.labels ==
        model::Labels{{"app", "voting-app"}, {"version", "1.0"}});  // "pod" plays no part
  auto route_of = [&](const ProxyClass& p) {
    json j = json::parse(ToJson(Compile(*config, reg, p)));
    return j[kRouteType]["voting-analytics.voting.svc.cluster.local:8080"]["virtual_hosts"][0]
            ["routes"];
  };
  CHECK(route_of(v1)[0]["route"]["cluster"] ==
        "outbound|8080|v1-1|voting-analytics.voting.svc.cluster.local");
  CHECK(route_of(v2)[0]["route"]["cluster"] ==
        "outbound|8080|v2-0|voting-analytics.voting.svc.cluster.local");
  // A proxy no rule selects gets the default route.
  CHECK(route_of({Role::kProxyless, "voting", {}, {}})[0]["route"]["cluster"] ==
        "outbound|8080||voting-analytics.voting.svc.cluster.local");
}

TEST_CASE("Every step of the voting-app tutorial compiles into a consistent set of resources") {
  const std::string m = MESH_MANIFESTS_DIR;
  mesh::testing::ServiceFixture fx;
  for (size_t step = 1; step <= mesh::testing::VotingAppSteps().size(); ++step) {
    // The tutorial applies everything into the voting namespace, file by file.
    model::ConfigSnapshotPtr config = mesh::testing::ApplyVotingAppStep(fx, m, step);
    registry::Registry reg = registry::Registry::Build(*config, {});
    for (const ProxyClass& p : {ProxyClass{Role::kProxyless, "voting", {}, {}},
                                ClassOf(*config, Role::kProxyless, "voting",
                                        {{"app", "voting-app"}, {"version", "2.0"}})}) {
      Resources res = Compile(*config, reg, p);
      INFO(p.ToString());
      CHECK(CheckConsistency(res).ok());
      CHECK(res.Of(kClusterType).count("outbound|8080|v1-0|voting-app.voting.svc.cluster.local") ==
            (step == 1 ? 0u : 1u));
    }
  }
}

TEST_CASE("The consistency check names what is missing") {
  Resources res;
  envoy::config::cluster::v3::Cluster c;  // an EDS cluster with no load assignment
  c.set_name("outbound|80||a");
  c.set_type(envoy::config::cluster::v3::Cluster::EDS);
  c.mutable_eds_cluster_config()->set_service_name("outbound|80||a");
  auto any = std::make_shared<google::protobuf::Any>();
  any->PackFrom(c);
  res.by_type[kClusterType]["outbound|80||a"] = any;
  absl::Status s = CheckConsistency(res);
  CHECK(s.message() == "cluster outbound|80||a has no load assignment");
}

}  // namespace
}  // namespace mesh::compiler

namespace mesh::compiler {
namespace {

TEST_CASE("An incremental compile equals a full one and rebuilds only the changed service") {
  mesh::testing::ServiceFixture fx;
  std::string yaml;
  for (int i = 0; i < 5; ++i) {
    yaml += absl::StrCat(
        "---\napiVersion: v1\nkind: Service\nmetadata: {name: s", i,
        "}\nspec: {ports: [{name: http, port: 80}]}\n---\napiVersion: networking.istio.io/v1beta1\n"
        "kind: VirtualService\nmetadata: {name: s",
        i, "}\nspec: {hosts: [s", i, "], http: [{route: [{destination: {host: s", i,
        "}}], timeout: 1s}]}\n");
  }
  REQUIRE(fx.service->Apply(yaml, api::BodyFormat::kYaml, "default").ok());
  ProxyClass proxy{Role::kProxyless, "default", {}, {}};
  CompileCache cache;
  auto compile = [&](CompileCache* c) {
    model::ConfigSnapshotPtr config = fx.index->Current();
    registry::Registry reg = registry::Registry::Build(*config, {});
    return ToJson(Compile(config, reg, proxy, c));
  };
  std::string first = compile(&cache);
  CHECK(cache.reused() == 0);
  CHECK(compile(&cache) == first);
  CHECK(cache.reused() == 5);
  REQUIRE(
      fx.service
          ->Apply(
              "apiVersion: networking.istio.io/v1beta1\nkind: VirtualService\nmetadata: {name: "
              "s2}\n"
              "spec: {hosts: [s2], http: [{route: [{destination: {host: s2}}], timeout: 3s}]}\n",
              api::BodyFormat::kYaml, "default")
          .ok());
  std::string incremental = compile(&cache);
  CHECK(cache.reused() == 4);
  CHECK(incremental == compile(nullptr));
  CHECK(incremental != first);
  // A new service port rebuilds every cached route (their ports may depend on it) but reuses the
  // rest of each service.
  REQUIRE(fx.service
              ->Apply("apiVersion: v1\nkind: Service\nmetadata: {name: s9}\nspec: {ports: [{name: "
                      "http, port: 80}]}\n",
                      api::BodyFormat::kYaml, "default")
              .ok());
  CHECK(compile(&cache) == compile(nullptr));
  CHECK(cache.reused() == 5);
}

}  // namespace
}  // namespace mesh::compiler

namespace mesh::compiler {
namespace {

// The voting-app tutorial through step 3, applied into "voting" as the tutorial does.
model::ConfigSnapshotPtr VotingAppStep3(mesh::testing::ServiceFixture& fx) {
  return mesh::testing::ApplyVotingApp(fx, MESH_MANIFESTS_DIR);
}

json CompileFor(const model::ConfigSnapshotPtr& config, ProxyClass proxy) {
  registry::Registry reg = registry::Registry::Build(*config, {});
  Resources res = Compile(*config, reg, proxy);
  INFO(CheckConsistency(res).message());
  CHECK(CheckConsistency(res).ok());
  return json::parse(ToJson(res));
}

TEST_CASE(
    "The ingress gateway gets a listener per server port, routed by the VirtualServices bound to "
    "it") {
  mesh::testing::ServiceFixture fx;
  model::ConfigSnapshotPtr config = VotingAppStep3(fx);
  ProxyClass gw =
      ClassOf(*config, Role::kGateway, "istio-system", {{"istio", "ingressgateway"}, {"pod", "x"}});
  CHECK(gw.labels == model::Labels{{"istio", "ingressgateway"}});
  json got = CompileFor(config, gw);
  const json& l = got[kListenerType]["0.0.0.0_80"];
  CHECK(l["address"]["socket_address"] == json({{"address", "0.0.0.0"}, {"port_value", 80}}));
  CHECK(l["filter_chains"][0]["filters"][0]["typed_config"]["rds"]["route_config_name"] ==
        "http.80");
  const json& vh = got[kRouteType]["http.80"]["virtual_hosts"][0];
  CHECK(vh["domains"] == json({"*"}));
  CHECK(vh["routes"][0]["match"]["headers"][0]["safe_regex_match"]["regex"] ==
        "^(.*?; ?)?(featureflag=on)(;.*)?$");
  CHECK(vh["routes"][0]["route"]["cluster"] ==
        "outbound|8080|v2-0|voting-app.voting.svc.cluster.local");
  CHECK(vh["routes"][1]["route"]["cluster"] ==
        "outbound|8080|v1-0|voting-app.voting.svc.cluster.local");
  // The gateway gets no sidecar listeners, and a proxy the Gateway does not select gets nothing.
  CHECK(!got[kListenerType].contains("virtualOutbound"));
  json other = CompileFor(
      config, ClassOf(*config, Role::kGateway, "istio-system", {{"istio", "egressgateway"}}));
  CHECK(other[kListenerType].empty());
}

TEST_CASE(
    "Sidecars get outbound listeners routed for their class, TCP by sourceLabels, and inbound to "
    "the app") {
  mesh::testing::ServiceFixture fx;
  model::ConfigSnapshotPtr config = VotingAppStep3(fx);
  auto sidecar = [&](const std::string& version, uint32_t listen) {
    ProxyClass p =
        ClassOf(*config, Role::kSidecar, "voting", {{"app", "voting-app"}, {"version", version}});
    p.inbound = {{8080, listen, 0}};
    return CompileFor(config, p);
  };
  json v1 = sidecar("1.0", 18081);
  // The HTTP proxy listener knows every HTTP service, by name with and without its only port.
  const json& vo = v1[kRouteType]["virtualOutbound"]["virtual_hosts"];
  bool found = false;
  for (const json& vh : vo) {
    if (vh["name"] != "voting-analytics.voting.svc.cluster.local:8080") continue;
    found = true;
    CHECK(std::find(vh["domains"].begin(), vh["domains"].end(), "voting-analytics") !=
          vh["domains"].end());
    CHECK(std::find(vh["domains"].begin(), vh["domains"].end(), "voting-analytics:8080") !=
          vh["domains"].end());
    CHECK(vh["routes"][0]["route"]["cluster"] ==
          "outbound|8080|v1-1|voting-analytics.voting.svc.cluster.local");
  }
  CHECK(found);
  CHECK(v1[kListenerType]["0.0.0.0_8080"]["filter_chains"][0]["filters"][0]["typed_config"]["rds"]
          ["route_config_name"] == "8080");
  // Redis for 1.0, MariaDB for 2.0: the tutorial's storage routes by source labels.
  const json& redis = v1[kListenerType]["0.0.0.0_6379"]["filter_chains"][0]["filters"][0];
  CHECK(redis["name"] == "envoy.filters.network.tcp_proxy");
  CHECK(redis["typed_config"]["cluster"] ==
        "outbound|6379|v1-0|voting-storage.voting.svc.cluster.local");
  json v2 = sidecar("2.0", 18082);
  CHECK(v2[kListenerType]["0.0.0.0_3306"]["filter_chains"][0]["filters"][0]["typed_config"]
          ["cluster"] == "outbound|3306|v2-0|voting-storage.voting.svc.cluster.local");
  // Inbound: the service port's traffic arrives on the listen port and goes to the local app.
  const json& inbound = v1[kListenerType]["inbound|18081"];
  CHECK(inbound["address"]["socket_address"]["port_value"] == 18081);
  CHECK(inbound["traffic_direction"] == "INBOUND");
  const json& hcm = inbound["filter_chains"][0]["filters"][0]["typed_config"];
  CHECK(hcm["route_config"]["virtual_hosts"][0]["routes"][0]["route"]["cluster"] ==
        "inbound|18081||");
  const json& app = v1[kClusterType]["inbound|18081||"];
  CHECK(app["type"] == "STATIC");
  CHECK(app["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
           ["socket_address"] == json({{"address", "127.0.0.1"}, {"port_value", 8080}}));
}

}  // namespace
}  // namespace mesh::compiler

namespace mesh::compiler {
namespace {

TEST_CASE("DestinationRule TLS becomes the cluster's transport socket") {
  json got = CompileJson(R"(
apiVersion: v1
kind: Service
metadata: {name: a}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: a}
spec:
  host: a
  trafficPolicy:
    tls: {mode: ISTIO_MUTUAL, subjectAltNames: ["spiffe://cluster.local/ns/default/sa/a"]}
  subsets:
  - name: ext
    trafficPolicy:
      tls: {mode: MUTUAL, clientCertificate: /certs/c.pem, privateKey: /certs/k.pem, caCertificates: /certs/ca.pem}
)");
  const json& mesh_tls =
      got[kClusterType]["outbound|80||a.default.svc.cluster.local"]["transport_socket"];
  CHECK(mesh_tls["name"] == "envoy.transport_sockets.tls");
  const json& common = mesh_tls["typed_config"]["common_tls_context"];
  CHECK(common["tls_certificate_sds_secret_configs"][0]["name"] == "default");
  CHECK(common["combined_validation_context"]["validation_context_sds_secret_config"]["name"] ==
        "ROOTCA");
  CHECK(common["combined_validation_context"]["default_validation_context"]
              ["match_typed_subject_alt_names"][0] ==
        json({{"san_type", "URI"},
              {"matcher", {{"exact", "spiffe://cluster.local/ns/default/sa/a"}}}}));
  const json& files = got[kClusterType]["outbound|80|ext|a.default.svc.cluster.local"]
                         ["transport_socket"]["typed_config"];
  CHECK(files["common_tls_context"]["tls_certificates"][0]["certificate_chain"]["filename"] ==
        "/certs/c.pem");
  CHECK(files["common_tls_context"]["validation_context"]["trusted_ca"]["filename"] ==
        "/certs/ca.pem");
}

TEST_CASE("Fault injection and CORS become per-route configuration") {
  json got = CompileJson(R"(
apiVersion: v1
kind: Service
metadata: {name: a}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: a}
spec:
  hosts: [a]
  http:
  - route: [{destination: {host: a}}]
    fault:
      delay: {fixedDelay: 7s, percentage: {value: 50}}
      abort: {httpStatus: 503, percentage: {value: 0.1}}
    corsPolicy: {allowOrigins: [{exact: "https://example.com"}], allowMethods: [GET, POST], maxAge: 24h}
)");
  const json& r =
      got[kRouteType]["a.default.svc.cluster.local:80"]["virtual_hosts"][0]["routes"][0];
  const json& fault = r["typed_per_filter_config"]["envoy.filters.http.fault"];
  CHECK(fault["delay"]["fixed_delay"] == "7s");
  CHECK(fault["delay"]["percentage"] == json({{"numerator", 500000}, {"denominator", "MILLION"}}));
  CHECK(fault["abort"]["http_status"] == 503);
  CHECK(fault["abort"]["percentage"]["numerator"] == 1000);
  CHECK(r["route"]["cors"]["allow_origin_string_match"][0]["exact"] == "https://example.com");
  CHECK(r["route"]["cors"]["allow_methods"] == "GET,POST");
  CHECK(r["route"]["cors"]["max_age"] == "86400");
}

TEST_CASE("Istio's default retry policy applies where a route is silent, attempts 0 turns it off") {
  const std::string yaml = R"(
apiVersion: v1
kind: Service
metadata: {name: echo}
spec: {selector: {app: echo}, ports: [{name: grpc, port: 9000}]}
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: echo}
spec:
  hosts: [echo]
  http:
  - name: silent
    match: [{headers: {x: {exact: "1"}}}]
    route: [{destination: {host: echo}}]
  - name: off
    match: [{headers: {x: {exact: "2"}}}]
    retries: {attempts: 0}
    route: [{destination: {host: echo}}]
  - name: codes
    retries: {attempts: 4, retryOn: "503,504,connect-failure"}
    route: [{destination: {host: echo}}]
)";
  auto routes = [](const json& got) {
    std::map<std::string, json> out;
    for (const json& r :
         got[kRouteType]["echo.default.svc.cluster.local:9000"]["virtual_hosts"][0]["routes"])
      out[r["name"]] = r["route"].value("retry_policy", json());
    return out;
  };
  std::map<std::string, json> policy = routes(CompileJson(yaml));
  CHECK(policy["silent"] ==
        json({{"num_retries", 2},
              {"retriable_status_codes", {503}},
              {"retry_on",
               "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"}}));
  CHECK(policy["off"].is_null());
  CHECK(policy["codes"] == json({{"num_retries", 4},
                                 {"retriable_status_codes", {503, 504}},
                                 {"retry_on", "connect-failure,retriable-status-codes"}}));
  // Mesh-wide: another default, or none.
  MeshConfig mesh;
  mesh.default_http_retry->attempts = 5;
  mesh.default_http_retry->retry_on = "gateway-error";
  policy = routes(CompileJson(yaml, {Role::kProxyless, "default", {}, {}}, mesh));
  CHECK(policy["silent"] == json({{"num_retries", 5}, {"retry_on", "gateway-error"}}));
  CHECK(policy["off"].is_null());
  mesh.default_http_retry.reset();
  policy = routes(CompileJson(yaml, {Role::kProxyless, "default", {}, {}}, mesh));
  CHECK(policy["silent"].is_null());
  CHECK(policy["codes"]["num_retries"] == 4);
}

}  // namespace
}  // namespace mesh::compiler

namespace mesh::compiler {
namespace {

TEST_CASE("VirtualServices bound to one gateway for one host are merged, oldest first") {
  testing::ServiceFixture fx;
  auto apply = [&](const std::string& yaml) {
    auto r = fx.service->Apply(yaml, api::BodyFormat::kYaml, "default");
    INFO(r.status().message());
    REQUIRE(r.ok());
  };
  apply(R"(
apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: {name: gw}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: v1
kind: Service
metadata: {name: reviews}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: ratings}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: z-older}
spec:
  hosts: ["*"]
  gateways: [gw]
  http: [{match: [{uri: {prefix: /reviews}}], route: [{destination: {host: reviews}}]}]
)");
  // creationTimestamp has whole seconds, as in Kubernetes; within one second the name decides.
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  apply(R"(
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: a-newer}
spec:
  hosts: ["*"]
  gateways: [gw]
  http: [{match: [{uri: {prefix: /ratings}}], route: [{destination: {host: ratings}}]}]
)");
  auto config = fx.index->Current();
  registry::Registry reg = registry::Registry::Build(*config, {});
  Resources res =
      Compile(*config, reg, {Role::kGateway, "default", {{"istio", "ingressgateway"}}, {}}, {});
  json got = json::parse(ToJson(res));
  const json& vhosts = got[kRouteType]["http.80"]["virtual_hosts"];
  REQUIRE(vhosts.size() == 1);  // one host, both VirtualServices in it
  const json& routes = vhosts[0]["routes"];
  REQUIRE(routes.size() == 2);
  CHECK(routes[0]["match"]["prefix"] == "/reviews");  // created first, though named last
  CHECK(routes[1]["match"]["prefix"] == "/ratings");
}

}  // namespace
}  // namespace mesh::compiler
