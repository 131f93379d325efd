#include "dataplane/router/router.h"

#include <catch2/catch.hpp>

#include "dataplane/upstream/cluster_table.h"
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

const char* kRoutes = R"(
  name: "http.80"
  virtual_hosts { name: "all" domains: "*"
    routes { name: "moved" match { prefix: "/old" }
             redirect { host_redirect: "example.com" prefix_rewrite: "/new" } }
    routes { name: "teapot" match { path: "/tea" } direct_response { status: 418 } }
    routes { name: "api" match { prefix: "/api/" }
             route { cluster: "api" prefix_rewrite: "/" host_rewrite_literal: "api.local" } }
    routes { name: "split" match { prefix: "/" }
             route { weighted_clusters {
               clusters { name: "v1" weight { value: 80 } }
               clusters { name: "v2" weight { value: 20 } } }
               hash_policy { header { header_name: "x-user" } } } } })";

TEST_CASE("Decide: redirect, direct response, forward with a weighted pick, and no route") {
  RouteTablePtr t = Table(kRoutes);
  RequestView old{"GET", "shop:8080", "/old/cart?id=1", {}};
  Decision d = Decide(*t, old, 0);
  CHECK(d.kind == Decision::Kind::kRedirect);
  CHECK(d.status == 301);
  CHECK(d.location == "http://example.com/new/cart?id=1");  // the authority is replaced whole

  d = Decide(*t, {"GET", "shop", "/tea", {}}, 0);
  CHECK(d.kind == Decision::Kind::kDirect);
  CHECK(d.status == 418);

  d = Decide(*t, {"GET", "shop", "/", {}}, 79);
  REQUIRE(d.kind == Decision::Kind::kForward);
  CHECK(d.target->cluster == "v1");
  CHECK(Decide(*t, {"GET", "shop", "/", {}}, 80).target->cluster == "v2");
  CHECK(Decide(*t, {"GET", "shop", "/", {}}, 170).target->cluster == "v1");  // draw mod 100

  RouteTablePtr narrow =
      Table(R"(name: "r" virtual_hosts { name: "a" domains: "a.example" routes { match { prefix:
        "/x" } route { cluster: "c" } } })");
  CHECK(Decide(*narrow, {"GET", "a.example", "/y", {}}, 0).kind == Decision::Kind::kNoRoute);
  CHECK(Decide(*narrow, {"GET", "b.example", "/x", {}}, 0).kind == Decision::Kind::kNoRoute);
}

TEST_CASE("RewritePath replaces the matched prefix and keeps the query") {
  RouteTablePtr t = Table(kRoutes);
  const Route* api = t->Match({"GET", "h", "/api/items?x=1", {}});
  REQUIRE(api);
  CHECK(RewritePath(*api, "/api/items?x=1") == "/items?x=1");
  CHECK(RewritePath(*api, "/api/") == "/");
  const Route* split = t->Match({"GET", "h", "/", {}});
  CHECK(RewritePath(*split, "/a?b") == "/a?b");  // no rewrite configured
}

TEST_CASE("RedirectLocation: scheme, port and path redirects") {
  RouteTablePtr t = Table(kRoutes);
  const Route& route = *t->Match({"GET", "h", "/old", {}});
  Redirect r;
  r.scheme = "https";
  r.port = 8443;
  CHECK(RedirectLocation(r, route, "shop:8080", "/old/a") == "https://shop:8443/old/a");
  r = Redirect{};
  r.path = "/elsewhere";
  CHECK(RedirectLocation(r, route, "shop", "/old/a?q=2") == "http://shop/elsewhere?q=2");
}

TEST_CASE("RequestHash follows the route's hash policies, and is absent when none applies") {
  RouteTablePtr t = Table(kRoutes);
  const Route& split = *t->Match({"GET", "h", "/", {}});
  RequestView alice{"GET", "h", "/", {{"x-user", "alice"}}};
  RequestView bob{"GET", "h", "/", {{"x-user", "bob"}}};
  CHECK(RequestHash(split, alice, "10.0.0.1") == HashKey("alice"));
  CHECK(RequestHash(split, alice, "") != RequestHash(split, bob, ""));
  CHECK_FALSE(RequestHash(split, {"GET", "h", "/", {}}, "10.0.0.1").has_value());

  RouteTablePtr cookie = Table(R"(name: "r" virtual_hosts { name: "a" domains: "*" routes {
      match { prefix: "/" } route { cluster: "c" hash_policy { cookie { name: "sid" } }
      hash_policy { connection_properties { source_ip: true } } } } })");
  const Route& r = *cookie->Match({"GET", "h", "/", {}});
  RequestView with_cookie{"GET", "h", "/", {{"cookie", "a=1; sid=xyz"}}};
  uint64_t both = *RequestHash(r, with_cookie, "10.0.0.1");
  CHECK(both != HashKey("xyz"));  // the source IP is folded in
  CHECK(RequestHash(r, {"GET", "h", "/", {}}, "10.0.0.1") == HashKey("10.0.0.1"));
}

TEST_CASE("A cookie hash policy with a TTL makes up the cookie a request lacks") {
  RouteTablePtr t = Table(R"(name: "r" virtual_hosts { name: "a" domains: "*" routes {
      match { prefix: "/" } route { cluster: "c" hash_policy { cookie { name: "sticky"
      ttl { seconds: 60 } path: "/" } } } } })");
  const Route& r = *t->Match({"GET", "h", "/", {}});
  std::string set_cookie;
  std::optional<uint64_t> made = RequestHash(r, {"GET", "h", "/", {}}, "", 0xabc, &set_cookie);
  CHECK(set_cookie == "sticky=0000000000000abc; Max-Age=60; Path=/; HttpOnly");
  // The client sends it back: same key, and no new cookie.
  std::string again;
  CHECK(RequestHash(r, {"GET", "h", "/", {{"cookie", "sticky=0000000000000abc"}}}, "", 7, &again) ==
        made);
  CHECK(again.empty());
}

}  // namespace
}  // namespace mesh::dataplane
