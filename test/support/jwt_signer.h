#pragma once

// Signing keys and JWTs for tests: an RSA or EC P-256 key made with OpenSSL, its public JWK,
// and compact JWS tokens signed with it (RS256, ES256).
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>

#include <memory>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace mesh::testing {

using nlohmann::json;

inline std::string B64(absl::string_view s) {
  return absl::WebSafeBase64Escape(s);
}

inline std::string Bytes(const BIGNUM* n, int width = 0) {
  std::string out(width ? width : BN_num_bytes(n), '\0');
  BN_bn2binpad(n, reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(out.size()));
  return out;
}

// A signing key made for the test, and its public JWK.
struct TestKey {
  EVP_PKEY* pkey = nullptr;
  std::string alg;
  json jwk;
  ~TestKey() { EVP_PKEY_free(pkey); }

  static std::unique_ptr<TestKey> Rsa(const std::string& kid) {
    auto k = std::make_unique<TestKey>();
    k->pkey = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{2048});
    k->alg = "RS256";
    BIGNUM *n = nullptr, *e = nullptr;
    EVP_PKEY_get_bn_param(k->pkey, OSSL_PKEY_PARAM_RSA_N, &n);
    EVP_PKEY_get_bn_param(k->pkey, OSSL_PKEY_PARAM_RSA_E, &e);
    k->jwk = {{"kty", "RSA"}, {"kid", kid}, {"n", B64(Bytes(n))}, {"e", B64(Bytes(e))}};
    BN_free(n);
    BN_free(e);
    return k;
  }
  static std::unique_ptr<TestKey> Ec(const std::string& kid) {
    auto k = std::make_unique<TestKey>();
    k->pkey = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
    k->alg = "ES256";
    unsigned char point[65];
    size_t len = 0;
    EVP_PKEY_get_octet_string_param(k->pkey, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof point, &len);
    if (len != 65) return nullptr;
    std::string p(reinterpret_cast<char*>(point), len);
    k->jwk = {{"kty", "EC"},
              {"crv", "P-256"},
              {"kid", kid},
              {"x", B64(p.substr(1, 32))},
              {"y", B64(p.substr(33, 32))}};
    return k;
  }

  // A compact JWS of `payload` with `header` (alg and kid filled in unless given).
  std::string Sign(json payload, json header = json::object()) const {
    if (!header.contains("alg")) header["alg"] = alg;
    if (!header.contains("kid")) header["kid"] = jwk["kid"];
    const std::string input = B64(header.dump()) + "." + B64(payload.dump());
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    size_t len = 0;
    EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, pkey);
    EVP_DigestSign(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(input.data()),
                   input.size());
    std::string sig(len, '\0');
    EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len,
                   reinterpret_cast<const unsigned char*>(input.data()), input.size());
    sig.resize(len);
    EVP_MD_CTX_free(ctx);
    if (alg == "ES256") {  // DER to JOSE's r||s
      const auto* p = reinterpret_cast<const unsigned char*>(sig.data());
      ECDSA_SIG* es = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(sig.size()));
      sig = Bytes(ECDSA_SIG_get0_r(es), 32) + Bytes(ECDSA_SIG_get0_s(es), 32);
      ECDSA_SIG_free(es);
    }
    return input + "." + B64(sig);
  }
};

}  // namespace mesh::testing
