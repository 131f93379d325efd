#include "controlplane/registry/registry.h"

#include <catch2/catch.hpp>

#include "test/support/config_fixture.h"

namespace mesh::registry {
namespace {

TEST_CASE("Services select WorkloadEntries in their namespace, on the entry's named port") {
  auto config = testing::Config(R"(
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: bookinfo}
spec: {selector: {app: reviews}, ports: [{name: http, port: 9080, targetPort: 8080}]}
---
apiVersion: networking.istio.io/v1beta1
kind: WorkloadEntry
metadata: {name: r1, namespace: bookinfo}
spec: {address: 10.0.0.1, ports: {http: 18080}, labels: {app: reviews, version: v1}}
---
apiVersion: networking.istio.io/v1beta1
kind: WorkloadEntry
metadata: {name: r2, namespace: bookinfo}
spec: {address: 10.0.0.2, labels: {app: reviews, version: v2}, weight: 3}
---
apiVersion: networking.istio.io/v1beta1
kind: WorkloadEntry
metadata: {name: elsewhere, namespace: other}
spec: {address: 10.0.0.3, labels: {app: reviews}}
)");
  Registry r = Registry::Build(*config, {});
  const ServicePort* sp = r.Find("reviews.bookinfo.svc.cluster.local", 9080);
  REQUIRE(sp != nullptr);
  CHECK(sp->protocol == "HTTP");
  REQUIRE(sp->endpoints.size() == 2);
  CHECK(sp->endpoints[0].address == "10.0.0.1");
  CHECK(sp->endpoints[0].port == 18080);  // the entry's named port
  CHECK(sp->endpoints[1].port == 8080);   // else the service's targetPort
  CHECK(sp->endpoints[1].weight == 3);
}

TEST_CASE("Auto-registered workloads join the services whose selector they match") {
  auto config = testing::Config(R"(
apiVersion: v1
kind: Service
metadata: {name: voting-app, namespace: voting}
spec: {selector: {app: voting-app}, ports: [{name: http, port: 8080}]}
)");
  std::vector<Workload> workloads = {
      {"a",
       "voting",
       "127.0.1.1",
       {{"app", "voting-app"}, {"version", "1.0"}},
       "default",
       {{8080, 18081}}},
      {"b", "voting", "127.0.1.2", {{"app", "other"}}, "default", {{8080, 18082}}},
  };
  Registry r = Registry::Build(*config, workloads);
  const ServicePort* sp = r.Find("voting-app.voting.svc.cluster.local", 8080);
  REQUIRE(sp != nullptr);
  REQUIRE(sp->endpoints.size() == 1);
  CHECK(sp->endpoints[0].address == "127.0.1.1");
  CHECK(sp->endpoints[0].port == 18081);
}

TEST_CASE("ServiceEntries provide every host and port with their endpoints") {
  auto config = testing::Config(R"(
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: db, namespace: data}
spec:
  hosts: [db.internal, db2.internal]
  ports: [{number: 5432, name: pg, protocol: TCP}]
  resolution: STATIC
  endpoints: [{address: 10.1.0.1}, {address: 10.1.0.2, ports: {pg: 15432}}]
)");
  Registry r = Registry::Build(*config, {});
  REQUIRE(r.ports().size() == 2);
  const ServicePort* sp = r.Find("db2.internal", 5432);
  REQUIRE(sp != nullptr);
  CHECK(sp->protocol == "TCP");
  REQUIRE(sp->endpoints.size() == 2);
  CHECK(sp->endpoints[1].port == 15432);
}

TEST_CASE("A registered workload serves a service only where its service account fits") {
  auto config = testing::Config(R"(
apiVersion: v1
kind: Service
metadata: {name: pong, namespace: default}
spec: {selector: {app: pong}, ports: [{name: http, port: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: pinned, namespace: default}
spec: {selector: {app: pinned}, ports: [{name: http, port: 8080}]}
---
apiVersion: networking.istio.io/v1beta1
kind: WorkloadEntry
metadata: {name: pinned-static, namespace: default}
spec: {address: 10.0.0.1, labels: {app: pinned}, serviceAccount: pinned-sa}
)");
  // pong has no WorkloadEntry: its earliest workload (pong-sa) pins it; an impostor with another
  // service account but the same labels is refused, whenever it registered.
  std::vector<Workload> workloads = {
      {"impostor", "default", "127.0.1.9", {{"app", "pong"}}, "intruder", {{8080, 18089}}, 2000},
      {"pong-1", "default", "127.0.1.1", {{"app", "pong"}}, "pong-sa", {{8080, 18081}}, 1000},
      {"pong-2", "default", "127.0.1.2", {{"app", "pong"}}, "pong-sa", {{8080, 18082}}, 3000},
      {"fake-pinned", "default", "127.0.1.3", {{"app", "pinned"}}, "default", {{8080, 18083}}, 1},
      {"real-pinned", "default", "127.0.1.4", {{"app", "pinned"}}, "pinned-sa", {{8080, 18084}}, 5},
  };
  Registry r = Registry::Build(*config, workloads);
  auto addresses = [&](const std::string& host) {
    std::vector<std::string> out;
    for (const Endpoint& e : r.Find(host, 8080)->endpoints) out.push_back(e.address);
    return out;
  };
  CHECK(addresses("pong.default.svc.cluster.local") ==
        std::vector<std::string>{"127.0.1.1", "127.0.1.2"});
  // A WorkloadEntry's service account pins the service even against an earlier registration.
  CHECK(addresses("pinned.default.svc.cluster.local") ==
        std::vector<std::string>{"10.0.0.1", "127.0.1.4"});
  REQUIRE(r.refusals().size() == 2);
  CHECK(r.refusals().at("impostor") ==
        "not an endpoint of pong.default.svc.cluster.local: it runs as service account intruder, "
        "the service's workloads as pong-sa");
  CHECK(r.refusals().at("fake-pinned") ==
        "not an endpoint of pinned.default.svc.cluster.local: it runs as service account default, "
        "the service's workloads as pinned-sa");
}

}  // namespace
}  // namespace mesh::registry
