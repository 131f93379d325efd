#include "dataplane/router/router_stage.h"

#include <catch2/catch.hpp>

#include "envoy/config/cluster/v3/cluster.pb.h"
#include "envoy/config/route/v3/route.pb.h"
#include "google/protobuf/text_format.h"

namespace mesh::dataplane {
namespace {

RouteTablePtr Table(const std::string& text) {
  envoy::config::route::v3::RouteConfiguration rc;
  REQUIRE(google::protobuf::TextFormat::ParseFromString(text, &rc));
  auto t = RouteTable::FromProto(rc);
  INFO(t.status().message());
  REQUIRE(t.ok());
  return *t;
}

// Clusters "up" (one host) and "empty" (none).
std::shared_ptr<const ClusterTable> Clusters(uint32_t max_requests = 1024) {
  ProxyConfig config;
  for (const char* name : {"up", "empty"}) {
    envoy::config::cluster::v3::Cluster c;
    c.set_name(name);
    c.set_type(envoy::config::cluster::v3::Cluster::EDS);
    c.mutable_circuit_breakers()->add_thresholds()->mutable_max_requests()->set_value(max_requests);
    config.clusters[name] = c;
  }
  envoy::config::endpoint::v3::ClusterLoadAssignment cla;
  cla.set_cluster_name("up");
  auto* addr = cla.add_endpoints()
                   ->add_lb_endpoints()
                   ->mutable_endpoint()
                   ->mutable_address()
                   ->mutable_socket_address();
  addr->set_address("10.0.0.1");
  addr->set_port_value(8080);
  config.endpoints["up"] = cla;
  auto table = ClusterTable::Build(config, nullptr);
  INFO(table.status().message());
  REQUIRE(table.ok());
  return *table;
}

const char* kRoutes = R"(
  name: "http.80"
  virtual_hosts { name: "all" domains: "*"
    routes { name: "abort" match { prefix: "/abort" } route { cluster: "up" }
      typed_per_filter_config { key: "envoy.filters.http.fault" value {
        [type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault] {
          abort { grpc_status: 14 percentage { numerator: 100 } } } } } }
    routes { name: "slow" match { prefix: "/slow" } route { cluster: "up" }
      typed_per_filter_config { key: "envoy.filters.http.fault" value {
        [type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault] {
          delay { fixed_delay { seconds: 2 } percentage { numerator: 100 } } } } } }
    routes { name: "cors" match { prefix: "/cors" }
      route { cluster: "up" cors { allow_origin_string_match { prefix: "https://" }
                                   allow_methods: "GET" max_age: "60" } } }
    routes { name: "ghost" match { prefix: "/ghost" } route { cluster: "nowhere" } }
    routes { name: "empty" match { prefix: "/empty" } route { cluster: "empty" } }
    routes { name: "api" match { prefix: "/api/" }
      route { cluster: "up" prefix_rewrite: "/" host_rewrite_literal: "api.local" }
      request_headers_to_add { header { key: "x-route" value: "api" } } } })";

RequestHead Head(std::string method, std::string path,
                 std::initializer_list<std::pair<const char*, const char*>> fields = {}) {
  RequestHead head;
  head.method = std::move(method);
  head.authority = "shop";
  head.path = std::move(path);
  for (const auto& [k, v] : fields) head.headers.Add(k, v);
  return head;
}

uint64_t Zero() {
  return 0;
}

TEST_CASE("Router stage: local replies for no route, unknown clusters and empty ones") {
  RouteTablePtr routes = Table(kRoutes);
  auto clusters = Clusters();
  DownstreamInfo downstream;
  RequestHead none = Head("GET", "/nothing");
  RoutingResult r = RouteRequest(routes.get(), clusters.get(), none, downstream, Zero);
  REQUIRE(r.reply);
  CHECK(r.reply->status == 404);
  CHECK(r.reply->body == "no route for shop/nothing");
  // As a gRPC client sees it: 200, grpc-status 12 (UNIMPLEMENTED), the reason as grpc-message.
  RenderedReply grpc = Render(*r.reply, true);
  CHECK(grpc.status == 200);
  CHECK(grpc.headers[1] == std::pair<std::string, std::string>{"grpc-status", "12"});

  RequestHead ghost = Head("GET", "/ghost");
  r = RouteRequest(routes.get(), clusters.get(), ghost, downstream, Zero);
  REQUIRE(r.reply);
  CHECK(r.reply->status == 503);
  CHECK(r.reply->body == "cluster not found: nowhere");

  RequestHead empty = Head("GET", "/empty");
  r = RouteRequest(routes.get(), clusters.get(), empty, downstream, Zero);
  REQUIRE(r.reply);
  CHECK(r.reply->headers == HeaderPairs{{"x-meshproxy-reason", "no_healthy_upstream"}});
  CHECK(Render(*r.reply, true).headers[1] ==
        std::pair<std::string, std::string>{"grpc-status", "14"});

  RequestHead early = Head("GET", "/");
  r = RouteRequest(nullptr, clusters.get(), early, downstream, Zero);
  REQUIRE(r.reply);
  CHECK(r.reply->status == 503);  // the listener's routes have not arrived
}

TEST_CASE("Router stage: faults, CORS preflight and overflow are answered here") {
  RouteTablePtr routes = Table(kRoutes);
  auto clusters = Clusters();
  DownstreamInfo downstream;
  RequestHead abort = Head("POST", "/abort");
  RoutingResult r = RouteRequest(routes.get(), clusters.get(), abort, downstream, Zero);
  REQUIRE(r.reply);
  CHECK(r.reply->grpc_status == 14u);
  CHECK(Render(*r.reply, false).status == 503);  // a non-gRPC client gets the HTTP mapping

  RequestHead slow = Head("GET", "/slow");
  r = RouteRequest(routes.get(), clusters.get(), slow, downstream, Zero);
  CHECK_FALSE(r.reply);
  CHECK(r.delay == absl::Seconds(2));
  CHECK(r.cluster != nullptr);

  RequestHead preflight = Head(
      "OPTIONS", "/cors", {{"origin", "https://app"}, {"access-control-request-method", "GET"}});
  r = RouteRequest(routes.get(), clusters.get(), preflight, downstream, Zero);
  REQUIRE(r.reply);
  CHECK(r.reply->status == 200);
  CHECK(r.reply->headers == HeaderPairs{{"access-control-allow-origin", "https://app"},
                                        {"access-control-allow-methods", "GET"},
                                        {"access-control-max-age", "60"}});
  RequestHead simple = Head("GET", "/cors", {{"origin", "https://app"}});
  r = RouteRequest(routes.get(), clusters.get(), simple, downstream, Zero);
  CHECK_FALSE(r.reply);
  CHECK(r.response_headers == HeaderPairs{{"access-control-allow-origin", "https://app"}});

  auto full = Clusters(0);  // max_requests 0: every request overflows
  RequestHead any = Head("GET", "/api/x");
  r = RouteRequest(routes.get(), full.get(), any, downstream, Zero);
  REQUIRE(r.reply);
  CHECK(r.reply->headers == HeaderPairs{{"x-envoy-overloaded", "true"},
                                        {"x-meshproxy-reason", "overflow_max_requests"}});
}

TEST_CASE("Router stage: the head goes upstream rewritten, hop-by-hop fields gone") {
  RouteTablePtr routes = Table(kRoutes);
  auto clusters = Clusters();
  DownstreamInfo downstream;
  downstream.peer_ip = "10.1.1.1";
  downstream.tls = true;
  downstream.peer_identity = "spiffe://cluster.local/ns/a/sa/b";
  downstream.local_identity = "spiffe://cluster.local/ns/c/sa/d";
  RequestHead head = Head("POST", "/api/items?x=1",
                          {{"connection", "x-private, keep-alive"},
                           {"x-private", "1"},
                           {"keep-alive", "timeout=5"},
                           {"te", "trailers, deflate"},
                           {"x-forwarded-client-cert", "forged"},
                           {"x-forwarded-for", "1.2.3.4"}});
  RoutingResult r = RouteRequest(routes.get(), clusters.get(), head, downstream, Zero);
  REQUIRE_FALSE(r.reply);
  CHECK(r.cluster->name == "up");
  CHECK(head.path == "/items?x=1");
  CHECK(head.authority == "api.local");
  CHECK(head.headers.Get("connection") == nullptr);
  CHECK(head.headers.Get("x-private") == nullptr);
  CHECK(head.headers.Get("keep-alive") == nullptr);
  CHECK(*head.headers.Get("te") == "trailers");  // gRPC over HTTP/2 needs it
  CHECK(*head.headers.Get("x-route") == "api");
  CHECK(*head.headers.Get("x-forwarded-for") == "1.2.3.4, 10.1.1.1");
  CHECK(*head.headers.Get("x-forwarded-client-cert") ==
        "By=spiffe://cluster.local/ns/c/sa/d;URI=spiffe://cluster.local/ns/a/sa/b");
  CHECK(*head.headers.Get("x-forwarded-proto") == "https");

  // An upgrade keeps Upgrade (the codec writes Connection: upgrade itself); others lose it.
  HeaderMap upgrade;
  upgrade.Add("connection", "Upgrade");
  upgrade.Add("upgrade", "websocket");
  StripHopByHop(upgrade, true);
  CHECK(*upgrade.Get("upgrade") == "websocket");
  StripHopByHop(upgrade, false);
  CHECK(upgrade.empty());
}

}  // namespace
}  // namespace mesh::dataplane
