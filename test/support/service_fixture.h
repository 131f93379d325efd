#pragma once

#include <memory>

#include "controlplane/api/resource_service.h"
#include "controlplane/model/config_index.h"
#include "controlplane/store/wal_store.h"
#include "test/support/temp_dir.h"

namespace mesh::testing {

// A ResourceService over a fresh embedded store in a temporary directory.
struct ServiceFixture {
  ServiceFixture() {
    auto s = store::WalStore::Open(dir.path() + "/store");
    if (!s.ok()) throw std::runtime_error(std::string(s.status().message()));
    store = std::move(*s);
    auto i = model::ConfigIndex::Start(store.get());
    if (!i.ok()) throw std::runtime_error(std::string(i.status().message()));
    index = std::move(*i);
    service = std::make_unique<api::ResourceService>(store.get(), index.get());
  }

  TempDir dir;
  std::unique_ptr<store::WalStore> store;
  std::unique_ptr<model::ConfigIndex> index;
  std::unique_ptr<api::ResourceService> service;
};

}  // namespace mesh::testing
