#include "controlplane/ca/stored_root.h"

#include <catch2/catch.hpp>

#include "absl/strings/match.h"
#include "controlplane/store/wal_store.h"
#include "test/support/temp_dir.h"
#include "test/support/x509.h"

namespace mesh::ca {
namespace {

TEST_CASE("Sealed data opens with its secret only, and tampering is detected") {
  auto sealed = Seal("a secret of some length", "the CA key");
  REQUIRE(sealed.ok());
  CHECK(!absl::StrContains(*sealed, "the CA key"));
  CHECK(*Open("a secret of some length", *sealed) == "the CA key");
  CHECK(absl::IsFailedPrecondition(Open("another secret of a length", *sealed).status()));
  std::string tampered = *sealed;
  tampered[tampered.size() / 2] ^= 1;
  CHECK(absl::IsFailedPrecondition(Open("a secret of some length", tampered).status()));
  CHECK(!Open("a secret of some length", "short").ok());
  CHECK(*Seal("a secret of some length", "x") != *Seal("a secret of some length", "x"));  // nonce
}

TEST_CASE("The root in the store is made once, shared, and its key never stored in the clear") {
  testing::TempDir dir;
  auto store = store::WalStore::Open(dir.path());
  REQUIRE(store.ok());
  const std::string secret = "the replicas' shared secret";
  auto first = LoadOrCreateInStore(store->get(), secret, {});
  REQUIRE(first.ok());
  auto second = LoadOrCreateInStore(store->get(), secret, {});
  REQUIRE(second.ok());
  CHECK((*second)->root_cert_pem() == (*first)->root_cert_pem());
  auto stored = (*store)->Get(kStoredRootKey);
  REQUIRE(stored.ok());
  REQUIRE(stored->has_value());
  CHECK(!absl::StrContains((*stored)->value, "PRIVATE KEY"));
  // What the second one signs verifies against the first one's root.
  std::string key;
  auto cert = (*second)->Sign(testing::MakeCsr({}, &key), {"default", "web"});
  REQUIRE(cert.ok());
  CHECK(testing::VerifiesAgainst(cert->cert_pem, (*first)->root_cert_pem()));

  auto wrong = LoadOrCreateInStore(store->get(), "not the secret they share", {});
  CHECK(absl::IsFailedPrecondition(wrong.status()));
  CHECK(absl::StrContains(wrong.status().message(), "does not decrypt with this key"));
  CHECK(absl::IsInvalidArgument(LoadOrCreateInStore(store->get(), "", {}).status()));
}

}  // namespace
}  // namespace mesh::ca
