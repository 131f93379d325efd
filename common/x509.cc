#include "common/x509.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>

#include "common/openssl_ptr.h"

namespace mesh::x509 {
namespace {

using openssl::BioPtr;
using openssl::Drain;

absl::Time FromAsn1(const ASN1_TIME* t) {
  struct tm tm = {};
  ASN1_TIME_to_tm(t, &tm);
  return absl::FromTM(tm, absl::UTCTimeZone());
}

}  // namespace

absl::StatusOr<KeyAndCsr> MakeKeyAndCsr(const std::vector<std::string>& san_uris) {
  openssl::KeyPtr key(EVP_EC_gen("P-256"));
  openssl::ReqPtr req(X509_REQ_new());
  if (!key || !req) return absl::InternalError("cannot make a key");
  X509_REQ_set_pubkey(req.get(), key.get());
  if (!san_uris.empty()) {
    std::string value;
    for (const std::string& uri : san_uris) value += (value.empty() ? "URI:" : ",URI:") + uri;
    STACK_OF(X509_EXTENSION)* exts = sk_X509_EXTENSION_new_null();
    X509_EXTENSION* ext =
        X509V3_EXT_conf_nid(nullptr, nullptr, NID_subject_alt_name, value.c_str());
    if (ext) sk_X509_EXTENSION_push(exts, ext);
    X509_REQ_add_extensions(req.get(), exts);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    if (!ext) return absl::InvalidArgumentError("bad subject alternative names");
  }
  if (X509_REQ_sign(req.get(), key.get(), EVP_sha256()) == 0) {
    ERR_clear_error();
    return absl::InternalError("cannot sign the CSR");
  }
  KeyAndCsr out;
  BioPtr kb(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(kb.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr);
  out.key_pem = Drain(kb.get());
  BioPtr rb(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509_REQ(rb.get(), req.get());
  out.csr_pem = Drain(rb.get());
  return out;
}

absl::StatusOr<CertificateInfo> Inspect(const std::string& cert_pem) {
  BioPtr bio(BIO_new_mem_buf(cert_pem.data(), static_cast<int>(cert_pem.size())));
  openssl::CertPtr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!cert) {
    ERR_clear_error();
    return absl::InvalidArgumentError("not a PEM certificate");
  }
  CertificateInfo info;
  info.not_before = FromAsn1(X509_get0_notBefore(cert.get()));
  info.not_after = FromAsn1(X509_get0_notAfter(cert.get()));
  auto* names = static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert.get(), NID_subject_alt_name, nullptr, nullptr));
  for (int i = 0; names && i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* n = sk_GENERAL_NAME_value(names, i);
    if (n->type != GEN_URI) continue;
    info.uri_sans.emplace_back(
        reinterpret_cast<const char*>(ASN1_STRING_get0_data(n->d.uniformResourceIdentifier)),
        ASN1_STRING_length(n->d.uniformResourceIdentifier));
  }
  GENERAL_NAMES_free(names);
  return info;
}

}  // namespace mesh::x509
