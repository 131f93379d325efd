#include "controlplane/compiler/authn.h"

#include <catch2/catch.hpp>

#include "test/support/config_fixture.h"
#include "test/support/service_fixture.h"
#include "test/support/voting_app.h"

namespace mesh::compiler {
namespace {

using model::MtlsMode;

std::string Row(const TlsCheckRow& r) {
  return r.host_port + " " + r.status + " " + r.server + " " + r.client + " " + r.authn_policy +
         " " + r.destination_rule;
}

TEST_CASE("tls-check on the voting app after step 2 reads as the tutorial shows") {
  testing::ServiceFixture fx;
  auto config = testing::ApplyVotingApp(fx, MESH_MANIFESTS_DIR, 2);
  registry::Registry reg = registry::Registry::Build(*config, {});
  std::vector<TlsCheckRow> rows = TlsCheck(*config, reg, "voting-analytics");
  REQUIRE(rows.size() == 1);
  CHECK(Row(rows[0]) ==
        "voting-analytics.voting.svc.cluster.local:8080 OK mTLS mTLS default/voting "
        "voting-analytics/voting");
}

TEST_CASE("A STRICT Policy without ISTIO_MUTUAL clients is a CONFLICT") {
  testing::ServiceFixture fx;
  auto config = testing::ApplyVotingAppStep(fx, MESH_MANIFESTS_DIR, 1);
  REQUIRE(
      fx.service
          ->Apply(testing::ReadText(std::string(MESH_MANIFESTS_DIR) + "/istio/voting-policy.yaml"),
                  api::BodyFormat::kYaml, "voting")
          .ok());
  config = fx.index->Current();
  registry::Registry reg = registry::Registry::Build(*config, {});
  std::vector<TlsCheckRow> rows = TlsCheck(*config, reg, "voting-app.");
  REQUIRE(rows.size() == 1);
  CHECK(Row(rows[0]) ==
        "voting-app.voting.svc.cluster.local:8080 CONFLICT mTLS HTTP default/voting -");
}

TEST_CASE("The most specific authentication wins: workload, service, namespace, mesh, default") {
  auto config = testing::Config(R"(
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: mesh, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: ns-wide, namespace: shop}
spec: {mtls: {mode: PERMISSIVE}}
---
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: db, namespace: shop}
spec:
  selector: {matchLabels: {app: db}}
  mtls: {mode: STRICT}
  portLevelMtls: {9090: {mode: DISABLE}}
---
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: unset, namespace: shop}
spec:
  selector: {matchLabels: {app: cache}}
---
apiVersion: authentication.istio.io/v1alpha1
kind: Policy
metadata: {name: legacy, namespace: legacy}
spec:
  targets: [{name: old, ports: [{number: 80}]}]
---
apiVersion: authentication.istio.io/v1alpha1
kind: Policy
metadata: {name: default, namespace: legacy}
spec:
  peers: [{mtls: {mode: PERMISSIVE}}]
)");
  auto mode = [&](const std::string& ns, model::Labels labels, const std::string& svc,
                  uint32_t port, uint32_t target) {
    return InboundMtls(*config, ns, labels, svc, port, target).mode;
  };
  CHECK(mode("shop", {{"app", "db"}}, "db", 5432, 5432) == MtlsMode::kStrict);        // workload
  CHECK(mode("shop", {{"app", "db"}}, "db", 9090, 9090) == MtlsMode::kDisable);       // its port
  CHECK(mode("shop", {{"app", "web"}}, "web", 80, 80) == MtlsMode::kPermissive);      // namespace
  CHECK(mode("shop", {{"app", "cache"}}, "cache", 80, 80) == MtlsMode::kPermissive);  // UNSET
  CHECK(mode("other", {}, "x", 80, 80) == MtlsMode::kStrict);                         // mesh-wide
  CHECK(mode("legacy", {}, "old", 80, 80) == MtlsMode::kDisable);     // a Policy without peers
  CHECK(mode("legacy", {}, "old", 81, 81) == MtlsMode::kPermissive);  // namespace Policy
  auto none = testing::Config(
      "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 80}]}\n");
  MtlsDecision d = InboundMtls(*none, "default", {}, "a", 80, 80);
  CHECK(d.mode == MtlsMode::kPermissive);
  CHECK(d.source == nullptr);
}

}  // namespace
}  // namespace mesh::compiler
