#pragma once

#include <string>
#include <vector>

#include "controlplane/model/config_index.h"
#include "test/support/service_fixture.h"

namespace mesh::testing {

// A whole file as a string; empty if it cannot be read.
std::string ReadText(const std::string& path);

// The voting-app tutorial's files per step, in the order the tutorial applies them, relative to
// the manifests folder (kubernetes/... then istio/...).
const std::vector<std::vector<std::string>>& VotingAppSteps();

// Applies the files of one step (1-based) into namespace "voting"; throws if one is refused.
model::ConfigSnapshotPtr ApplyVotingAppStep(ServiceFixture& fx, const std::string& manifests_dir,
                                            size_t step);

// Applies the tutorial's steps 1..`through` into namespace "voting", file by file, as the
// tutorial does; throws if a file is refused. Returns the config the index then holds.
model::ConfigSnapshotPtr ApplyVotingApp(ServiceFixture& fx, const std::string& manifests_dir,
                                        size_t through = 3);

}  // namespace mesh::testing
