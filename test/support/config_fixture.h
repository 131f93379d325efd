#pragma once

#include <memory>
#include <string>

#include "controlplane/model/config_index.h"

namespace mesh::testing {

// Builds a config snapshot from YAML documents (namespace "default" unless they name one), by
// applying them to a fresh embedded store and indexing it. Throws on invalid input.
model::ConfigSnapshotPtr Config(const std::string& yaml);

}  // namespace mesh::testing
