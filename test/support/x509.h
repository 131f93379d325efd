#pragma once

#include <string>
#include <vector>

// Certificate helpers for tests (OpenSSL): make a key and a CSR as a proxy would, and read back
// what a certificate says.
namespace mesh::testing {

// A new EC P-256 key (PEM in `key_pem`) and a CSR signed by it, asking for `san_uris` as URI
// subject alternative names (none when empty).
std::string MakeCsr(const std::vector<std::string>& san_uris, std::string* key_pem);

// The URI subject alternative names of a PEM certificate.
std::vector<std::string> UriSans(const std::string& cert_pem);

// Whether a TLS client would take `cert_pem` for `name`, a DNS name or an IP address.
bool MatchesHost(const std::string& cert_pem, const std::string& name);

// Whether `cert_pem` verifies against `root_pem` alone (chain and validity).
bool VerifiesAgainst(const std::string& cert_pem, const std::string& root_pem);

// notAfter - notBefore of a PEM certificate, in seconds.
long ValiditySeconds(const std::string& cert_pem);

}  // namespace mesh::testing
