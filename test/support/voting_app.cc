#include "test/support/voting_app.h"

#include <fstream>
#include <sstream>
#include <stdexcept>

namespace mesh::testing {

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const std::vector<std::vector<std::string>>& VotingAppSteps() {
  static const std::vector<std::vector<std::string>> steps = {
      {"kubernetes/step-1-create-voting-app.yaml", "istio/step-1-create-voting-app-gateway.yaml"},
      {"kubernetes/step-2-update-voting-analytics-to-1.1.yaml",
       "istio/step-2-update-and-add-routing-for-all-components.yaml"},
      {"kubernetes/step-3-update-voting-app-with-new-storage.yaml",
       "istio/step-3-add-routing-for-2.0-components.yaml"},
  };
  return steps;
}

model::ConfigSnapshotPtr ApplyVotingAppStep(ServiceFixture& fx, const std::string& manifests_dir,
                                            size_t step) {
  for (const std::string& file : VotingAppSteps().at(step - 1)) {
    auto applied =
        fx.service->Apply(ReadText(manifests_dir + "/" + file), api::BodyFormat::kYaml, "voting");
    if (!applied.ok()) {
      throw std::runtime_error(file + ": " + std::string(applied.status().message()));
    }
  }
  return fx.index->Current();
}

model::ConfigSnapshotPtr ApplyVotingApp(ServiceFixture& fx, const std::string& manifests_dir,
                                        size_t through) {
  for (size_t step = 1; step <= through && step <= VotingAppSteps().size(); ++step) {
    ApplyVotingAppStep(fx, manifests_dir, step);
  }
  return fx.index->Current();
}

}  // namespace mesh::testing
