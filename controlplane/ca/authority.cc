#include "controlplane/ca/authority.h"

#include <arpa/inet.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/openssl_ptr.h"
#include "controlplane/store/record_io.h"

namespace mesh::ca {
namespace {

using openssl::BioPtr;
using openssl::CertPtr;
using openssl::Deleter;
using openssl::KeyPtr;
using openssl::ReqPtr;
using ExtsPtr = std::unique_ptr<STACK_OF(X509_EXTENSION), void (*)(STACK_OF(X509_EXTENSION)*)>;
using NamesPtr = std::unique_ptr<GENERAL_NAMES, Deleter<GENERAL_NAMES, GENERAL_NAMES_free>>;

std::string OpenSslError(const std::string& what) {
  unsigned long e = ERR_get_error();
  char buf[256] = "unknown error";
  if (e) ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  return absl::StrCat(what, ": ", buf);
}

std::string ToPem(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(bio.get(), cert);
  return openssl::Drain(bio.get());
}

// A certificate request whose signature verifies with its own key.
absl::StatusOr<ReqPtr> ReadVerifiedCsr(const std::string& csr_pem) {
  BioPtr bio(BIO_new_mem_buf(csr_pem.data(), static_cast<int>(csr_pem.size())));
  ReqPtr req(PEM_read_bio_X509_REQ(bio.get(), nullptr, nullptr, nullptr));
  if (!req) return absl::InvalidArgumentError(OpenSslError("CSR does not parse"));
  EVP_PKEY* pub = X509_REQ_get0_pubkey(req.get());
  if (!pub || X509_REQ_verify(req.get(), pub) != 1)
    return absl::InvalidArgumentError(OpenSslError("CSR signature does not verify"));
  return req;
}

// A random positive 128-bit serial number.
bool SetRandomSerial(X509* cert) {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof bytes) != 1) return false;
  bytes[0] &= 0x7f;
  BIGNUM* bn = BN_bin2bn(bytes, sizeof bytes, nullptr);
  bool ok = bn && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert)) != nullptr;
  BN_free(bn);
  return ok;
}

// A v3 certificate with a random serial and subject O=`trust_domain`, to be completed.
absl::StatusOr<CertPtr> NewCertificate(const std::string& trust_domain) {
  CertPtr cert(X509_new());
  X509_set_version(cert.get(), X509_VERSION_3);
  if (!SetRandomSerial(cert.get())) return absl::InternalError("CA: no randomness for a serial");
  X509_NAME_add_entry_by_txt(X509_get_subject_name(cert.get()), "O", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(trust_domain.c_str()), -1, -1,
                             0);
  return cert;
}

bool AddExtension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (!ext) return false;
  bool ok = X509_add_ext(cert, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  return ok;
}

void SetValidity(X509* cert, absl::Time from, absl::Time to) {
  ASN1_TIME_set(X509_getm_notBefore(cert), absl::ToTimeT(from));
  ASN1_TIME_set(X509_getm_notAfter(cert), absl::ToTimeT(to));
}

}  // namespace

struct Authority::Keys {
  KeyPtr key;
  CertPtr cert;
};

std::string Identity::SpiffeId(const std::string& trust_domain) const {
  return absl::StrCat("spiffe://", trust_domain, "/ns/", ns, "/sa/", service_account);
}

Authority::Authority(std::unique_ptr<Keys> keys, std::string root_pem, Options options)
    : keys_(std::move(keys)), root_pem_(std::move(root_pem)), options_(std::move(options)) {}

Authority::~Authority() = default;

