// Mutation fuzzing of the config API's input path: every tutorial manifest, mutated at random
// (bytes flipped, inserted, deleted, lines duplicated), goes through /apply's decoder and
// validator. Each must be answered (applied, or refused with InvalidArgument) without crashing,
// and a refused batch must leave the store as it was. The seed is fixed, so a failure replays.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "controlplane/api/resource_service.h"
#include "test/support/service_fixture.h"
#include "test/support/voting_app.h"

namespace mesh {
namespace {

std::vector<std::string> Manifests() {
  std::vector<std::string> out;
  for (const char* sub : {"istio", "kubernetes"}) {
    for (const auto& e :
         std::filesystem::directory_iterator(std::string(MESH_MANIFESTS_DIR) + "/" + sub)) {
      out.push_back(testing::ReadText(e.path().string()));
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string Mutate(std::string s, std::mt19937& rng) {
  static const std::string kInteresting = "{}[]:-'\"&*!|>#%@`\n\t \\0123456789.eE~";
  int edits = std::uniform_int_distribution<int>(1, 8)(rng);
  for (int i = 0; i < edits && !s.empty(); ++i) {
    size_t pos = std::uniform_int_distribution<size_t>(0, s.size() - 1)(rng);
    switch (std::uniform_int_distribution<int>(0, 4)(rng)) {
      case 0: s[pos] = kInteresting[rng() % kInteresting.size()]; break;
      case 1: s.insert(pos, 1, kInteresting[rng() % kInteresting.size()]); break;
      case 2: s.erase(pos, std::uniform_int_distribution<size_t>(1, 16)(rng)); break;
      case 3: {
        size_t start = s.rfind('\n', pos);
        start = start == std::string::npos ? 0 : start + 1;
        size_t end = s.find('\n', pos);
        if (end == std::string::npos) end = s.size();
        s.insert(start, s.substr(start, end - start) + "\n");
        break;
      }
      case 4: s[pos] = static_cast<char>(rng() % 256); break;
    }
  }
  return s;
}

TEST_CASE("Mutated manifests never crash the decoder and refused batches change nothing") {
  testing::ServiceFixture f;
  std::vector<std::string> manifests = Manifests();
  REQUIRE(!manifests.empty());
  std::mt19937 rng(20261123);
  int applied = 0, refused = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string body = Mutate(manifests[i % manifests.size()], rng);
    int64_t before = f.store->Revision();
    auto r = f.service->Apply(body, api::BodyFormat::kYaml, "fuzz");
    if (r.ok()) {
      ++applied;
    } else {
      INFO(body);
      REQUIRE(absl::IsInvalidArgument(r.status()));
      REQUIRE(!r.status().message().empty());
      REQUIRE(f.store->Revision() == before);
      ++refused;
    }
  }
  // Both outcomes must actually occur, or the mutations are too weak or too strong to test much.
  CHECK(applied > 100);
  CHECK(refused > 100);
}

TEST_CASE("Mutated JSON bodies never crash the decoder") {
  testing::ServiceFixture f;
  std::string svc =
      R"({"apiVersion":"v1","kind":"Service","metadata":{"name":"a","labels":{"x":"y"}},)"
      R"("spec":{"ports":[{"port":80,"name":"http","targetPort":"web"}],"selector":{"app":"a"}}})";
  std::mt19937 rng(7);
  for (int i = 0; i < 20000; ++i) {
    auto r = f.service->Apply(Mutate(svc, rng), api::BodyFormat::kJson, "fuzz");
    if (!r.ok()) REQUIRE(absl::IsInvalidArgument(r.status()));
  }
}

}  // namespace
}  // namespace mesh
