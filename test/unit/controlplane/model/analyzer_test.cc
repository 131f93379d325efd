#include "controlplane/model/analyzer.h"

#include <catch2/catch.hpp>

#include "common/yaml_json.h"
#include "controlplane/model/decode.h"
#include "controlplane/store/wal_store.h"
#include "test/support/temp_dir.h"

namespace mesh::model {
namespace {

std::vector<Object> Objects(const std::string& yaml) {
  auto docs = ParseYamlDocuments(yaml);
  REQUIRE(docs.ok());
  std::vector<Object> out;
  for (size_t i = 0; i < docs->size(); ++i) {
    DecodedDocument d = DecodeDocument((*docs)[i], "voting", i + 1);
    REQUIRE(d.outcome == DecodedDocument::Outcome::kObject);
    out.push_back(std::move(*d.object));
  }
  return out;
}

std::vector<Warning> AnalyzeAll(const std::vector<Object>& objects) {
  mesh::testing::TempDir dir;
  auto store = store::WalStore::Open(dir.path());
  REQUIRE(store.ok());
  auto index = ConfigIndex::Start(store->get());
  REQUIRE(index.ok());
  std::vector<const Object*> overlay;
  for (const Object& o : objects) overlay.push_back(&o);
  return Analyze(*(*index)->Current(), overlay, false);
}

const char* kService = R"(
apiVersion: v1
kind: Service
metadata: {name: voting-app}
spec: {ports: [{port: 8080, name: http}], selector: {app: voting-app}}
)";

TEST_CASE("A complete, consistent config has no warnings") {
  auto objects = Objects(std::string(kService) + R"(
---
apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata: {name: gw}
spec: {selector: {istio: ingressgateway}, servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]}
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: voting-app}
spec: {host: voting-app, subsets: [{name: v1, labels: {version: "1.0"}}]}
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: voting-app}
spec:
  hosts: ["*"]
  gateways: [gw]
  http: [{route: [{destination: {host: voting-app.voting.svc.cluster.local, subset: v1}}]}]
)");
  CHECK(AnalyzeAll(objects).empty());
}

TEST_CASE("Missing subsets, gateways and hosts are reported with their paths") {
  auto objects = Objects(std::string(kService) + R"(
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: nowhere}
spec: {host: nowhere, subsets: [{name: v1, labels: {version: "1.0"}}]}
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: voting-app}
spec:
  hosts: ["*"]
  gateways: [missing-gw]
  http: [{route: [{destination: {host: voting-app, subset: v9}}]}]
)");
  std::vector<Warning> w = AnalyzeAll(objects);
  REQUIRE(w.size() == 3);
  CHECK(w[0].ToString() ==
        "VirtualService voting/voting-app: spec.gateways[0]: gateway \"voting/missing-gw\" does "
        "not exist");
  CHECK(w[1].ToString() ==
        "VirtualService voting/voting-app: spec.http[0].route[0].destination.subset: subset \"v9\" "
        "is not "
        "defined by any DestinationRule for host \"voting-app.voting.svc.cluster.local\"");
  CHECK(w[2].ToString() ==
        "DestinationRule voting/nowhere: spec.host: no Service or ServiceEntry provides host "
        "\"nowhere.voting.svc.cluster.local\"");
}

TEST_CASE("ServiceEntry hosts, including wildcards, provide hosts") {
  auto objects = Objects(R"(
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata: {name: ext}
spec: {hosts: ["*.example.com"], ports: [{number: 443, name: https, protocol: TLS}], resolution: DNS}
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: api}
spec: {host: api.example.com}
)");
  CHECK(AnalyzeAll(objects).empty());
}

}  // namespace
}  // namespace mesh::model

namespace mesh::model {
namespace {

TEST_CASE("analyze warns where a VirtualService merged first at a gateway shadows a later one") {
  std::vector<Object> objects = Objects(std::string(kService) + R"(---
apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata: {name: gw}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: b-catch-all, creationTimestamp: "2026-01-01T00:00:00Z"}
spec:
  hosts: ["*"]
  gateways: [gw]
  http: [{route: [{destination: {host: voting-app}}]}]
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: a-later, creationTimestamp: "2026-01-02T00:00:00Z"}
spec:
  hosts: ["*"]
  gateways: [gw]
  http: [{match: [{uri: {prefix: /admin}}], route: [{destination: {host: voting-app}}]}]
)");
  std::vector<std::string> shadowed;
  for (const Warning& w : AnalyzeAll(objects)) {
    if (w.path == "spec.http") shadowed.push_back(w.object + ": " + w.message);
  }
  CHECK(shadowed == std::vector<std::string>{
                        "VirtualService voting/a-later: never reached for host \"*\" at gateway "
                        "voting/gw: VirtualService voting/b-catch-all is merged first and has a "
                        "route without match"});
}

}  // namespace
}  // namespace mesh::model
