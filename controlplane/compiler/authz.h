#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "controlplane/compiler/compiler.h"
#include "envoy/extensions/filters/http/jwt_authn/v3/config.pb.h"
#include "envoy/extensions/filters/http/rbac/v3/rbac.pb.h"
#include "envoy/extensions/filters/network/rbac/v3/rbac.pb.h"

// Authorization, as Istio compiles AuthorizationPolicy into Envoy's RBAC filters. Pure functions
// of the config, tested by table.
namespace mesh::compiler {

// The RBAC filters of one workload's listener (a sidecar's inbound port, or a gateway's port),
// in the order they run: DENY, then ALLOW, then AUDIT (action LOG). Empty when no policy
// applies, so a workload without policies pays nothing.
struct AuthzFilters {
  // RequestAuthentication: the JWT filter that runs before the RBAC filters (HTTP only).
  std::optional<envoy::extensions::filters::http::jwt_authn::v3::JwtAuthentication> jwt;
  std::set<std::string> jwks_uris;  // the jwksUris whose keys `jwt` carries
  std::vector<envoy::extensions::filters::http::rbac::v3::RBAC> http;
  std::vector<envoy::extensions::filters::network::rbac::v3::RBAC> tcp;
  bool empty() const { return !jwt && http.empty() && tcp.empty(); }
};

// The filters for the workload in `ns` with `labels`. The policies that apply are those in the
// root namespace (istio-system) without a selector (mesh-wide), those in `ns` without a
// selector, and those in either with a selector that matches `labels`.
//
// A policy's `ports` name the workload's port; `listener_ports` maps each to the port the
// listener that serves it has (a sidecar's inbound listen port); ports it does not list stay.
//
// For the TCP filters, as Istio does: a rule that needs HTTP (hosts, methods, paths, request
// principals, request headers or JWT claims) never matches in an ALLOW or AUDIT policy, and in a
// DENY policy it matches without those parts, so a TCP port is denied rather than opened.
//
// The RequestAuthentications that apply (chosen the same way) become one jwt_authn filter: a
// provider per JWT rule (its keys inline, its issuer, audiences and token locations), and one
// requirement for every request, as Istio writes it: a token, if present, must verify with one
// of the providers (else 401); a request without one passes, unauthenticated.
//
// A rule's `jwksUri` takes its keys from `mesh.fetched_jwks`.
AuthzFilters BuildAuthz(const model::ConfigSnapshot& config, const std::string& ns,
                        const model::Labels& labels,
                        const std::map<uint32_t, uint32_t>& listener_ports = {},
                        const MeshConfig& mesh = {});

// A key set no token verifies with (a public key whose private half was thrown away): what a
// proxy gets for a jwksUri that has not been fetched yet.
extern const char kUnfetchedJwks[];

}  // namespace mesh::compiler
