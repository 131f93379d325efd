#include "dataplane/authn/jwt.h"

#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"

namespace mesh::dataplane {

using nlohmann::json;

struct Jwks::Key {
  std::string kid, kty, alg, crv;
  EVP_PKEY* pkey = nullptr;
  ~Key() { EVP_PKEY_free(pkey); }
};

Jwks::~Jwks() = default;

namespace {

// A base64url field (padding optional, as JOSE writes it).
bool Base64Url(absl::string_view in, std::string* out) {
  return absl::WebSafeBase64Unescape(in, out);
}

struct ParamBuilder {
  OSSL_PARAM_BLD* bld = OSSL_PARAM_BLD_new();
  std::vector<BIGNUM*> numbers;
  ~ParamBuilder() {
    OSSL_PARAM_BLD_free(bld);
    for (BIGNUM* n : numbers) BN_free(n);
  }
  bool PushNumber(const char* name, const std::string& bytes) {
    BIGNUM* n =
        BN_bin2bn(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), nullptr);
    if (!n) return false;
    numbers.push_back(n);
    return OSSL_PARAM_BLD_push_BN(bld, name, n) == 1;
  }
};

// A public key from OpenSSL parameters; null when they do not make one.
EVP_PKEY* FromParams(const char* type, ParamBuilder& b) {
  OSSL_PARAM* params = OSSL_PARAM_BLD_to_param(b.bld);
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr);
  EVP_PKEY* pkey = nullptr;
  if (params && ctx && EVP_PKEY_fromdata_init(ctx) == 1)
    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params);
  EVP_PKEY_CTX_free(ctx);
  OSSL_PARAM_free(params);
  return pkey;
}

std::string Str(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

// One JWK as a key; null for a key this proxy cannot use (another type or curve).
std::unique_ptr<Jwks::Key> ReadKey(const json& jwk) {
  auto key = std::make_unique<Jwks::Key>();
  key->kid = Str(jwk, "kid");
  key->kty = Str(jwk, "kty");
  key->alg = Str(jwk, "alg");
  ParamBuilder b;
  if (key->kty == "RSA") {
    std::string n, e;
    if (!Base64Url(Str(jwk, "n"), &n) || !Base64Url(Str(jwk, "e"), &e) || n.empty() || e.empty() ||
        !b.PushNumber(OSSL_PKEY_PARAM_RSA_N, n) || !b.PushNumber(OSSL_PKEY_PARAM_RSA_E, e))
      return nullptr;
    key->pkey = FromParams("RSA", b);
  } else if (key->kty == "EC") {
    key->crv = Str(jwk, "crv");
    const char* group = key->crv == "P-256" ? "prime256v1" : key->crv == "P-384" ? "secp384r1" : "";
    std::string x, y;
    if (!*group || !Base64Url(Str(jwk, "x"), &x) || !Base64Url(Str(jwk, "y"), &y) ||
        x.size() != y.size() || x.empty())
      return nullptr;
    std::string point = "\x04" + x + y;  // uncompressed
    if (OSSL_PARAM_BLD_push_utf8_string(b.bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0) != 1 ||
        OSSL_PARAM_BLD_push_octet_string(b.bld, OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                         point.size()) != 1)
      return nullptr;
    key->pkey = FromParams("EC", b);
  }
  if (!key->pkey) return nullptr;
  return key;
}

// The digest and key type of a JWS algorithm; null digest when it is not supported.
struct Algorithm {
  const EVP_MD* md = nullptr;
  const char* kty = "";
  const char* crv = "";
  size_t ecdsa_half = 0;  // ES*: bytes of r and of s in the signature
};
Algorithm AlgorithmOf(const std::string& alg) {
  if (alg == "RS256") return {EVP_sha256(), "RSA"};
  if (alg == "RS384") return {EVP_sha384(), "RSA"};
  if (alg == "RS512") return {EVP_sha512(), "RSA"};
  if (alg == "ES256") return {EVP_sha256(), "EC", "P-256", 32};
  if (alg == "ES384") return {EVP_sha384(), "EC", "P-384", 48};
  return {};
}

// A JWS ES* signature (r||s) in the DER form OpenSSL verifies; empty when malformed.
std::string EcdsaDer(const std::string& raw, size_t half) {
  if (raw.size() != 2 * half) return "";
  const auto* p = reinterpret_cast<const unsigned char*>(raw.data());
  BIGNUM* r = BN_bin2bn(p, half, nullptr);
  BIGNUM* s = BN_bin2bn(p + half, half, nullptr);
  ECDSA_SIG* sig = ECDSA_SIG_new();
  std::string out;
  if (r && s && sig && ECDSA_SIG_set0(sig, r, s) == 1) {
    r = s = nullptr;  // owned by sig now
    unsigned char* der = nullptr;
    int len = i2d_ECDSA_SIG(sig, &der);
    if (len > 0) out.assign(reinterpret_cast<char*>(der), len);
    OPENSSL_free(der);
  }
  BN_free(r);
  BN_free(s);
  ECDSA_SIG_free(sig);
  return out;
}

bool VerifySignature(EVP_PKEY* pkey, const EVP_MD* md, absl::string_view data,
                     const std::string& sig) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  bool ok = ctx && EVP_DigestVerifyInit(ctx, nullptr, md, nullptr, pkey) == 1 &&
            EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                             reinterpret_cast<const unsigned char*>(data.data()), data.size()) == 1;
  EVP_MD_CTX_free(ctx);
  return ok;
}

