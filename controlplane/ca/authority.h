#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

struct evp_pkey_st;

// meshpilot's certificate authority: a root key and certificate (made on first start, or given),
// and the signing of workload certificates with SPIFFE identities. The root key never leaves
// this class; only the root certificate is handed out.
namespace mesh::ca {

// A workload's identity: spiffe://<trust domain>/ns/<namespace>/sa/<service account>.
struct Identity {
  std::string ns, service_account;
  std::string SpiffeId(const std::string& trust_domain) const;
};

struct IssuedCertificate {
  std::string cert_pem;  // the workload certificate
  absl::Time not_after;
};

class Authority {
 public:
  struct Options {
    std::string trust_domain = "cluster.local";
    absl::Duration default_ttl = absl::Hours(24);
    absl::Duration max_ttl = absl::Hours(24 * 7);
  };

  // Loads the root from `cert_path` and `key_path` when both exist, or creates them (an EC P-256
  // key, mode 0600, and a self-signed CA certificate for ten years) when neither does. One
  // without the other, a key that does not match its certificate, or a certificate that is not a
  // CA is an error naming the file.
  static absl::StatusOr<std::unique_ptr<Authority>> LoadOrCreate(const std::string& cert_path,
                                                                 const std::string& key_path,
                                                                 Options options);
  // A root from PEM text (the names are for errors): the same checks as LoadOrCreate.
  static absl::StatusOr<std::unique_ptr<Authority>> FromPem(
      const std::string& cert_pem, const std::string& key_pem, Options options,
      const std::string& cert_name = "the root certificate",
      const std::string& key_name = "the root key");
  // A new root; the caller stores `key_pem` (the only copy of the key outside this object).
  struct Created {
    std::unique_ptr<Authority> authority;
    std::string key_pem;
  };
  static absl::StatusOr<Created> Create(Options options);
  ~Authority();

  const std::string& root_cert_pem() const { return root_pem_; }
  const Options& options() const { return options_; }

  // Signs `csr_pem` for `identity`: checks the request's own signature, refuses (PermissionDenied)
  // a request that asks for any subject alternative name other than the identity's SPIFFE ID,
  // and issues a leaf certificate (SAN URI = the SPIFFE ID; client and server auth) valid from a
  // minute ago for `ttl` (default options().default_ttl, at most options().max_ttl). Errors:
  // InvalidArgument for a malformed or wrongly signed CSR.
  absl::StatusOr<IssuedCertificate> Sign(const std::string& csr_pem, const Identity& identity,
                                         absl::Duration ttl = absl::ZeroDuration(),
                                         absl::Time now = absl::Now()) const;

  // Signs `csr_pem` as meshpilot's own serving certificate (for ADS over TLS): the SANs are
  // `names`, each a DNS name or an IP address; the CSR's own SANs are ignored. Same lifetime
  // rules as Sign.
  absl::StatusOr<IssuedCertificate> SignServing(const std::string& csr_pem,
                                                const std::vector<std::string>& names,
                                                absl::Duration ttl = absl::ZeroDuration(),
                                                absl::Time now = absl::Now()) const;

 private:
  absl::StatusOr<IssuedCertificate> Issue(evp_pkey_st* pub, const std::string& sans,
                                          absl::Duration ttl, absl::Time now) const;
  struct Keys;
  Authority(std::unique_ptr<Keys> keys, std::string root_pem, Options options);
  std::unique_ptr<Keys> keys_;
  std::string root_pem_;
  Options options_;
};

}  // namespace mesh::ca
