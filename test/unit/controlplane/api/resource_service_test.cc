#include "controlplane/api/resource_service.h"

#include <catch2/catch.hpp>
#include <mutex>

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
