#include "controlplane/ca/serving_certificate.h"

#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <thread>

#include "controlplane/store/record_io.h"
#include "test/support/process.h"
#include "test/support/temp_dir.h"
#include "test/support/x509.h"

namespace mesh::ca {
namespace {

TEST_CASE("The serving certificate is written beside its 0600 key and re-signed before expiry") {
  testing::TempDir dir;
  auto ca = Authority::Create({});
  REQUIRE(ca.ok());
  ServingCertificate::Options options;
  options.dir = dir / "xds-tls";
  options.names = {"meshpilot", "127.0.0.1"};
  options.ttl = absl::Seconds(3);
  auto serving = ServingCertificate::Start(ca->authority.get(), options);
  REQUIRE(serving.ok());
  const std::string key = *store::ReadFile(dir / "xds-tls/key.pem");
  const std::string first = *store::ReadFile(dir / "xds-tls/cert.pem");
  struct stat st;
  REQUIRE(::stat((dir / "xds-tls/key.pem").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  CHECK(*store::ReadFile(dir / "xds-tls/root.pem") == ca->authority->root_cert_pem());
  CHECK(testing::MatchesHost(first, "127.0.0.1"));
  CHECK(testing::VerifiesAgainst(first, ca->authority->root_cert_pem()));
  CHECK((*serving)->Credentials() != nullptr);
  // Two thirds of 3 s later a new certificate for the same key is in place.
  REQUIRE(testing::WaitFor([&] { return *store::ReadFile(dir / "xds-tls/cert.pem") != first; },
                           std::chrono::seconds(5)));
  CHECK(*store::ReadFile(dir / "xds-tls/key.pem") == key);
  CHECK(testing::VerifiesAgainst(*store::ReadFile(dir / "xds-tls/cert.pem"),
                                 ca->authority->root_cert_pem()));
}

}  // namespace
}  // namespace mesh::ca
