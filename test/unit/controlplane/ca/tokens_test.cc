#include "controlplane/ca/tokens.h"

#include <catch2/catch.hpp>

#include "absl/strings/match.h"
#include "controlplane/store/wal_store.h"
#include "test/support/temp_dir.h"

namespace mesh::ca {
namespace {

TEST_CASE("A join token grants its identity, is stored only as a hash, and can expire") {
  testing::TempDir dir;
  auto store = store::WalStore::Open(dir.path());
  REQUIRE(store.ok());
  JoinTokens tokens(store->get());
  absl::Time now = absl::FromUnixSeconds(1'800'000'000);
  auto token = tokens.Create({"voting", "voting-app"}, absl::Hours(1), now);
  REQUIRE(token.ok());
  auto who = tokens.Authenticate(*token, now + absl::Minutes(59));
  REQUIRE(who.ok());
  CHECK(who->ns == "voting");
  CHECK(who->service_account == "voting-app");

  auto listed = (*store)->List(JoinTokens::kPrefix);
  REQUIRE(listed.ok());
  REQUIRE(listed->kvs.size() == 1);
  CHECK(!absl::StrContains(listed->kvs[0].key, *token));
  CHECK(!absl::StrContains(listed->kvs[0].value, *token));

  CHECK(tokens.Authenticate(*token, now + absl::Hours(2)).status().message() ==
        "expired join token");
  CHECK(tokens.Authenticate("mpt-guess", now).status().message() == "unknown join token");
  CHECK(tokens.Authenticate("", now).status().code() == absl::StatusCode::kUnauthenticated);
}

TEST_CASE("Tokens are only made for DNS-label identities") {
  testing::TempDir dir;
  auto store = store::WalStore::Open(dir.path());
  REQUIRE(store.ok());
  JoinTokens tokens(store->get());
  CHECK(tokens.Create({"Voting", "a"}).status().message() ==
        "namespace \"Voting\" is not a DNS label");
  CHECK(tokens.Create({"voting", "a,b"}).status().message() ==
        "service account \"a,b\" is not a DNS label");
  CHECK(tokens.Create({"voting", "a"}, absl::ZeroDuration()).status().code() ==
        absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace mesh::ca
