#include "controlplane/api/resource_service.h"

#include <catch2/catch.hpp>
#include <mutex>
#include <thread>

#include "absl/strings/match.h"
#include "test/support/service_fixture.h"

namespace mesh::api {
namespace {

using mesh::testing::ServiceFixture;
using nlohmann::json;

const char* kGateway = R"(
apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata:
  name: voting-app-gateway
spec:
  selector:
    istio: ingressgateway
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
)";

const model::KindInfo& Kind(model::Kind k) {
  return model::Info(k);
}

TEST_CASE("Apply creates, then answers unchanged, then configured when the spec changes") {
  ServiceFixture f;
  auto first = f.service->Apply(kGateway, BodyFormat::kYaml, "voting");
  REQUIRE(first.ok());
  REQUIRE(first->items.size() == 1);
  CHECK(first->items[0].action == "created");
  CHECK(first->items[0].resource_version == 1);
  CHECK(first->ToText() == "gateway.networking.istio.io/voting-app-gateway created\n");

  auto again = f.service->Apply(kGateway, BodyFormat::kYaml, "voting");
  REQUIRE(again.ok());
  CHECK(again->items[0].action == "unchanged");
  CHECK(again->items[0].resource_version == 1);
  CHECK(f.store->Revision() == 1);

  std::string changed = kGateway;
  changed.replace(changed.find("number: 80"), 10, "number: 81");
  auto third = f.service->Apply(changed, BodyFormat::kYaml, "voting");
  REQUIRE(third.ok());
  CHECK(third->items[0].action == "configured");

  auto got = f.service->Get(Kind(model::Kind::kGateway), "v1beta1", "voting", "voting-app-gateway");
  REQUIRE(got.ok());
  CHECK((*got)["apiVersion"] == "networking.istio.io/v1beta1");
  CHECK((*got)["metadata"]["resourceVersion"] == "2");
  CHECK((*got)["metadata"]["generation"] == 2);
  CHECK((*got)["spec"]["servers"][0]["port"]["number"] == 81);
}

TEST_CASE("Apply writes a whole batch in one store revision and skips non-mesh kinds") {
  ServiceFixture f;
  std::string body = std::string(kGateway) + R"(
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: voting-app-1-0}
spec: {replicas: 1}
---
apiVersion: v1
kind: Service
metadata: {name: voting-app}
spec: {ports: [{port: 8080, name: http}], selector: {app: voting-app}}
)";
  auto r = f.service->Apply(body, BodyFormat::kYaml, "voting");
  REQUIRE(r.ok());
  REQUIRE(r->items.size() == 3);
  CHECK(r->items[1].action == "skipped");
  CHECK(r->items[1].qualified_kind == "deployment.apps");
  CHECK(r->items[0].resource_version == r->items[2].resource_version);
  CHECK(f.store->Revision() == 1);
}

TEST_CASE("Apply reports cross-reference warnings without refusing the write") {
  ServiceFixture f;
  auto r = f.service->Apply(R"(
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: voting-app}
spec:
  hosts: ["*"]
  gateways: [voting-app-gateway]
  http: [{route: [{destination: {host: voting-app, subset: v1-0}}]}]
)",
                            BodyFormat::kYaml, "voting");
  REQUIRE(r.ok());
  CHECK(r->items[0].action == "created");
  REQUIRE(r->warnings.size() == 3);
  CHECK(r->warnings[0].message == "gateway \"voting/voting-app-gateway\" does not exist");
  // Once the referenced objects exist, analyze is clean.
  REQUIRE(f.service
              ->Apply(std::string(kGateway) + R"(
---
apiVersion: v1
kind: Service
metadata: {name: voting-app}
spec: {ports: [{port: 8080, name: http}]}
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: voting-app}
spec: {host: voting-app, subsets: [{name: v1-0, labels: {version: "1.0"}}]}
)",
                      BodyFormat::kYaml, "voting")
              .ok());
  CHECK(f.service->Analyze("").empty());
}

