#include "controlplane/xds/snapshot_cache.h"

#include <catch2/catch.hpp>
#include <mutex>

#include "absl/strings/match.h"
#include "envoy/config/endpoint/v3/endpoint.pb.h"
#include "envoy/service/discovery/v3/discovery.pb.h"
#include "test/support/service_fixture.h"

namespace mesh::xds {
namespace {

using compiler::kClusterType;
using compiler::kEndpointType;

// A cache with no worker and a clock the test moves: nothing here sleeps.
struct Fixture {
  Fixture() {
    SnapshotCache::Options options;
    options.workload_grace = absl::Seconds(10);
    options.now = [this] {
      std::lock_guard lock(mu);
      return now;
    };
    options.start_worker = false;
    cache = std::make_unique<SnapshotCache>(fx.index.get(), options);
  }
  void Apply(const std::string& yaml) {
    REQUIRE(fx.service->Apply(yaml, api::BodyFormat::kYaml, "default").ok());
  }
  void Advance(absl::Duration d) {
    std::lock_guard lock(mu);
    now += d;
  }

  testing::ServiceFixture fx;
  std::mutex mu;
  absl::Time now = absl::FromUnixSeconds(1'700'000'000);
  std::unique_ptr<SnapshotCache> cache;
};

const char* kService =
    "apiVersion: v1\nkind: Service\nmetadata: {name: web}\n"
    "spec: {selector: {app: web}, ports: [{name: http, port: 80}]}\n";

TEST_CASE("Classes share one snapshot, and a rebuild notifies only classes whose version moved") {
  Fixture f;
  f.Apply(std::string(kService) +
          "---\napiVersion: v1\nkind: Service\nmetadata: {name: api}\nspec: {ports: [{name: http, "
          "port: 8080}]}\n");
  compiler::ProxyClass a{compiler::Role::kProxyless, "default", {}, {}};
  compiler::ProxyClass b{compiler::Role::kProxyless, "other", {}, {}};
  std::vector<SnapshotPtr> seen_a;
  SnapshotPtr first_a, first_a2, first_b;
  auto wa = f.cache->Subscribe(
      a, [&](SnapshotPtr s) { seen_a.push_back(s); }, &first_a);
  auto wa2 = f.cache->Subscribe(
      a, [](SnapshotPtr) {}, &first_a2);
  auto wb = f.cache->Subscribe(
      b, [](SnapshotPtr) {}, &first_b);
  CHECK(first_a == first_a2);  // one compile per class, shared
  CHECK(first_a != first_b);
  CHECK(first_a->version == "1");
  CHECK(f.cache->GetStats().classes == 2);

  f.cache->Rebuild();  // nothing changed
  CHECK(seen_a.empty());
  f.Apply(
      "apiVersion: networking.istio.io/v1beta1\nkind: DestinationRule\nmetadata: {name: api}\n"
      "spec: {host: api, subsets: [{name: v1, labels: {version: v1}}]}\n");
  f.cache->Rebuild();
  REQUIRE(seen_a.size() == 1);
  CHECK(seen_a[0]->version == "2");
  CHECK(seen_a[0]
            ->resources.Of(kClusterType)
            .count("outbound|8080|v1|api.default.svc.cluster.local") == 1);
  // Resources that did not change are the same objects as before (the compile cache shared them).
  CHECK(seen_a[0]->resources.Of(kClusterType).at("outbound|80||web.default.svc.cluster.local") ==
        first_a->resources.Of(kClusterType).at("outbound|80||web.default.svc.cluster.local"));
  wb.reset();
  CHECK(f.cache->GetStats().classes == 1);
}

TEST_CASE("A registered sidecar is an endpoint until its grace period ends after it leaves") {
  Fixture f;
  f.Apply(kService);
  compiler::ProxyClass proxy{compiler::Role::kProxyless, "default", {}, {}};
  SnapshotPtr current;
  std::vector<SnapshotPtr> seen;
  auto watch = f.cache->Subscribe(
      proxy, [&](SnapshotPtr s) { seen.push_back(s); }, &current);
  auto endpoints = [](const SnapshotPtr& s) {
    envoy::config::endpoint::v3::ClusterLoadAssignment cla;
    s->resources.Of(kEndpointType).at("outbound|80||web.default.svc.cluster.local")->UnpackTo(&cla);
    return cla.endpoints_size() ? cla.endpoints(0).lb_endpoints_size() : 0;
  };
  CHECK(endpoints(current) == 0);

  registry::Workload w{"", "default", "127.0.1.1", {{"app", "web"}}, "default", {{80, 18080}}};
  auto registration = f.cache->RegisterWorkload("web-1", w);
  f.cache->Rebuild();
  REQUIRE(seen.size() == 1);
  CHECK(seen.back()->version == "1.1");
  CHECK(endpoints(seen.back()) == 1);

  registration.reset();  // the stream closed
  CHECK(f.cache->ExpireWorkloads(f.now) == f.now + absl::Seconds(10));
  f.Advance(absl::Seconds(5));
  auto again = f.cache->RegisterWorkload("web-1", w);  // reconnected within the grace period
  f.cache->Rebuild();
  CHECK(seen.size() == 1);  // nothing changed for the proxies
  again.reset();
  f.Advance(absl::Seconds(9));
  CHECK(f.cache->ExpireWorkloads(f.now) == f.now + absl::Seconds(1));
  f.cache->Rebuild();
  CHECK(seen.size() == 1);
  f.Advance(absl::Seconds(1));
  CHECK(f.cache->ExpireWorkloads(f.now) == absl::InfiniteFuture());
  f.cache->Rebuild();
  REQUIRE(seen.size() == 2);
  CHECK(endpoints(seen.back()) == 0);
}

TEST_CASE("Commit times are remembered per revision for the commit-to-ACK histogram") {
  Fixture f;
  f.Apply(kService);
  auto t = f.cache->CommitTime("1");
  REQUIRE(t.has_value());
  CHECK(*t == f.now);
  CHECK(f.cache->CommitTime("1.4") == t);
  CHECK(!f.cache->CommitTime("99").has_value());
  CHECK(!f.cache->CommitTime("garbage").has_value());
}

}  // namespace
}  // namespace mesh::xds

namespace mesh::xds {
namespace {

TEST_CASE("A snapshot serializes each subscription's response once and shares it") {
  Fixture f;
  f.Apply(kService);
  SnapshotPtr snap;
  auto watch = f.cache->Subscribe(
      {compiler::Role::kProxyless, "default", {}, {}}, [](SnapshotPtr) {}, &snap);
  std::map<std::string, const google::protobuf::Any*> selected;
  for (const auto& [name, any] : snap->resources.Of(kClusterType)) selected[name] = any.get();
  auto first = snap->Response(kClusterType, "*", selected);
  auto again = snap->Response(kClusterType, "*", selected);
  CHECK(first == again);  // the same bytes, not a copy
  CHECK(snap->Response(kClusterType, "web\n", selected) != first);
  envoy::service::discovery::v3::DiscoveryResponse parsed;
  REQUIRE(parsed.ParseFromString(*first));
  CHECK(parsed.version_info() == snap->version);
  CHECK(parsed.type_url() == kClusterType);
  CHECK(parsed.resources_size() == static_cast<int>(selected.size()));
  CHECK(parsed.nonce().empty());  // each stream appends its own
}

TEST_CASE("A gateway that connected before its Gateway existed moves to its new class") {
  Fixture f;
  f.Apply(kService);
  model::Labels labels = {{"istio", "ingressgateway"}, {"pod", "gw-1"}};
  compiler::ProxyClass proxy = f.cache->Classify(compiler::Role::kGateway, "default", labels);
  CHECK(proxy.labels.empty());  // no selector looks at its labels yet
  SnapshotPtr current;
  std::vector<SnapshotPtr> seen;
  auto watch = f.cache->Subscribe(
      proxy, [&](SnapshotPtr s) { seen.push_back(s); }, &current, labels);
  CHECK(current->resources.Of(compiler::kListenerType).empty());

  f.Apply(
      "apiVersion: networking.istio.io/v1alpha3\nkind: Gateway\nmetadata: {name: gw}\n"
      "spec: {selector: {istio: ingressgateway}, servers: [{port: {number: 80, name: http, "
      "protocol: HTTP}, hosts: ['*']}]}\n");
  f.cache->Rebuild();
  REQUIRE(!seen.empty());
  CHECK(seen.back()->resources.Of(compiler::kListenerType).count("0.0.0.0_80") == 1);
  CHECK(f.cache->GetStats().classes == 1);  // the old class, unwatched, is gone
  CHECK(watch->proxy_class().labels == model::Labels{{"istio", "ingressgateway"}});
}

TEST_CASE("Fetched jwksUri keys reach the proxies using them, and only a change is pushed") {
  Fixture f;
  const std::string uri = "https://issuer.example/jwks";
  f.Apply(std::string(kService) +
          "---\napiVersion: security.istio.io/v1\nkind: RequestAuthentication\n"
          "metadata: {name: jwt}\nspec: {jwtRules: [{issuer: i, jwksUri: '" +
          uri + "'}]}\n");
  compiler::ProxyClass sidecar{
      compiler::Role::kSidecar, "default", {{"app", "web"}}, {{80, 15006, 8080}}};
  std::vector<SnapshotPtr> seen;
  SnapshotPtr first;
  auto watch = f.cache->Subscribe(
      sidecar, [&](SnapshotPtr s) { seen.push_back(s); }, &first);
  CHECK(first->resources.jwks_uris == std::set<std::string>{uri});
  CHECK(absl::StrContains(compiler::ToJson(first->resources), "meshpilot-unfetched"));

  auto keys = [&](const std::string& kid) {
    return std::make_shared<const std::map<std::string, std::string>>(
        std::map<std::string, std::string>{
            {uri, R"({"keys":[{"kty":"EC","kid":")" + kid + R"("}]})"}});
  };
  f.cache->SetFetchedJwks(keys("k1"));
  f.cache->Rebuild();
  REQUIRE(seen.size() == 1);
  CHECK(seen[0]->version == first->version + ".1");
  const std::string dump = compiler::ToJson(seen[0]->resources);
  CHECK(absl::StrContains(dump, "k1"));
  CHECK_FALSE(absl::StrContains(dump, "meshpilot-unfetched"));
  // The same keys again (a refresh that found no rotation): nothing to push.
  f.cache->SetFetchedJwks(keys("k1"));
  f.cache->Rebuild();
  CHECK(seen.size() == 1);
  f.cache->SetFetchedJwks(keys("k2"));
  f.cache->Rebuild();
  REQUIRE(seen.size() == 2);
  CHECK(absl::StrContains(compiler::ToJson(seen[1]->resources), "k2"));
}

}  // namespace
}  // namespace mesh::xds
