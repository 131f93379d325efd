#include "dataplane/config/route_table.h"

#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>

#include "controlplane/compiler/compiler.h"
#include "envoy/config/route/v3/route.pb.h"
#include "google/protobuf/text_format.h"
#include "test/support/service_fixture.h"
#include "test/support/voting_app.h"

namespace mesh::dataplane {
namespace {

envoy::config::route::v3::RouteConfiguration Parse(const std::string& text) {
  envoy::config::route::v3::RouteConfiguration rc;
  REQUIRE(google::protobuf::TextFormat::ParseFromString(text, &rc));
  return rc;
}

RouteTablePtr Table(const std::string& text) {
  auto t = RouteTable::FromProto(Parse(text));
  INFO(t.status().message());
  REQUIRE(t.ok());
  return *t;
}

std::string ClusterFor(const RouteTable& t, const RequestView& r, uint64_t draw = 0) {
  const Route* route = t.Match(r);
  if (!route) return "<404>";
  const WeightedTarget* target = route->Pick(draw);
  return target ? target->cluster : "<no target>";
}

TEST_CASE("Invalid route configs are refused with the field path, as a NACK's error_detail") {
  auto bad_regex = RouteTable::FromProto(Parse(R"(
    name: "http.80"
    virtual_hosts { name: "a" domains: "*"
      routes { match { safe_regex { regex: "(" } } route { cluster: "c" } } })"));
  CHECK(bad_regex.status().message() ==
        "route config http.80: virtual_hosts[0].routes[0].match.safe_regex.regex: invalid regex "
        "\"(\": missing ): (");
  auto bad_weights = RouteTable::FromProto(Parse(R"(
    name: "r"
    virtual_hosts { name: "a" domains: "*"
      routes { match { prefix: "/" } route { weighted_clusters {
        clusters { name: "a" weight { value: 80 } } clusters { name: "b" weight { value: 10 } } } } } })"));
  CHECK(bad_weights.status().message() ==
        "route config r: virtual_hosts[0].routes[0].route.weighted_clusters: weights sum to 90, "
        "not total_weight 100");
  auto no_action = RouteTable::FromProto(Parse(R"(
    name: "r" virtual_hosts { name: "a" routes { match { prefix: "/" } } })"));
  CHECK(no_action.status().message() ==
        "route config r: virtual_hosts[0].domains: at least one domain is required; "
        "virtual_hosts[0].routes[0]: an "
        "action (route, redirect or direct_response) is required");
}

TEST_CASE(
    "Virtual hosts are chosen as Envoy does: exact, longest *.suffix, longest prefix.*, then *") {
  RouteTablePtr t = Table(R"(
    name: "r"
    virtual_hosts { name: "exact" domains: "api.example.com" domains: "api.example.com:8080"
      routes { match { prefix: "/" } route { cluster: "exact" } } }
    virtual_hosts { name: "suffix" domains: "*.example.com" routes { match { prefix: "/" } route { cluster: "suffix" } } }
    virtual_hosts { name: "longer" domains: "*.eu.example.com" routes { match { prefix: "/" } route { cluster: "longer" } } }
    virtual_hosts { name: "prefix" domains: "api.*" routes { match { prefix: "/" } route { cluster: "prefix" } } }
    virtual_hosts { name: "star" domains: "*" routes { match { prefix: "/" } route { cluster: "star" } } })");
  CHECK(t->FindVirtualHost("api.example.com")->name == "exact");
  CHECK(t->FindVirtualHost("API.example.com:8080")->name == "exact");
  CHECK(t->FindVirtualHost("api.example.com:9999")->name ==
        "exact");  // also tried without the port
  CHECK(t->FindVirtualHost("www.example.com")->name == "suffix");
  CHECK(t->FindVirtualHost("x.eu.example.com")->name == "longer");
  CHECK(t->FindVirtualHost("api.other.org")->name == "prefix");
  CHECK(t->FindVirtualHost("elsewhere")->name == "star");
}

TEST_CASE(
    "Routes match on path, headers (including regex, presence and inversion), query and method, in "
    "order") {
  RouteTablePtr t = Table(R"(
    name: "r"
    virtual_hosts { name: "v" domains: "*"
      routes { match { prefix: "/" headers { name: "cookie" safe_regex_match { regex: "^(.*?; ?)?(featureflag=on)(;.*)?$" } } }
               route { cluster: "flag" } }
      routes { match { path: "/exact" } route { cluster: "exact" } }
      routes { match { prefix: "/API" case_sensitive { value: false } } route { cluster: "api" } }
      routes { match { safe_regex { regex: "/items/[0-9]+" } } route { cluster: "item" } }
      routes { match { prefix: "/" headers { name: "end-user" exact_match: "jason" } } route { cluster: "jason" } }
      routes { match { prefix: "/" headers { name: "x-debug" present_match: true } } route { cluster: "debug" } }
      routes { match { prefix: "/" headers { name: ":method" exact_match: "POST" } } route { cluster: "post" } }
      routes { match { prefix: "/" query_parameters { name: "v" string_match { exact: "2" } } } route { cluster: "query" } }
      routes { match { prefix: "/" headers { name: "x-beta" exact_match: "1" invert_match: true } } route { cluster: "not-beta" } }
      routes { match { prefix: "/" } direct_response { status: 418 } } })");
  auto req = [](absl::string_view path,
                std::vector<std::pair<absl::string_view, absl::string_view>> headers = {},
                absl::string_view method = "GET") {
    return RequestView{method, "host", path, std::move(headers)};
  };
  CHECK(ClusterFor(*t, req("/", {{"cookie", "a=1; featureflag=on; b=2"}})) == "flag");
  CHECK(ClusterFor(*t, req("/", {{"cookie", "featureflag=off"}}, "GET")) == "not-beta");
  CHECK(ClusterFor(*t, req("/exact?x=1")) == "exact");
  CHECK(ClusterFor(*t, req("/api/v1")) == "api");
  CHECK(ClusterFor(*t, req("/items/42")) == "item");
  CHECK(ClusterFor(*t, req("/items/x")) == "not-beta");
  CHECK(ClusterFor(*t, req("/", {{"end-user", "jason"}})) == "jason");
  CHECK(ClusterFor(*t, req("/", {{"x-debug", ""}})) == "debug");
  CHECK(ClusterFor(*t, req("/", {}, "POST")) == "post");
  CHECK(ClusterFor(*t, req("/?a=1&v=2")) == "query");
  CHECK(ClusterFor(*t, req("/", {{"x-beta", "1"}})) == "<no target>");  // the direct 418
  CHECK(t->Match(req("/", {{"x-beta", "1"}}))->direct_status == 418);
}

TEST_CASE("Weighted targets split by the draw in proportion to their weights") {
  RouteTablePtr t = Table(R"(
    name: "r"
    virtual_hosts { name: "v" domains: "*" routes { match { prefix: "/" } route { weighted_clusters {
      clusters { name: "v1" weight { value: 80 } } clusters { name: "v2" weight { value: 20 } } } } } })");
  std::map<std::string, int> counts;
  for (uint64_t draw = 0; draw < 1000; ++draw)
    ++counts[ClusterFor(*t, RequestView{"GET", "x", "/", {}}, draw)];
  CHECK(counts["v1"] == 800);
  CHECK(counts["v2"] == 200);
}

// Simulation, as Istio's sidecar simulation tests: the tutorial's manifests compiled by the
// control plane, then synthetic requests routed through the data plane's tables.
TEST_CASE("Simulation: the voting-app tutorial's step 3 routes requests where the tutorial says") {
  mesh::testing::ServiceFixture fx;
  model::ConfigSnapshotPtr config = mesh::testing::ApplyVotingApp(fx, MESH_MANIFESTS_DIR);
  registry::Registry reg = registry::Registry::Build(*config, {});
  auto table = [&](compiler::Role role, const model::Labels& labels, const std::string& name) {
    compiler::Resources res =
        compiler::Compile(*config, reg, compiler::ClassOf(*config, role, "voting", labels));
    envoy::config::route::v3::RouteConfiguration rc;
    REQUIRE(res.Of(compiler::kRouteType).count(name));
    REQUIRE(res.Of(compiler::kRouteType).at(name)->UnpackTo(&rc));
    return Table(rc.DebugString());
  };
  RouteTablePtr gateway = table(compiler::Role::kGateway, {{"istio", "ingressgateway"}}, "http.80");
  CHECK(ClusterFor(*gateway, RequestView{"GET", "20.1.2.3", "/", {{"cookie", "featureflag=on"}}}) ==
        "outbound|8080|v2-0|voting-app.voting.svc.cluster.local");
  CHECK(ClusterFor(*gateway, RequestView{"GET", "20.1.2.3", "/", {}}) ==
        "outbound|8080|v1-0|voting-app.voting.svc.cluster.local");

  RouteTablePtr app1 =
      table(compiler::Role::kSidecar, {{"app", "voting-app"}, {"version", "1.0"}}, "8080");
  RouteTablePtr app2 =
      table(compiler::Role::kSidecar, {{"app", "voting-app"}, {"version", "2.0"}}, "8080");
  RequestView analytics{"GET", "voting-analytics:8080", "/", {}};
  CHECK(ClusterFor(*app1, analytics) ==
        "outbound|8080|v1-1|voting-analytics.voting.svc.cluster.local");
  CHECK(ClusterFor(*app2, analytics) ==
        "outbound|8080|v2-0|voting-analytics.voting.svc.cluster.local");
}

}  // namespace
}  // namespace mesh::dataplane

namespace mesh::dataplane {
namespace {

TEST_CASE("Route policies compiled from a VirtualService arrive in the data plane's table") {
  mesh::testing::ServiceFixture fx;
  REQUIRE(fx.service
              ->Apply(R"(
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: shadow}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: web}
spec: {host: web, trafficPolicy: {loadBalancer: {consistentHash: {httpCookie: {name: session, ttl: 60s}}}}}
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web]
  http:
  - route: [{destination: {host: web}}]
    timeout: 3s
    retries: {attempts: 2, perTryTimeout: 500ms, retryOn: "5xx, connect-failure"}
    fault: {delay: {fixedDelay: 1s, percentage: {value: 25}}, abort: {httpStatus: 503, percentage: {value: 10}}}
    mirror: {host: shadow}
    mirrorPercentage: {value: 50}
    corsPolicy: {allowOrigins: [{prefix: "https://"}], allowMethods: [GET], allowCredentials: true}
)",
                      api::BodyFormat::kYaml, "default")
              .ok());
  model::ConfigSnapshotPtr config = fx.index->Current();
  registry::Registry reg = registry::Registry::Build(*config, {});
  compiler::Resources res =
      compiler::Compile(*config, reg, {compiler::Role::kProxyless, "default", {}, {}});
  envoy::config::route::v3::RouteConfiguration rc;
  REQUIRE(res.Of(compiler::kRouteType).at("web.default.svc.cluster.local:80")->UnpackTo(&rc));
  RouteTablePtr t = Table(rc.DebugString());
  const Route* r = t->Match(RequestView{"GET", "web", "/", {}});
  REQUIRE(r != nullptr);
  CHECK(*r->timeout == absl::Seconds(3));
  REQUIRE(r->retry.has_value());
  CHECK(r->retry->retry_on == std::vector<std::string>{"5xx", "connect-failure"});
  CHECK(r->retry->num_retries == 2);
  CHECK(*r->retry->per_try_timeout == absl::Milliseconds(500));
  REQUIRE(r->fault.has_value());
  CHECK(*r->fault->delay == absl::Seconds(1));
  CHECK(r->fault->delay_per_million == 250'000);
  CHECK(r->fault->abort_status == 503);
  CHECK(r->fault->abort_per_million == 100'000);
  REQUIRE(r->mirrors.size() == 1);
  CHECK(r->mirrors[0].cluster == "outbound|80||shadow.default.svc.cluster.local");
  CHECK(r->mirrors[0].per_million == 500'000);
  REQUIRE(r->hash_policies.size() == 1);
  CHECK(r->hash_policies[0].kind == HashPolicy::Kind::kCookie);
  CHECK(r->hash_policies[0].name == "session");
  CHECK(*r->hash_policies[0].cookie_ttl == absl::Seconds(60));
  REQUIRE(r->cors.has_value());
  CHECK(r->cors->allow_origins[0].kind == HeaderMatcher::Kind::kPrefix);
  CHECK(r->cors->allow_methods == "GET");
  CHECK(*r->cors->allow_credentials);
}

TEST_CASE("A VirtualService's gRPC fault abort compiles to grpc_status, which the table accepts") {
  // Before: compiled to abort {http_status: 0}, which the proxy refused with the whole route
  // config, leaving the port's listeners warming.
  mesh::testing::ServiceFixture fx;
  REQUIRE(fx.service
              ->Apply(R"(
apiVersion: v1
kind: Service
metadata: {name: rpc}
spec: {ports: [{name: grpc, port: 9000}]}
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: rpc}
spec:
  hosts: [rpc]
  http:
  - route: [{destination: {host: rpc}}]
    fault: {abort: {grpcStatus: UNAVAILABLE, percentage: {value: 100}}}
)",
                      api::BodyFormat::kYaml, "default")
              .ok());
  registry::Registry reg = registry::Registry::Build(*fx.index->Current(), {});
  compiler::Resources res =
      compiler::Compile(*fx.index->Current(), reg, {compiler::Role::kProxyless, "default", {}, {}});
  envoy::config::route::v3::RouteConfiguration rc;
  REQUIRE(res.Of(compiler::kRouteType).at("rpc.default.svc.cluster.local:9000")->UnpackTo(&rc));
  RouteTablePtr t = Table(rc.DebugString());
  const Route* r = t->Match(RequestView{"POST", "rpc", "/echo.Echo/Say", {}});
  REQUIRE(r != nullptr);
  REQUIRE(r->fault.has_value());
  CHECK(r->fault->abort_grpc_status == 14u);
  CHECK(r->fault->abort_status == 0);
  CHECK(r->fault->aborts());
  CHECK(r->fault->abort_per_million == 1'000'000);

  auto out_of_range = RouteTable::FromProto(Parse(R"(
    name: "r"
    virtual_hosts { name: "a" domains: "*"
      routes { match { prefix: "/" } route { cluster: "c" }
        typed_per_filter_config { key: "envoy.filters.http.fault" value {
          [type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault] {
            abort { grpc_status: 17 } } } } } })"));
  CHECK(out_of_range.status().message() ==
        "route config r: virtual_hosts[0].routes[0].typed_per_filter_config[envoy.filters.http."
        "fault].abort.grpc_status: must be a gRPC status code (0-16)");
}

}  // namespace
}  // namespace mesh::dataplane
