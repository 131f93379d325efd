// Crash test: clients apply in a loop while meshpilot is killed with SIGKILL at random moments.
// After every restart, each resource whose apply was answered 2xx must be there, intact, and
// each batch must be all there or not there at all.
#include <atomic>
#include <catch2/catch.hpp>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "test/support/meshpilot.h"
#include "test/support/temp_dir.h"

namespace mesh {
namespace {

using nlohmann::json;

std::string ServiceDoc(const std::string& name, int port) {
  return absl::StrCat("---\napiVersion: v1\nkind: Service\nmetadata:\n  name: ", name,
                      "\n  labels: {writer: crash-test}\nspec:\n  ports: [{port: ", port,
                      ", name: p}]\n");
}

struct Written {
  int port;
  int batch;  // batch id; documents of one request share it
};

TEST_CASE("No acknowledged apply is lost when meshpilot is killed with SIGKILL mid-load") {
  testing::TempDir dir;
  testing::MeshpilotProcess pilot(MESHPILOT_BIN, dir.path() + "/data",
                                  {"--compact-log-bytes", "65536"});
  std::mt19937 rng(std::random_device{}());
  const int kRounds = 6;
  std::map<std::string, Written> acked;             // name -> what a 2xx answer confirmed
  std::map<int, std::vector<std::string>> batches;  // every batch sent, acked or not
  std::mutex mu;
  int next_batch = 0;

  for (int round = 0; round < kRounds; ++round) {
    REQUIRE(pilot.Start());
    // Everything acknowledged before this restart is present and intact.
    {
      auto client = pilot.Client();
      auto res = client.Get("/api/v1/services");
      REQUIRE(res);
      REQUIRE(res->status == 200);
      std::map<std::string, int> present;
      json list = json::parse(res->body);
      for (const json& item : list["items"]) {
        present[item["metadata"]["name"]] = item["spec"]["ports"][0]["port"];
      }
      for (const auto& [name, w] : acked) {
        INFO("round " << round << ": " << name);
        REQUIRE(present.count(name) == 1);
        CHECK(present[name] == w.port);
      }
      for (const auto& [id, names] : batches) {
        size_t n = 0;
        for (const auto& name : names) n += present.count(name);
        INFO("batch " << id);
        CHECK((n == 0 || n == names.size()));
      }
    }

    std::atomic<bool> stop{false};
    std::vector<std::thread> writers;
    for (int w = 0; w < 4; ++w) {
      writers.emplace_back([&, w] {
        auto client = pilot.Client();
        for (int i = 0; !stop; ++i) {
          int batch_id, size = (i % 3 == 0) ? 10 : 1;
          {
            std::lock_guard lock(mu);
            batch_id = next_batch++;
          }
          std::string body;
          std::vector<std::string> names;
          for (int d = 0; d < size; ++d) {
            std::string name = absl::StrCat("r", round, "-w", w, "-b", batch_id, "-d", d);
            body += ServiceDoc(name, 1000 + (batch_id * 7 + d) % 60000);
            names.push_back(name);
          }
          {
            std::lock_guard lock(mu);
            batches[batch_id] = names;
          }
          auto res = client.Post("/apply?namespace=crash", body, "application/yaml");
          if (!res) break;  // the server is gone
          if (res->status == 200) {
            std::lock_guard lock(mu);
            for (int d = 0; d < size; ++d)
              acked[names[d]] = Written{1000 + (batch_id * 7 + d) % 60000, batch_id};
          }
        }
      });
    }
    std::this_thread::sleep_for(
        std::chrono::milliseconds(std::uniform_int_distribution<int>(150, 700)(rng)));
    pilot.Kill();
    stop = true;
    for (auto& t : writers) t.join();
  }
  REQUIRE(pilot.Start());
  auto res = pilot.Client().Get("/api/v1/namespaces/crash/services");
  REQUIRE(res);
  size_t present = json::parse(res->body)["items"].size();
  CHECK(present >= acked.size());
  INFO("acknowledged " << acked.size() << " resources over " << kRounds << " kills");
  CHECK(acked.size() > 100);
}

}  // namespace
}  // namespace mesh