absl::StatusOr<std::unique_ptr<Authority>> Authority::LoadOrCreate(const std::string& cert_path,
                                                                   const std::string& key_path,
                                                                   Options options) {
  bool have_cert = std::filesystem::exists(cert_path), have_key = std::filesystem::exists(key_path);
  if (have_cert != have_key) {
    return absl::FailedPreconditionError(
        absl::StrCat("CA: ", have_cert ? key_path : cert_path, " is missing while ",
                     have_cert ? cert_path : key_path, " exists; give both or neither"));
  }
  if (have_cert) {
    absl::StatusOr<std::string> cert_pem = store::ReadFile(cert_path);
    if (!cert_pem.ok()) return cert_pem.status();
    absl::StatusOr<std::string> key_pem = store::ReadFile(key_path);
    if (!key_pem.ok()) return key_pem.status();
    return FromPem(*cert_pem, *key_pem, std::move(options), cert_path, key_path);
  }
  absl::StatusOr<Created> made = Create(std::move(options));
  if (!made.ok()) return made.status();
  if (absl::Status s = store::WriteFileAtomically(key_path, made->key_pem, 0600); !s.ok()) return s;
  if (absl::Status s =
          store::WriteFileAtomically(cert_path, made->authority->root_cert_pem(), 0644);
      !s.ok())
    return s;
  return std::move(made->authority);
}

absl::StatusOr<std::unique_ptr<Authority>> Authority::FromPem(const std::string& cert_pem,
                                                              const std::string& key_pem,
                                                              Options options,
                                                              const std::string& cert_name,
                                                              const std::string& key_name) {
  auto keys = std::make_unique<Keys>();
  BioPtr cb(BIO_new_mem_buf(cert_pem.data(), static_cast<int>(cert_pem.size())));
  keys->cert.reset(PEM_read_bio_X509(cb.get(), nullptr, nullptr, nullptr));
  if (!keys->cert) return absl::InvalidArgumentError(OpenSslError("CA: " + cert_name));
  BioPtr kb(BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size())));
  keys->key.reset(PEM_read_bio_PrivateKey(kb.get(), nullptr, nullptr, nullptr));
  if (!keys->key) return absl::InvalidArgumentError(OpenSslError("CA: " + key_name));
  if (X509_check_private_key(keys->cert.get(), keys->key.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        absl::StrCat("CA: ", key_name, " is not the key of ", cert_name));
  }
  if (X509_check_ca(keys->cert.get()) == 0)
    return absl::InvalidArgumentError(absl::StrCat("CA: ", cert_name, " is not a CA certificate"));
  std::string pem = ToPem(keys->cert.get());
  return std::unique_ptr<Authority>(new Authority(std::move(keys), pem, std::move(options)));
}

absl::StatusOr<Authority::Created> Authority::Create(Options options) {
  auto keys = std::make_unique<Keys>();
  keys->key.reset(EVP_EC_gen("P-256"));
  if (!keys->key) return absl::InternalError(OpenSslError("CA: key generation"));
  absl::StatusOr<CertPtr> made = NewCertificate(options.trust_domain);
  if (!made.ok()) return made.status();
  keys->cert = std::move(*made);
  X509* cert = keys->cert.get();
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("meshpilot root CA"), -1, -1,
                             0);
  X509_set_issuer_name(cert, name);
  absl::Time now = absl::Now();
  SetValidity(cert, now - absl::Hours(1), now + absl::Hours(24 * 365 * 10));
  X509_set_pubkey(cert, keys->key.get());
  if (!AddExtension(cert, cert, NID_basic_constraints, "critical,CA:TRUE") ||
      !AddExtension(cert, cert, NID_key_usage, "critical,keyCertSign,cRLSign") ||
      !AddExtension(cert, cert, NID_subject_key_identifier, "hash") ||
      X509_sign(cert, keys->key.get(), EVP_sha256()) == 0) {
    return absl::InternalError(OpenSslError("CA: root certificate"));
  }
  BioPtr kb(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(kb.get(), keys->key.get(), nullptr, nullptr, 0, nullptr, nullptr);
  Created out;
  out.key_pem = openssl::Drain(kb.get());
  std::string pem = ToPem(cert);
  out.authority.reset(new Authority(std::move(keys), pem, std::move(options)));
  return out;
}