// A claim's values as strings: a string, each string of a list, a number or a bool as written.
std::vector<std::string> ClaimValues(const json& v) {
  std::vector<std::string> out;
  auto one = [&](const json& e) {
    if (e.is_string()) {
      out.push_back(e.get<std::string>());
    } else if (e.is_number() || e.is_boolean()) {
      out.push_back(e.dump());
    }
  };
  if (v.is_array()) {
    for (const json& e : v) one(e);
  } else {
    one(v);
  }
  return out;
}

void AddClaims(const json& object, const std::string& prefix, int depth,
               std::map<std::string, std::vector<std::string>>* facts) {
  for (const auto& [name, value] : object.items()) {
    const std::string key = absl::StrCat(prefix, ".", name);
    if (value.is_object()) {
      if (depth < 4) AddClaims(value, key, depth + 1, facts);
    } else {
      std::vector<std::string> values = ClaimValues(value);
      if (!values.empty()) (*facts)[key] = std::move(values);
    }
  }
}

absl::Status Unauthenticated(absl::string_view why) {
  return absl::UnauthenticatedError(std::string(why));
}

}  // namespace

absl::StatusOr<std::shared_ptr<const Jwks>> Jwks::Parse(absl::string_view text) {
  json doc = json::parse(text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object())
    return absl::InvalidArgumentError("jwks: not a JSON object");
  auto out = std::make_shared<Jwks>();
  std::vector<json> jwks;
  if (doc.contains("keys")) {
    if (!doc["keys"].is_array()) return absl::InvalidArgumentError("jwks: keys must be a list");
    for (const json& k : doc["keys"]) jwks.push_back(k);
  } else {
    jwks.push_back(doc);
  }
  for (const json& k : jwks) {
    if (!k.is_object()) continue;
    if (auto key = ReadKey(k)) out->keys_.push_back(std::move(key));
  }
  if (out->keys_.empty())
    return absl::InvalidArgumentError("jwks: no usable key (RSA, or EC on P-256 or P-384)");
  return std::shared_ptr<const Jwks>(std::move(out));
}

