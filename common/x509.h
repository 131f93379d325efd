#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

// X.509 helpers on OpenSSL, shared by the proxy (its key and CSR) and the tests.
namespace mesh::x509 {

struct KeyAndCsr {
  std::string key_pem;  // a new EC P-256 private key
  std::string csr_pem;  // a request signed by it, asking for `san_uris` (if any)
};
absl::StatusOr<KeyAndCsr> MakeKeyAndCsr(const std::vector<std::string>& san_uris = {});

struct CertificateInfo {
  std::vector<std::string> uri_sans;
  absl::Time not_before, not_after;
};
// What a PEM certificate says; InvalidArgument when it does not parse.
absl::StatusOr<CertificateInfo> Inspect(const std::string& cert_pem);

}  // namespace mesh::x509
