#pragma once

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "controlplane/ca/authority.h"
#include "controlplane/store/store.h"

namespace mesh::ca {

// Join tokens: a proxy proves its identity (namespace and service account) to the CA with one.
// Only the SHA-256 of a token is stored (under "/meshpilot/tokens/"), so the store never holds a
// usable token; the token itself is shown once, to whoever created it. Thread-safe.
class JoinTokens {
 public:
  static constexpr char kPrefix[] = "/meshpilot/tokens/";
  explicit JoinTokens(store::Store* store) : store_(store) {}

  // A new token for `identity`, valid for `ttl` (forever when absent). InvalidArgument when the
  // namespace or service account is not a DNS label (lower-case letters, digits, '-').
  absl::StatusOr<std::string> Create(const Identity& identity,
                                     std::optional<absl::Duration> ttl = std::nullopt,
                                     absl::Time now = absl::Now());
  // The identity `token` grants; Unauthenticated for an unknown or expired token.
  absl::StatusOr<Identity> Authenticate(const std::string& token,
                                        absl::Time now = absl::Now()) const;

 private:
  store::Store* store_;
};

// Whether `name` is a Kubernetes DNS label: 1-63 of [a-z0-9-], not starting or ending with '-'.
bool IsDnsLabel(const std::string& name);

}  // namespace mesh::ca
