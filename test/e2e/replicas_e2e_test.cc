// Several meshpilot replicas on one etcd (real etcd members on loopback): a write through any
// replica reaches every replica's proxies, proxies fail over when their replica dies, concurrent
// writers conflict cleanly, and acknowledged applies survive an etcd member's death.
#include <atomic>
#include <catch2/catch.hpp>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "test/support/etcd.h"
#include "test/support/mesh.h"
#include "test/support/meshpilot.h"
#include "test/support/temp_dir.h"
#include "test/support/voting_app.h"

namespace mesh::testing {
namespace {

using namespace std::chrono_literals;

const std::string kPong = std::string(MESH_SOURCE_DIR) + "/examples/pong-canary/";

std::string PongTo(const std::string& subset) {
  return absl::StrCat(
      "apiVersion: networking.istio.io/v1alpha3\nkind: VirtualService\nmetadata: {name: pong}\n"
      "spec:\n  hosts: [\"*\"]\n  gateways: [pong-gateway]\n  http:\n"
      "  - route: [{destination: {host: pong, subset: ",
      subset, "}}]\n");
}

httplib::Result ApplyOn(const MeshpilotProcess& pilot, const std::string& yaml) {
  return pilot.Client().Post("/apply?namespace=default", yaml, "application/yaml");
}

// etcd (three members), replica A (the Mesh's meshpilot) and replica B, both on that etcd; the
// pong service's two versions have sidecars on A, the gateway is on B (and A after it).
struct Replicas {
  explicit Replicas(TempDir& etcd_dir)
      : etcd(etcd_dir.path(), 3), started(etcd.Start()), mesh(Flags("a")) {
    REQUIRE(started);
    b = std::make_unique<MeshpilotProcess>(MESHPILOT_BIN, mesh.dir() / "replica-b", Flags("b"));
    REQUIRE(b->Start());
    mesh.ApplyFile(kPong + "pong.yaml");
    mesh.ApplyFile(kPong + "rollout-complete.yaml");              // everything to v2 ...
    REQUIRE(ApplyOn(mesh.pilot(), PongTo("v1"))->status == 200);  // ... then to v1
    mesh.control_planes = {&mesh.pilot()};
    v1 = &mesh.Workload("pong-v1", "default", "app=pong,version=v1", 8080,
                        {"--name", "pong", "--version", "v1"});
    v2 = &mesh.Workload("pong-v2", "default", "app=pong,version=v2", 8080,
                        {"--name", "pong", "--version", "v2"});
    mesh.control_planes = {b.get(), &mesh.pilot()};
    gateway = &mesh.Gateway();
    REQUIRE(mesh.WaitReady());
    // B's gateway serves endpoints that registered on A: they came through etcd.
    REQUIRE(WaitFor([&] { return Get().body == "pong v1\n"; }, 15s));
  }
  std::vector<std::string> Flags(const std::string& name) {
    std::vector<std::string> flags = etcd.MeshpilotFlags(name);
    flags.insert(flags.end(), {"--debounce", "10ms", "--workload-grace", "3s"});
    return flags;
  }
  Reply Get() { return HttpGet(gateway->port, "/"); }