TEST_CASE("A resourceVersion in the body is a precondition") {
  ServiceFixture f;
  REQUIRE(f.service->Apply(kGateway, BodyFormat::kYaml, "voting").ok());
  std::string stale = kGateway;
  stale.replace(stale.find("name: voting-app-gateway"), 24,
                "name: voting-app-gateway\n  resourceVersion: \"7\"");
  stale.replace(stale.find("number: 80"), 10, "number: 81");
  auto r = f.service->Apply(stale, BodyFormat::kYaml, "voting");
  REQUIRE(!r.ok());
  CHECK(absl::IsFailedPrecondition(r.status()));
  CHECK(r.status().message() ==
        "Gateway voting/voting-app-gateway: the object has been modified: resourceVersion is 1, "
        "not 7");
}

TEST_CASE("Write creates with POST semantics, replaces with PUT semantics, and checks the path") {
  ServiceFixture f;
  const auto& gw = Kind(model::Kind::kGateway);
  auto created = f.service->Write(gw, "v1alpha3", "voting", "", kGateway, BodyFormat::kYaml, false);
  REQUIRE(created.ok());
  auto dup = f.service->Write(gw, "v1alpha3", "voting", "", kGateway, BodyFormat::kYaml, false);
  CHECK(absl::IsAlreadyExists(dup.status()));
  auto replaced = f.service->Write(gw, "v1alpha3", "voting", "voting-app-gateway", kGateway,
                                   BodyFormat::kYaml, true);
  REQUIRE(replaced.ok());
  auto wrong_name =
      f.service->Write(gw, "v1alpha3", "voting", "other", kGateway, BodyFormat::kYaml, true);
  REQUIRE(absl::IsInvalidArgument(wrong_name.status()));
  CHECK(wrong_name.status().message() ==
        "Gateway voting/voting-app-gateway: metadata.name: \"voting-app-gateway\" does not match "
        "the name of the path, \"other\"");
  auto wrong_kind = f.service->Write(Kind(model::Kind::kVirtualService), "v1alpha3", "voting", "",
                                     kGateway, BodyFormat::kYaml, false);
  CHECK(absl::IsInvalidArgument(wrong_kind.status()));
  auto stale = f.service->Write(gw, "v1alpha3", "voting", "voting-app-gateway",
                                std::string(kGateway).replace(std::string(kGateway).find("spec:"),
                                                              5, "  resourceVersion: \"1\"\nspec:"),
                                BodyFormat::kYaml, true);
  CHECK(absl::IsFailedPrecondition(stale.status()));
}

TEST_CASE("Delete removes a resource, and a missing one is NotFound") {
  ServiceFixture f;
  const auto& gw = Kind(model::Kind::kGateway);
  REQUIRE(f.service->Apply(kGateway, BodyFormat::kYaml, "voting").ok());
  REQUIRE(f.service->Delete(gw, "v1alpha3", "voting", "voting-app-gateway").ok());
  auto again = f.service->Delete(gw, "v1alpha3", "voting", "voting-app-gateway");
  CHECK(absl::IsNotFound(again.status()));
  CHECK(again.status().message() ==
        "gateway.networking.istio.io \"voting/voting-app-gateway\" not found");
  CHECK(absl::IsNotFound(f.service->Get(gw, "v1alpha3", "voting", "voting-app-gateway").status()));
}

TEST_CASE("DeleteApplied deletes what the documents name and reports the missing") {
  ServiceFixture f;
  REQUIRE(f.service->Apply(kGateway, BodyFormat::kYaml, "voting").ok());
  auto r = f.service->DeleteApplied(kGateway, BodyFormat::kYaml, "voting");
  REQUIRE(r.ok());
  CHECK(r->items[0].action == "deleted");
  auto again = f.service->DeleteApplied(kGateway, BodyFormat::kYaml, "voting");
  REQUIRE(again.ok());
  CHECK(again->items[0].action == "not found");
}

TEST_CASE("List returns a Kubernetes List for one namespace or all") {
  ServiceFixture f;
  REQUIRE(f.service->Apply(kGateway, BodyFormat::kYaml, "a").ok());
  REQUIRE(f.service->Apply(kGateway, BodyFormat::kYaml, "b").ok());
  const auto& gw = Kind(model::Kind::kGateway);
  auto one = f.service->List(gw, "v1alpha3", "a");
  REQUIRE(one.ok());
  CHECK((*one)["kind"] == "GatewayList");
  CHECK((*one)["items"].size() == 1);
  CHECK((*one)["metadata"]["resourceVersion"] == "2");
  CHECK((*f.service->List(gw, "v1alpha3", ""))["items"].size() == 2);
}

