#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

// JSON Web Tokens as Istio's RequestAuthentication checks them (Envoy's jwt_authn): a JWKS
// parsed once per config, and tokens verified with OpenSSL (RS256, RS384, RS512, ES256, ES384).
// Pure functions with an injected time, so every refusal is unit-tested with fixed keys.
namespace mesh::dataplane {

// A JSON Web Key Set: the public keys an issuer signs with. Immutable; shared by workers.
class Jwks {
 public:
  struct Key;
  ~Jwks();
  // The keys of a JWKS document ({"keys": [...]}) or of a single JWK. Keys of a type or curve
  // that cannot verify a supported algorithm are skipped; a set with none usable is an error.
  static absl::StatusOr<std::shared_ptr<const Jwks>> Parse(absl::string_view json);
  size_t size() const { return keys_.size(); }

 private:
  friend class JwtVerifier;
  std::vector<std::unique_ptr<Key>> keys_;
};

// What a verified token says, in the form the authorization policies read (Istio's
// "istio_authn" facts): "request.auth.principal" (iss/sub), "request.auth.audiences",
// "request.auth.presenter" (azp), and "request.auth.claims.NAME" for each top-level claim (a
// string, or each string of a list; nested objects as "NAME.INNER").
struct VerifiedJwt {
  std::string issuer, subject;
  std::string payload_json;  // the decoded payload, for outputPayloadToHeader
  std::map<std::string, std::vector<std::string>> facts;
};

struct JwtRule {
  std::string issuer;
  std::vector<std::string> audiences;  // empty: any audience
};

class JwtVerifier {
 public:
  // Tokens larger than this are refused before any decoding.
  static constexpr size_t kMaxTokenBytes = 16 * 1024;
  // Allowed clock skew on exp and nbf (Envoy's default is 60 s).
  static constexpr absl::Duration kClockSkew = absl::Seconds(60);

  // Verifies `token` (compact form, header.payload.signature) against `rule` and `jwks` at
  // `now`. The errors are Envoy's: "Jwt is expired", "Jwt not yet valid", "Jwt issuer is not
  // configured", "Audiences in Jwt are not allowed", "Jwt verification fails", ...
  static absl::StatusOr<VerifiedJwt> Verify(absl::string_view token, const JwtRule& rule,
                                            const Jwks& jwks, absl::Time now);
};

}  // namespace mesh::dataplane