  EtcdCluster etcd;
  bool started;
  Mesh mesh;
  std::unique_ptr<MeshpilotProcess> b;
  Mesh::Proxy* v1 = nullptr;
  Mesh::Proxy* v2 = nullptr;
  Mesh::Proxy* gateway = nullptr;
};

TEST_CASE("Replicas on etcd: an apply on A reaches a proxy connected to B within a second") {
  TempDir etcd_dir;
  Replicas r(etcd_dir);
  // B's gateway took its certificate from B's CA: the same root as A's, kept in etcd.
  CHECK(ReadText(r.mesh.pilot().root_cert_path()) == ReadText(r.b->root_cert_path()));
  nlohmann::json syncz = nlohmann::json::parse(r.b->Client().Get("/debug/syncz")->body);
  REQUIRE(syncz.size() == 1);
  CHECK(syncz[0]["id"] == "ingressgateway");
  for (int round = 0; round < 5; ++round) {
    std::string subset = round % 2 ? "v1" : "v2";
    auto start = std::chrono::steady_clock::now();
    REQUIRE(ApplyOn(r.mesh.pilot(), PongTo(subset))->status == 200);
    REQUIRE(WaitFor([&] { return r.Get().body == "pong " + subset + "\n"; }, 5s));
    auto took = std::chrono::steady_clock::now() - start;
    INFO("round " << round << ": "
                  << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms");
    CHECK(took < 1s);
  }
}

TEST_CASE("Replicas on etcd: two replicas writing one resource, one writer wins each version") {
  TempDir etcd_dir;
  Replicas r(etcd_dir);
  int wins = 0, conflicts = 0;
  for (int round = 0; round < 10; ++round) {
    auto got = r.mesh.pilot().Client().Get(
        "/apis/networking.istio.io/v1alpha3/namespaces/default/virtualservices/pong");
    REQUIRE(got->status == 200);
    std::string rv = nlohmann::json::parse(got->body)["metadata"]["resourceVersion"];
    // Both replicas apply a change made against the same resourceVersion at once.
    // Each writer's change differs from the stored one (a label naming the writer and round).
    auto body = [&](const std::string& writer) {
      std::string yaml = PongTo("v1");
      return yaml.replace(yaml.find("metadata: {name: pong}"), 22,
                          absl::StrCat("metadata: {name: pong, resourceVersion: \"", rv,
                                       "\", labels: {writer: ", writer, round, "}}"));
    };
    int status_a = 0, status_b = 0;
    std::thread ta([&] { status_a = ApplyOn(r.mesh.pilot(), body("a"))->status; });
    std::thread tb([&] { status_b = ApplyOn(*r.b, body("b"))->status; });
    ta.join();
    tb.join();
    INFO("round " << round << ": A " << status_a << ", B " << status_b);
    CHECK(((status_a == 200 && status_b == 409) || (status_a == 409 && status_b == 200)));
    wins += (status_a == 200) + (status_b == 200);
    conflicts += (status_a == 409) + (status_b == 409);
  }
  CHECK(wins == 10);
  CHECK(conflicts == 10);
}

TEST_CASE("Replica B killed under load: its proxies move to A and no request fails") {
  TempDir etcd_dir;
  Replicas r(etcd_dir);
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, failed{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 3; ++t) {
    clients.emplace_back([&] {
      httplib::Client c("127.0.0.1", r.gateway->port);
      c.set_keep_alive(true);
      c.set_read_timeout(5, 0);
      while (!stop) {
        auto res = c.Get("/");
        if (res && res->status == 200 && res->body == "pong v1\n") {
          ++ok;
        } else {
          ++failed;
        }
      }
    });
  }
  std::this_thread::sleep_for(300ms);
  r.b->Kill();
  // The gateway reconnects to A within its backoff, serving its last config meanwhile.
  CHECK(WaitFor(
      [&] {
        nlohmann::json syncz =
            nlohmann::json::parse(r.mesh.pilot().Client().Get("/debug/syncz")->body);
        for (const auto& p : syncz) {
          if (p["id"] == "ingressgateway") return true;
        }
        return false;
      },
      10s));
  std::this_thread::sleep_for(300ms);
  stop = true;
  for (auto& t : clients) t.join();
  INFO("ok " << ok << " failed " << failed);
  CHECK(failed == 0);
  CHECK(ok > 100);
  // And A's config reaches it.
  REQUIRE(ApplyOn(r.mesh.pilot(), PongTo("v2"))->status == 200);
  CHECK(WaitFor([&] { return r.Get().body == "pong v2\n"; }, 5s));
}

TEST_CASE("A dead replica's sidecars stop being endpoints once its workload lease expires") {
  TempDir etcd_dir;
  Replicas r(etcd_dir);  // the pong sidecars registered on A; the gateway is on B
  r.mesh.pilot().Kill();
  auto killed = std::chrono::steady_clock::now();
  // Still served right after (the lease, 3 s here, has not expired) ...
  CHECK(r.Get().body == "pong v1\n");
  // ... and gone once it has: B's gateway has no endpoint left for pong.
  REQUIRE(WaitFor([&] { return r.Get().status == 503; }, 15s));
  CHECK(std::chrono::steady_clock::now() - killed > 2s);
}

TEST_CASE("An etcd member killed during an apply loop loses no acknowledged apply") {
  TempDir etcd_dir;
  Replicas r(etcd_dir);
  std::atomic<bool> stop{false};
  std::atomic<int> acked{0}, refused{0};
  std::thread writer([&] {
    for (int i = 0; !stop; ++i) {
      std::string yaml = absl::StrCat(
          "apiVersion: networking.istio.io/v1alpha3\nkind: DestinationRule\nmetadata: {name: dr-",
          i, "}\nspec: {host: pong}\n");
      auto res = ApplyOn(r.mesh.pilot(), yaml);
      if (res && res->status == 200) {
        acked = i + 1;
      } else {
        ++refused;
        break;
      }
    }
  });
  REQUIRE(WaitFor([&] { return acked > 20; }, 10s));
  r.etcd.Kill(0);  // the member both replicas talk to first
  int at_kill = acked;
  REQUIRE(WaitFor([&] { return acked > at_kill + 20 || refused > 0; }, 30s));
  stop = true;
  writer.join();
  CHECK(refused == 0);
  // Every acknowledged apply is there, read through the other replica.
  for (int i = 0; i < acked; ++i) {
    auto got = r.b->Client().Get(absl::StrCat(
        "/apis/networking.istio.io/v1alpha3/namespaces/default/destinationrules/dr-", i));
    INFO(i);
    REQUIRE(got);
    CHECK(got->status == 200);
  }
}

TEST_CASE("On etcd an /apply batch over etcd's limits is refused whole, with etcd's reason") {
  TempDir dir;
  EtcdCluster etcd(dir / "etcd");
  REQUIRE(etcd.Start());
  MeshpilotProcess pilot(MESHPILOT_BIN, dir / "meshpilot", etcd.MeshpilotFlags("solo"));
  REQUIRE(pilot.Start());
  auto services = [](int n) {
    std::string yaml;
    for (int i = 0; i < n; ++i) {
      absl::StrAppend(&yaml, "---\napiVersion: v1\nkind: Service\nmetadata: {name: s", i,
                      "}\nspec: {ports: [{port: 80}]}\n");
    }
    return yaml;
  };
  auto big = ApplyOn(pilot, services(200));
  REQUIRE(big);
  CHECK(big->status == 400);
  CHECK(absl::StrContains(big->body, "exceeds etcd's limits, nothing was written"));
  CHECK(absl::StrContains(big->body, "too many operations in txn request"));
  auto listed = pilot.Client().Get("/api/v1/namespaces/default/services");
  REQUIRE(listed);
  CHECK(nlohmann::json::parse(listed->body)["items"].empty());
  auto fits = ApplyOn(pilot, services(100));
  REQUIRE(fits);
  CHECK(fits->status == 200);
  CHECK(nlohmann::json::parse(
            pilot.Client().Get("/api/v1/namespaces/default/services")->body)["items"]
            .size() == 100);
}

}  // namespace
}  // namespace mesh::testing