absl::StatusOr<IssuedCertificate> Authority::Sign(const std::string& csr_pem,
                                                  const Identity& identity, absl::Duration ttl,
                                                  absl::Time now) const {
  absl::StatusOr<ReqPtr> req = ReadVerifiedCsr(csr_pem);
  if (!req.ok()) return req.status();
  const std::string spiffe = identity.SpiffeId(options_.trust_domain);
  // Every name the request asks for must be the caller's own identity.
  ExtsPtr exts(X509_REQ_get_extensions(req->get()), [](STACK_OF(X509_EXTENSION) * s) {
    sk_X509_EXTENSION_pop_free(s, X509_EXTENSION_free);
  });
  if (exts) {
    NamesPtr names(static_cast<GENERAL_NAMES*>(
        X509V3_get_d2i(exts.get(), NID_subject_alt_name, nullptr, nullptr)));
    for (int i = 0; names && i < sk_GENERAL_NAME_num(names.get()); ++i) {
      const GENERAL_NAME* n = sk_GENERAL_NAME_value(names.get(), i);
      std::string asked;
      if (n->type == GEN_URI) {
        asked.assign(
            reinterpret_cast<const char*>(ASN1_STRING_get0_data(n->d.uniformResourceIdentifier)),
            ASN1_STRING_length(n->d.uniformResourceIdentifier));
      }
      if (n->type != GEN_URI || asked != spiffe) {
        return absl::PermissionDeniedError(absl::StrCat("CSR asks for subject alternative name ",
                                                        asked.empty() ? "(not a URI)" : asked,
                                                        "; this caller may only have ", spiffe));
      }
    }
  }
  return Issue(X509_REQ_get0_pubkey(req->get()), "URI:" + spiffe, ttl, now);
}

absl::StatusOr<IssuedCertificate> Authority::SignServing(const std::string& csr_pem,
                                                         const std::vector<std::string>& names,
                                                         absl::Duration ttl, absl::Time now) const {
  absl::StatusOr<ReqPtr> req = ReadVerifiedCsr(csr_pem);
  if (!req.ok()) return req.status();
  if (names.empty()) return absl::InvalidArgumentError("a serving certificate needs a name");
  std::string sans;
  for (const std::string& n : names) {
    unsigned char ip[16];
    bool is_ip = inet_pton(AF_INET, n.c_str(), ip) == 1 || inet_pton(AF_INET6, n.c_str(), ip) == 1;
    if (n.empty() || n.find_first_of(", ") != std::string::npos)
      return absl::InvalidArgumentError(absl::StrCat("\"", n, "\" is not a host name"));
    absl::StrAppend(&sans, sans.empty() ? "" : ",", is_ip ? "IP:" : "DNS:", n);
  }
  return Issue(X509_REQ_get0_pubkey(req->get()), sans, ttl, now);
}

absl::StatusOr<IssuedCertificate> Authority::Issue(EVP_PKEY* pub, const std::string& sans,
                                                   absl::Duration ttl, absl::Time now) const {
  if (ttl <= absl::ZeroDuration()) ttl = options_.default_ttl;
  ttl = std::min(ttl, options_.max_ttl);
  absl::StatusOr<CertPtr> cert = NewCertificate(options_.trust_domain);
  if (!cert.ok()) return cert.status();
  X509* c = cert->get();
  X509_set_issuer_name(c, X509_get_subject_name(keys_->cert.get()));
  absl::Time not_after = now + ttl;
  SetValidity(c, now - absl::Minutes(1), not_after);
  X509_set_pubkey(c, pub);
  if (!AddExtension(c, keys_->cert.get(), NID_basic_constraints, "critical,CA:FALSE") ||
      !AddExtension(c, keys_->cert.get(), NID_key_usage,
                    "critical,digitalSignature,keyEncipherment") ||
      !AddExtension(c, keys_->cert.get(), NID_ext_key_usage, "serverAuth,clientAuth") ||
      !AddExtension(c, keys_->cert.get(), NID_authority_key_identifier, "keyid:always") ||
      !AddExtension(c, keys_->cert.get(), NID_subject_alt_name, "critical," + sans) ||
      X509_sign(c, keys_->key.get(), EVP_sha256()) == 0) {
    return absl::InternalError(OpenSslError("CA: signing"));
  }
  return IssuedCertificate{ToPem(c), not_after};
}

}  // namespace mesh::ca