TEST_CASE("Watch sends ADDED for existing objects, then MODIFIED and DELETED as they happen") {
  ServiceFixture f;
  REQUIRE(f.service->Apply(kGateway, BodyFormat::kYaml, "voting").ok());
  std::mutex mu;
  std::vector<json> events;
  auto watch = f.service->Watch(Kind(model::Kind::kGateway), "v1alpha3", "voting", std::nullopt,
                                [&](std::string line) {
                                  std::lock_guard lock(mu);
                                  events.push_back(json::parse(line));
                                });
  REQUIRE(watch.ok());
  std::string changed = kGateway;
  changed.replace(changed.find("number: 80"), 10, "number: 81");
  REQUIRE(f.service->Apply(changed, BodyFormat::kYaml, "voting").ok());
  REQUIRE(f.service->DeleteApplied(changed, BodyFormat::kYaml, "voting").ok());
  std::lock_guard lock(mu);
  REQUIRE(events.size() == 3);
  CHECK(events[0]["type"] == "ADDED");
  CHECK(events[1]["type"] == "MODIFIED");
  CHECK(events[1]["object"]["metadata"]["resourceVersion"] == "2");
  CHECK(events[2]["type"] == "DELETED");
  CHECK(events[2]["object"]["metadata"]["resourceVersion"] == "3");
}

TEST_CASE("Watch from a resourceVersion replays only what came after it") {
  ServiceFixture f;
  REQUIRE(f.service->Apply(kGateway, BodyFormat::kYaml, "voting").ok());
  REQUIRE(f.service->Apply(kGateway, BodyFormat::kYaml, "other").ok());
  std::vector<json> events;
  auto watch = f.service->Watch(Kind(model::Kind::kGateway), "v1alpha3", "", 1,
                                [&](std::string line) { events.push_back(json::parse(line)); });
  REQUIRE(watch.ok());
  REQUIRE(events.size() == 1);
  CHECK(events[0]["object"]["metadata"]["namespace"] == "other");
}

TEST_CASE("JSON bodies: a single object, an array, and a List all apply") {
  ServiceFixture f;
  std::string svc =
      R"({"apiVersion":"v1","kind":"Service","metadata":{"name":"a"},"spec":{"ports":[{"port":80}]}})";
  auto one = f.service->Apply(svc, BodyFormat::kJson, "default");
  REQUIRE(one.ok());
  auto list = f.service->Apply(R"({"kind":"List","items":[)" + svc + "]}", BodyFormat::kJson, "x");
  REQUIRE(list.ok());
  CHECK(list->items[0].action == "created");
  auto bad = f.service->Apply("{not json", BodyFormat::kJson, "default");
  REQUIRE(absl::IsInvalidArgument(bad.status()));
  CHECK(absl::StartsWith(bad.status().message(), "invalid JSON: "));
}

}  // namespace
}  // namespace mesh::api

namespace mesh::api {
namespace {

// A store that lets a test act between a service's reads and its commit, as a concurrent client
// would.
class RacingStore : public store::Store {
 public:
  explicit RacingStore(store::Store* inner) : inner_(inner) {}
  std::function<void()> before_commit;  // runs once, before the next commit

  absl::StatusOr<store::CommitResult> Commit(std::vector<store::Op> ops) override {
    if (auto hook = std::exchange(before_commit, nullptr)) hook();
    return inner_->Commit(std::move(ops));
  }
  absl::StatusOr<std::optional<store::KeyValue>> Get(absl::string_view key) override {
    return inner_->Get(key);
  }
  absl::StatusOr<std::vector<std::optional<store::KeyValue>>> GetMany(
      const std::vector<std::string>& keys) override {
    return inner_->GetMany(keys);
  }
  absl::StatusOr<store::RangeResult> List(absl::string_view prefix) override {
    return inner_->List(prefix);
  }
  absl::StatusOr<store::WatchPtr> Watch(std::string prefix, int64_t after,
                                        store::WatchCallback cb) override {
    return inner_->Watch(std::move(prefix), after, std::move(cb));
  }
  int64_t Revision() override { return inner_->Revision(); }

