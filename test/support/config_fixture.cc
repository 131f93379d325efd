#include "test/support/config_fixture.h"

#include <stdexcept>

#include "test/support/service_fixture.h"

namespace mesh::testing {

model::ConfigSnapshotPtr Config(const std::string& yaml) {
  ServiceFixture f;
  auto result = f.service->Apply(yaml, api::BodyFormat::kYaml, "default");
  if (!result.ok()) throw std::runtime_error(std::string(result.status().message()));
  return f.index->Current();  // the snapshot outlives the store it was read from
}

}  // namespace mesh::testing
