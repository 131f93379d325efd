#include "controlplane/model/config_index.h"

#include <catch2/catch.hpp>

#include "controlplane/store/wal_store.h"
#include "test/support/temp_dir.h"

namespace mesh::model {
namespace {

std::string Gateway(const std::string& name) {
  return R"({"apiVersion":"networking.istio.io/v1alpha3","kind":"Gateway","metadata":{"name":")" +
         name +
         R"(","namespace":"ns"},"spec":{"servers":[{"port":{"number":80,"name":"http","protocol":"HTTP"},"hosts":["*"]}]}})";
}

TEST_CASE(
    "The index loads existing resources and follows the store, publishing immutable snapshots") {
  mesh::testing::TempDir dir;
  auto store = store::WalStore::Open(dir.path());
  REQUIRE(store.ok());
  const KindInfo& gw = Info(Kind::kGateway);
  REQUIRE((*store)->Commit({store::Op::Put(StoreKey(gw, "ns", "a"), Gateway("a"))}).ok());
  auto index = ConfigIndex::Start(store->get());
  REQUIRE(index.ok());
  ConfigSnapshotPtr first = (*index)->Current();
  CHECK(first->revision() == 1);
  REQUIRE(first->Find(Kind::kGateway, "ns", "a") != nullptr);
  CHECK(first->Find(Kind::kGateway, "ns", "a")->meta.resource_version == "1");

  REQUIRE((*store)->Commit({store::Op::Put(StoreKey(gw, "ns", "b"), Gateway("b"))}).ok());
  REQUIRE((*index)->WaitForRevision(2, absl::Seconds(5)));
  ConfigSnapshotPtr second = (*index)->Current();
  CHECK(second->Count(Kind::kGateway) == 2);
  CHECK(second->Find(Kind::kGateway, "ns", "b") != nullptr);
  CHECK(first->Count(Kind::kGateway) == 1);  // the old snapshot did not change
  CHECK(first->Find(Kind::kGateway, "ns", "b") == nullptr);
  // Objects that did not change are shared, not copied.
  CHECK(first->Find(Kind::kGateway, "ns", "a") == second->Find(Kind::kGateway, "ns", "a"));

  REQUIRE((*store)->Commit({store::Op::Delete(StoreKey(gw, "ns", "a"))}).ok());
  REQUIRE((*index)->WaitForRevision(3, absl::Seconds(5)));
  CHECK((*index)->Current()->Find(Kind::kGateway, "ns", "a") == nullptr);
  CHECK((*index)->Current()->Count(Kind::kGateway) == 1);
  std::vector<const Object*> sorted = (*index)->Current()->Sorted(Kind::kGateway);
  REQUIRE(sorted.size() == 1);
  CHECK(sorted[0]->meta.name == "b");
}

}  // namespace
}  // namespace mesh::model
