#include "test/support/x509.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <stdexcept>

#include "common/x509.h"

namespace mesh::testing {
namespace {

X509* ReadCert(const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (!cert) throw std::runtime_error("not a PEM certificate");
  return cert;
}

}  // namespace

std::string MakeCsr(const std::vector<std::string>& san_uris, std::string* key_pem) {
  absl::StatusOr<x509::KeyAndCsr> made = x509::MakeKeyAndCsr(san_uris);
  if (!made.ok()) throw std::runtime_error(std::string(made.status().message()));
  if (key_pem) *key_pem = made->key_pem;
  return made->csr_pem;
}

std::vector<std::string> UriSans(const std::string& cert_pem) {
  absl::StatusOr<x509::CertificateInfo> info = x509::Inspect(cert_pem);
  if (!info.ok()) throw std::runtime_error("not a PEM certificate");
  return info->uri_sans;
}

bool MatchesHost(const std::string& cert_pem, const std::string& name) {
  X509* cert = ReadCert(cert_pem);
  bool ok = X509_check_ip_asc(cert, name.c_str(), 0) == 1 ||
            X509_check_host(cert, name.c_str(), name.size(), 0, nullptr) == 1;
  X509_free(cert);
  return ok;
}

bool VerifiesAgainst(const std::string& cert_pem, const std::string& root_pem) {
  X509* cert = ReadCert(cert_pem);
  X509* root = ReadCert(root_pem);
  X509_STORE* store = X509_STORE_new();
  X509_STORE_add_cert(store, root);
  X509_STORE_CTX* ctx = X509_STORE_CTX_new();
  X509_STORE_CTX_init(ctx, store, cert, nullptr);
  bool ok = X509_verify_cert(ctx) == 1;
  X509_STORE_CTX_free(ctx);
  X509_STORE_free(store);
  X509_free(root);
  X509_free(cert);
  return ok;
}

long ValiditySeconds(const std::string& cert_pem) {
  X509* cert = ReadCert(cert_pem);
  int days = 0, secs = 0;
  ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(cert), X509_get0_notAfter(cert));
  X509_free(cert);
  return days * 86400L + secs;
}

}  // namespace mesh::testing
