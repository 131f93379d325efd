// Compile benchmark: a synthetic mesh of N services (each with two WorkloadEntries), N
// VirtualServices (a header match and an 80/20 split) and N DestinationRules (two subsets).
// Reports the time to build the registry and compile everything for one proxy class, in full and
// after a one-VirtualService change, each next to a peer measured in the same run: serializing
// the compiled resources once (the floor for producing them at all).
//
// Usage: compile_bench [--services 1000] [--rounds 5]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "controlplane/compiler/compiler.h"
#include "test/bench/bench_util.h"
#include "test/support/service_fixture.h"

namespace {

using mesh::bench::Arg;
using mesh::bench::Clock;
using mesh::bench::Ms;
using mesh::bench::Percentile;

using mesh::compiler::Resources;

std::string VirtualService(int i, int v1_weight);

std::string Service(int i, int v1_weight) {
  std::string n = absl::StrCat("svc", i);
  return absl::StrCat(
             R"(
---
apiVersion: v1
kind: Service
metadata: {name: )",
             n, R"(}
spec: {selector: {app: )",
             n, R"(}, ports: [{name: http, port: 8080}]}
---
apiVersion: networking.istio.io/v1beta1
kind: WorkloadEntry
metadata: {name: )",
             n, R"(-v1}
spec: {address: 10.)",
             i / 250, ".", i % 250, R"(.1, labels: {app: )", n, R"(, version: v1}}
---
apiVersion: networking.istio.io/v1beta1
kind: WorkloadEntry
metadata: {name: )",
             n, R"(-v2}
spec: {address: 10.)",
             i / 250, ".", i % 250, R"(.2, labels: {app: )", n, R"(, version: v2}}
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: )",
             n, R"(}
spec: {host: )",
             n,
             R"(, subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]}
)") + VirtualService(i, v1_weight);
}

std::string VirtualService(int i, int v1_weight) {
  std::string n = absl::StrCat("svc", i);
  return absl::StrCat(R"(
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: )",
                      n, R"(}
spec:
  hosts: [)",
                      n, R"(]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: )",
                      n, R"(, subset: v2}}]
  - route:
    - {destination: {host: )",
                      n, R"(, subset: v1}, weight: )", v1_weight, R"(}
    - {destination: {host: )",
                      n, R"(, subset: v2}, weight: )", 100 - v1_weight, R"(}
)");
}

struct Timing {
  double compile_ms = 0, serialize_ms = 0;
  size_t resources = 0;
};

// Builds the registry and compiles, as the snapshot cache does (with `cache`, incrementally).
Timing CompileOnce(const mesh::model::ConfigSnapshotPtr& config,
                   mesh::compiler::CompileCache* cache) {
  Timing t;
  auto start = Clock::now();
  mesh::registry::Registry reg = mesh::registry::Registry::Build(*config, {});
  Resources res = mesh::compiler::Compile(
      config, reg, {mesh::compiler::Role::kProxyless, "default", {}, {}}, cache);
  t.compile_ms = Ms(Clock::now() - start);
  start = Clock::now();
  size_t bytes = 0;
  for (const auto& [type, map] : res.by_type) {
    for (const auto& [name, any] : map) {
      bytes += any->SerializeAsString().size();
      ++t.resources;
    }
  }
  t.serialize_ms = Ms(Clock::now() - start);
  if (bytes == 0) std::fprintf(stderr, "nothing compiled\n");
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  const int services = Arg(argc, argv, "--services", 1000);
  const int rounds = Arg(argc, argv, "--rounds", 5);
  mesh::testing::ServiceFixture f;
  std::string body;
  for (int i = 0; i < services; ++i) body += Service(i, 80);
  auto applied = f.service->Apply(body, mesh::api::BodyFormat::kYaml, "default");
  if (!applied.ok()) {
    std::fprintf(stderr, "apply failed: %s\n", std::string(applied.status().message()).c_str());
    return 1;
  }
  std::vector<double> full, full_ser, change, change_ser;
  size_t resources = 0;
  for (int r = 0; r < rounds; ++r) {
    mesh::compiler::CompileCache cache;
    Timing t = CompileOnce(f.index->Current(), &cache);
    full.push_back(t.compile_ms);
    full_ser.push_back(t.serialize_ms);
    resources = t.resources;
    // One VirtualService changes; everything else is shared with the previous snapshot.
    auto changed = f.service->Apply(VirtualService(r % services, 70 - r),
                                    mesh::api::BodyFormat::kYaml, "default");
    if (!changed.ok()) return 1;
    Timing c = CompileOnce(f.index->Current(), &cache);
    if (cache.reused() != static_cast<size_t>(services - 1)) {
      std::fprintf(stderr, "expected %d services reused, got %zu\n", services - 1, cache.reused());
      return 1;
    }
    change.push_back(c.compile_ms);
    change_ser.push_back(c.serialize_ms);
  }
  std::printf(
      "mesh: %d services, %d VirtualServices, %d DestinationRules, %d WorkloadEntries -> %zu xDS "
      "resources\n",
      services, services, services, 2 * services, resources);
  std::printf(
      "full compile: median %.1f ms; peer (serialize the output once): %.1f ms; ratio %.1fx\n",
      mesh::bench::Percentile(full, 50), mesh::bench::Percentile(full_ser, 50),
      mesh::bench::Percentile(full, 50) / mesh::bench::Percentile(full_ser, 50));
  std::printf(
      "after one VirtualService change (incremental): median %.1f ms; peer: %.1f ms; ratio %.1fx\n",
      mesh::bench::Percentile(change, 50), mesh::bench::Percentile(change_ser, 50),
      mesh::bench::Percentile(change, 50) / mesh::bench::Percentile(change_ser, 50));
  return 0;
}