 private:
  store::Store* inner_;
};

const char* kTwo = R"(
apiVersion: v1
kind: Service
metadata: {name: a}
spec: {selector: {app: a}, ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: b}
spec: {selector: {app: b}, ports: [{port: 80}]}
)";

std::string ServiceKey(const std::string& name) {
  return model::StoreKey(Kind(model::Kind::kService), "default", name);
}

TEST_CASE(
    "An apply whose unchanged object is deleted before its commit re-applies the whole batch") {
  ServiceFixture f;
  RacingStore racing(f.store.get());
  ResourceService service(&racing, f.index.get());
  REQUIRE(service.Apply(kTwo, BodyFormat::kYaml, "default").ok());
  // Change b only: a is "unchanged". A concurrent delete of a lands after the read.
  std::string changed = kTwo;
  changed.replace(changed.rfind("port: 80"), 8, "port: 81");
  racing.before_commit = [&] {
    REQUIRE(f.store->Commit({store::Op::Delete(ServiceKey("a"))}).ok());
  };
  auto result = service.Apply(changed, BodyFormat::kYaml, "default");
  REQUIRE(result.ok());
  // The batch is all there: a was created again on the retry, b configured.
  CHECK(result->items[0].action == "created");
  CHECK(result->items[1].action == "configured");
  CHECK(f.store->Get(ServiceKey("a"))->has_value());
}

TEST_CASE("A delete whose absent object appears before its commit deletes the whole batch") {
  ServiceFixture f;
  RacingStore racing(f.store.get());
  ResourceService service(&racing, f.index.get());
  std::string only_b = std::string(kTwo).substr(std::string(kTwo).find("---") + 4);
  REQUIRE(service.Apply(only_b, BodyFormat::kYaml, "default").ok());
  racing.before_commit = [&] {
    REQUIRE(f.service->Apply(kTwo, BodyFormat::kYaml, "default").ok());
  };
  auto result = service.DeleteApplied(kTwo, BodyFormat::kYaml, "default");
  REQUIRE(result.ok());
  CHECK(result->items[0].action == "deleted");
  CHECK(result->items[1].action == "deleted");
  CHECK_FALSE(f.store->Get(ServiceKey("a"))->has_value());
  CHECK_FALSE(f.store->Get(ServiceKey("b"))->has_value());
}

TEST_CASE("A YAML string that is not UTF-8 is refused with its field path") {
  ServiceFixture f;
  std::string body =
      "apiVersion: v1\nkind: Service\nmetadata: {name: \"bad\xff\xfe\"}\n"
      "spec: {ports: [{port: 80}]}\n";
  auto result = f.service->Apply(body, BodyFormat::kYaml, "default");
  CHECK(result.status() ==
        absl::InvalidArgumentError("document 1: metadata.name: not valid UTF-8"));
  std::string overlong =
      "apiVersion: v1\nkind: Service\nmetadata:\n  name: a\n  labels: {x: "
      "\"\xc0\xaf\"}\nspec: {ports: [{port: 80}]}\n";
  CHECK(f.service->Apply(overlong, BodyFormat::kYaml, "default").status() ==
        absl::InvalidArgumentError("document 1: metadata.labels.x: not valid UTF-8"));
  CHECK(f.service
            ->Apply("apiVersion: v1\nkind: Service\nmetadata: {name: caf\xc3\xa9s}\n",
                    BodyFormat::kYaml, "default")
            .status()
            .code() != absl::StatusCode::kInternal);
  CHECK(f.store->Revision() == 0);
}

TEST_CASE("Of concurrent PUTs creating one name, exactly one created it") {
  ServiceFixture f;
  const auto& svc = Kind(model::Kind::kService);
  std::atomic<int> created{0}, replaced{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      bool c = false;
      auto out = f.service->Write(svc, "v1", "default", "same",
                                  "apiVersion: v1\nkind: Service\nmetadata: {name: same}\n"
                                  "spec: {ports: [{port: 80}]}\n",
                                  BodyFormat::kYaml, true, &c);
      if (out.ok()) ++(c ? created : replaced);
    });
  }
  for (auto& t : threads) t.join();
  CHECK(created == 1);
  CHECK(replaced == 7);
}

}  // namespace
}  // namespace mesh::api