absl::StatusOr<VerifiedJwt> JwtVerifier::Verify(absl::string_view token, const JwtRule& rule,
                                                const Jwks& jwks, absl::Time now) {
  if (token.size() > kMaxTokenBytes) return Unauthenticated("Jwt is too large");
  std::vector<absl::string_view> parts = absl::StrSplit(token, '.');
  if (parts.size() != 3)
    return Unauthenticated("Jwt is not in the form of Header.Payload.Signature");
  std::string header_text, payload_text, signature;
  if (!Base64Url(parts[0], &header_text))
    return Unauthenticated("Jwt header is an invalid Base64url encoded");
  json header = json::parse(header_text, nullptr, false);
  if (header.is_discarded() || !header.is_object())
    return Unauthenticated("Jwt header is an invalid JSON");
  const std::string alg = Str(header, "alg");
  const Algorithm algorithm = AlgorithmOf(alg);
  if (!algorithm.md)
    return Unauthenticated(absl::StrCat("Jwt header [alg] ", alg, " is not supported"));
  if (!Base64Url(parts[1], &payload_text))
    return Unauthenticated("Jwt payload is an invalid Base64url encoded");
  json payload = json::parse(payload_text, nullptr, false);
  if (payload.is_discarded() || !payload.is_object())
    return Unauthenticated("Jwt payload is an invalid JSON");
  if (!Base64Url(parts[2], &signature) || signature.empty())
    return Unauthenticated("Jwt signature is an invalid Base64url encoded");

  VerifiedJwt out;
  out.issuer = Str(payload, "iss");
  out.subject = Str(payload, "sub");
  if (!rule.issuer.empty() && out.issuer != rule.issuer)
    return Unauthenticated("Jwt issuer is not configured");
  const int64_t seconds = absl::ToUnixSeconds(now);
  const int64_t skew = absl::ToInt64Seconds(kClockSkew);
  if (payload.contains("exp")) {
    if (!payload["exp"].is_number()) return Unauthenticated("Jwt payload [exp] is not a number");
    if (seconds > payload["exp"].get<double>() + skew) return Unauthenticated("Jwt is expired");
  }
  if (payload.contains("nbf")) {
    if (!payload["nbf"].is_number()) return Unauthenticated("Jwt payload [nbf] is not a number");
    if (seconds + skew < payload["nbf"].get<double>()) return Unauthenticated("Jwt not yet valid");
  }
  std::vector<std::string> audiences =
      payload.contains("aud") ? ClaimValues(payload["aud"]) : std::vector<std::string>{};
  if (!rule.audiences.empty()) {
    bool allowed = false;
    for (const std::string& a : audiences) {
      for (const std::string& want : rule.audiences) allowed = allowed || a == want;
    }
    if (!allowed) return Unauthenticated("Audiences in Jwt are not allowed");
  }

  // The key: the one named by kid, else any of the algorithm's type (and curve).
  const std::string kid = Str(header, "kid");
  const absl::string_view signed_part(token.data(), parts[0].size() + 1 + parts[1].size());
  const std::string sig =
      algorithm.ecdsa_half ? EcdsaDer(signature, algorithm.ecdsa_half) : signature;
  bool key_found = false;
  bool verified = false;
  for (const auto& key : jwks.keys_) {
    if (key->kty != algorithm.kty || (algorithm.ecdsa_half && key->crv != algorithm.crv)) continue;
    if (!kid.empty() && !key->kid.empty() && key->kid != kid) continue;
    if (!key->alg.empty() && key->alg != alg) continue;
    key_found = true;
    if (!sig.empty() && VerifySignature(key->pkey, algorithm.md, signed_part, sig)) {
      verified = true;
      break;
    }
  }
  if (!key_found) return Unauthenticated("Jwks doesn't have key to match kid or alg from Jwt");
  if (!verified) return Unauthenticated("Jwt verification fails");

  out.payload_json = std::move(payload_text);
  out.facts["request.auth.principal"] = {absl::StrCat(out.issuer, "/", out.subject)};
  if (!audiences.empty()) out.facts["request.auth.audiences"] = audiences;
  if (std::string azp = Str(payload, "azp"); !azp.empty())
    out.facts["request.auth.presenter"] = {azp};
  AddClaims(payload, "request.auth.claims", 0, &out.facts);
  return out;
}

}  // namespace mesh::dataplane
