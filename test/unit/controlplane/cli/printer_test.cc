#include "controlplane/cli/printer.h"

#include <catch2/catch.hpp>

#include "nlohmann/json.hpp"

namespace mesh::cli {
namespace {

using nlohmann::json;

TEST_CASE("VirtualServices print with their gateways and hosts, aligned") {
  absl::Time now;
  REQUIRE(absl::ParseTime(absl::RFC3339_full, "2026-01-01T00:10:00Z", &now, nullptr));
  std::vector<json> items = {
      json::parse(
          R"({"metadata":{"name":"voting-app","namespace":"voting","creationTimestamp":"2026-01-01T00:00:00Z"},
                     "spec":{"hosts":["*"],"gateways":["voting-app-gateway"]}})"),
      json::parse(
          R"({"metadata":{"name":"a","namespace":"voting","creationTimestamp":"2026-01-01T00:09:30Z"},
                     "spec":{"hosts":["a.voting.svc.cluster.local"]}})")};
  std::string table =
      FormatTable(model::Info(model::Kind::kVirtualService), items, false, false, now);
  CHECK(table ==
        "NAME         GATEWAYS               HOSTS                          AGE\n"
        "voting-app   [voting-app-gateway]   [*]                            10m\n"
        "a                                   [a.voting.svc.cluster.local]   30s\n");
}

TEST_CASE("Age uses the largest sensible unit") {
  absl::Time now;
  REQUIRE(absl::ParseTime(absl::RFC3339_full, "2026-01-10T00:00:00Z", &now, nullptr));
  CHECK(Age("2026-01-09T23:59:15Z", now) == "45s");
  CHECK(Age("2026-01-09T22:00:01Z", now) == "119m");
  CHECK(Age("2026-01-09T22:00:00Z", now) == "2h");
  CHECK(Age("2026-01-09T00:00:00Z", now) == "24h");
  CHECK(Age("2026-01-01T00:00:00Z", now) == "9d");
  CHECK(Age("garbage", now) == "<unknown>");
}

}  // namespace
}  // namespace mesh::cli

namespace mesh::cli {
namespace {

TEST_CASE("proxy-status shows SYNCED, STALE, NACKED and NOT SENT per type, and the identity") {
  json syncz = json::parse(R"([{"id": "gw-1", "class": "gateway/voting/{}", "version": "7",
    "identity": "spiffe://cluster.local/ns/voting/sa/default", "types": {
    "type.googleapis.com/envoy.config.cluster.v3.Cluster": {"sent": "7", "acked": "7", "nack": ""},
    "type.googleapis.com/envoy.config.listener.v3.Listener": {"sent": "7", "acked": "6", "nack": ""},
    "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment": {"sent": "7", "acked": "6", "nack": "bad"}}}])");
  CHECK(FormatProxyStatus(syncz) ==
        "NAME   CLASS               VERSION   CDS      LDS     EDS      RDS        IDENTITY\n"
        "gw-1   gateway/voting/{}   7         SYNCED   STALE   NACKED   NOT SENT   "
        "spiffe://cluster.local/ns/voting/sa/default\n");
}

TEST_CASE("proxy-status warns of each jwksUri whose fetch fails, naming the proxies using it") {
  json syncz = json::parse(R"([
    {"id": "httpbin-1", "jwks_uris": ["https://a.example/jwks"]},
    {"id": "httpbin-2", "jwks_uris": ["https://a.example/jwks", "https://b.example/jwks"]},
    {"id": "gw", "jwks_uris": []}])");
  json jwksz = json::parse(R"([
    {"uri": "https://a.example/jwks", "has_keys": true, "fetched": "2026-12-03T10:00:00Z",
     "last_attempt": "2026-12-03T10:29:50Z", "error": "Connection", "failures": 3},
    {"uri": "https://b.example/jwks", "has_keys": true, "fetched": "2026-12-03T10:29:00Z",
     "last_attempt": "2026-12-03T10:29:00Z", "error": "", "failures": 0},
    {"uri": "https://c.example/jwks", "has_keys": false, "fetched": "",
     "last_attempt": "2026-12-03T10:29:59Z", "error": "HTTP status 503", "failures": 1}])");
  absl::Time now;
  REQUIRE(absl::ParseTime(absl::RFC3339_full, "2026-12-03T10:30:00Z", &now, nullptr));
  CHECK(FormatJwksWarnings(syncz, jwksz, now) ==
        "WARNING: jwksUri https://a.example/jwks: the last 3 fetches failed, the latest 10s ago "
        "(Connection); the keys fetched 30m ago stay in use by httpbin-1, httpbin-2\n"
        "WARNING: jwksUri https://c.example/jwks: the last fetch failed 1s ago (HTTP status "
        "503); no keys yet, so its issuer's tokens are refused (401)\n");
  CHECK(FormatJwksWarnings(syncz, json::array(), now).empty());
}

}  // namespace
}  // namespace mesh::cli
