#include "controlplane/ca/authority.h"

#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include "absl/strings/match.h"
#include "test/support/temp_dir.h"
#include "test/support/x509.h"

namespace mesh::ca {
namespace {

const std::string kSpiffe = "spiffe://cluster.local/ns/voting/sa/voting-app";

TEST_CASE("The CA creates its root once, private key 0600, and loads the same root again") {
  testing::TempDir dir;
  auto first = Authority::LoadOrCreate(dir / "ca/root-cert.pem", dir / "ca/root-key.pem", {});
  REQUIRE(first.ok());
  struct stat st;
  REQUIRE(::stat((dir / "ca/root-key.pem").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  auto again = Authority::LoadOrCreate(dir / "ca/root-cert.pem", dir / "ca/root-key.pem", {});
  REQUIRE(again.ok());
  CHECK((*again)->root_cert_pem() == (*first)->root_cert_pem());
}

TEST_CASE("A root that is half there, or a key of another root, is refused by file name") {
  testing::TempDir a, b;
  REQUIRE(Authority::LoadOrCreate(a / "cert.pem", a / "key.pem", {}).ok());
  REQUIRE(Authority::LoadOrCreate(b / "cert.pem", b / "key.pem", {}).ok());
  std::filesystem::remove(a / "key.pem");
  auto half = Authority::LoadOrCreate(a / "cert.pem", a / "key.pem", {});
  CHECK(half.status().code() == absl::StatusCode::kFailedPrecondition);
  CHECK(absl::StrContains(half.status().message(), "key.pem is missing"));
  auto mixed = Authority::LoadOrCreate(a / "cert.pem", b / "key.pem", {});
  CHECK(absl::StrContains(mixed.status().message(), "is not the key of"));
}

TEST_CASE("A workload certificate carries the SPIFFE ID, verifies against the root, and expires") {
  testing::TempDir dir;
  auto ca = Authority::LoadOrCreate(dir / "c.pem", dir / "k.pem", {});
  REQUIRE(ca.ok());
  std::string key;
  std::string csr = testing::MakeCsr({kSpiffe}, &key);
  auto cert = (*ca)->Sign(csr, {"voting", "voting-app"});
  INFO(cert.status().message());
  REQUIRE(cert.ok());
  CHECK(testing::UriSans(cert->cert_pem) == std::vector<std::string>{kSpiffe});
  CHECK(testing::VerifiesAgainst(cert->cert_pem, (*ca)->root_cert_pem()));
  CHECK(testing::ValiditySeconds(cert->cert_pem) == 24 * 3600 + 60);  // 24 h, from a minute ago

  // A CSR without SANs gets the identity too; a requested TTL is capped at max_ttl.
  auto plain =
      (*ca)->Sign(testing::MakeCsr({}, nullptr), {"voting", "voting-app"}, absl::Hours(24 * 365));
  REQUIRE(plain.ok());
  CHECK(testing::UriSans(plain->cert_pem) == std::vector<std::string>{kSpiffe});
  CHECK(testing::ValiditySeconds(plain->cert_pem) == 7 * 24 * 3600 + 60);

  // Expired by the time a verifier looks: signed two days in the past.
  auto old =
      (*ca)->Sign(csr, {"voting", "voting-app"}, absl::Hours(1), absl::Now() - absl::Hours(48));
  REQUIRE(old.ok());
  CHECK_FALSE(testing::VerifiesAgainst(old->cert_pem, (*ca)->root_cert_pem()));
}

TEST_CASE("A CSR asking for another identity, or broken, is refused") {
  testing::TempDir dir;
  auto ca = Authority::LoadOrCreate(dir / "c.pem", dir / "k.pem", {});
  REQUIRE(ca.ok());
  auto other = (*ca)->Sign(testing::MakeCsr({"spiffe://cluster.local/ns/voting/sa/admin"}, nullptr),
                           {"voting", "voting-app"});
  CHECK(other.status().code() == absl::StatusCode::kPermissionDenied);
  CHECK(other.status().message() ==
        "CSR asks for subject alternative name spiffe://cluster.local/ns/voting/sa/admin; this "
        "caller may only have spiffe://cluster.local/ns/voting/sa/voting-app");
  auto extra = (*ca)->Sign(testing::MakeCsr({kSpiffe, "spiffe://cluster.local/ns/x/sa/y"}, nullptr),
                           {"voting", "voting-app"});
  CHECK(extra.status().code() == absl::StatusCode::kPermissionDenied);
  auto garbage = (*ca)->Sign("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n", {"voting", "a"});
  CHECK(garbage.status().code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("meshpilot's serving certificate names its hosts and IPs, and nothing else") {
  testing::TempDir dir;
  auto ca = Authority::LoadOrCreate(dir / "cert.pem", dir / "key.pem", {});
  REQUIRE(ca.ok());
  // The CSR's own SANs do not matter: the names are meshpilot's choice.
  std::string csr = testing::MakeCsr({kSpiffe}, nullptr);
  auto cert = (*ca)->SignServing(csr, {"meshpilot", "127.0.0.1", "::1"}, absl::Hours(2));
  REQUIRE(cert.ok());
  CHECK(testing::MatchesHost(cert->cert_pem, "meshpilot"));
  CHECK(testing::MatchesHost(cert->cert_pem, "127.0.0.1"));
  CHECK(testing::MatchesHost(cert->cert_pem, "::1"));
  CHECK(!testing::MatchesHost(cert->cert_pem, "10.0.0.1"));
  CHECK(!testing::MatchesHost(cert->cert_pem, "other"));
  CHECK(testing::UriSans(cert->cert_pem).empty());
  CHECK(testing::VerifiesAgainst(cert->cert_pem, (*ca)->root_cert_pem()));
  CHECK(testing::ValiditySeconds(cert->cert_pem) == 2 * 3600 + 60);
  CHECK((*ca)->SignServing(csr, {}).status().code() == absl::StatusCode::kInvalidArgument);
  CHECK((*ca)->SignServing(csr, {"a,DNS:evil"}).status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK((*ca)->SignServing("garbage", {"meshpilot"}).status().code() ==
        absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace mesh::ca
