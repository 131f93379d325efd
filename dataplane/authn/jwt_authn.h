#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "dataplane/authn/jwt.h"

namespace envoy::extensions::filters::http::jwt_authn::v3 {
class JwtAuthentication;
}

// Envoy's jwt_authn filter as Istio's RequestAuthentication configures it: providers (issuer,
// audiences, inline keys, where the token is), and a requirement tree over them. Validated once
// per LDS update; evaluated per request.
namespace mesh::dataplane {

class HeaderMap;

class JwtAuthn {
 public:
  // InvalidArgument names the field under `path` (a provider whose keys cannot verify anything,
  // a requirement naming no provider, a rule matching other than by path prefix or path).
  static absl::StatusOr<std::shared_ptr<const JwtAuthn>> FromProto(
      const envoy::extensions::filters::http::jwt_authn::v3::JwtAuthentication& config,
      const std::string& path);

  struct Outcome {
    bool allowed = true;
    std::string error;  // why, when refused (the 401's body): "Jwt is expired", ...
    // What the verified tokens say, for authorization ("request.auth.principal", ...).
    std::map<std::string, std::vector<std::string>> facts;
  };
  // Finds the request's tokens and checks them against the requirement of the first rule whose
  // match takes `path`. When allowed, a verified token is removed from its header unless its
  // provider forwards it, and its payload is added where the provider asks.
  Outcome Authenticate(HeaderMap& headers, absl::string_view path, absl::Time now) const;

 private:
  struct Provider;
  struct Requirement;
  struct Rule;
  std::vector<Provider> providers_;
  std::vector<Rule> rules_;

 public:
  ~JwtAuthn();
  JwtAuthn();
};
using JwtAuthnPtr = std::shared_ptr<const JwtAuthn>;

}  // namespace mesh::dataplane
