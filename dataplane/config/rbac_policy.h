#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "dataplane/config/matchers.h"

namespace envoy::config::rbac::v3 {
class RBAC;
}

// Envoy's RBAC (envoy.filters.http.rbac and envoy.filters.network.rbac), as Istio's
// AuthorizationPolicy compiles to it: a validated, immutable form built once per LDS update and
// evaluated per request (HTTP) or per connection (TCP).
namespace mesh::dataplane {

class HeaderMap;

// What a policy may look at. Views into the request and connection; valid for one evaluation.
struct RbacInput {
  // HTTP only (null for a TCP connection): the request's headers, method, :authority and path
  // (with its query; url_path matching drops it).
  const HeaderMap* headers = nullptr;
  absl::string_view method, authority, path;
  absl::string_view url_path;   // `path` without its query and fragment (UrlPathOf)
  absl::string_view source_ip;  // the connection's peer
  absl::string_view remote_ip;  // the original client as far as trusted; the peer here
  // The peer's identity as mutual TLS proved it (its URI SAN, "spiffe://..."); empty without.
  absl::string_view principal;
  absl::string_view destination_ip;
  uint32_t destination_port = 0;  // the listener's port
  absl::string_view sni;
  // Facts of a verified request token (Istio's "istio_authn" metadata), by path joined with
  // '.': "request.auth.principal", "request.auth.claims.groups", ...; null without a token.
  const std::map<std::string, std::vector<std::string>>* authn = nullptr;
};

// A request path without its query or fragment, as url_path matchers see it.
absl::string_view UrlPathOf(absl::string_view path);

class RbacPolicy {
 public:
  enum class Action { kAllow, kDeny, kLog };

  // Validates `rbac`; InvalidArgument names the field under `path`.
  static absl::StatusOr<std::shared_ptr<const RbacPolicy>> FromProto(
      const envoy::config::rbac::v3::RBAC& rbac, const std::string& path);

  Action action() const { return action_; }
  // Whether the request or connection may pass: an ALLOW filter needs a matching policy, a DENY
  // filter none, a LOG filter lets everything pass. `matched` gets the first matching policy's
  // name (policies are tried in name order), or null.
  bool Allows(const RbacInput& input, const std::string** matched = nullptr) const;

  struct Node;  // a compiled Permission or Principal

 private:
  struct Policy;
  Action action_ = Action::kAllow;
  std::vector<Policy> policies_;
};
using RbacPolicyPtr = std::shared_ptr<const RbacPolicy>;

// A request passes a chain of filters when each one allows it; the first that does not is the
// refusal (`denied_by` gets the DENY policy that matched, or null when no ALLOW policy did).
bool RbacAllows(const std::vector<RbacPolicyPtr>& filters, const RbacInput& input,
                const std::string** denied_by = nullptr);

}  // namespace mesh::dataplane
