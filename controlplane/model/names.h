#pragma once

#include <string>

#include "absl/strings/string_view.h"

// Syntax rules for names, labels and hosts, as Kubernetes and Istio define them. Each
// Check* function returns an empty string when the value is valid, else a message for a
// field error ("must be a DNS-1123 label: ...").
namespace mesh::model {

std::string CheckDns1123Label(absl::string_view s);
std::string CheckDns1123Subdomain(absl::string_view s);
std::string CheckLabelKey(absl::string_view s);
std::string CheckLabelValue(absl::string_view s);
// A host as VirtualService/DestinationRule/ServiceEntry write it: a DNS name, a short name,
// "*.suffix", or "*" when `allow_star` is true.
std::string CheckHost(absl::string_view s, bool allow_star);
std::string CheckIpOrCidr(absl::string_view s);
bool IsIpAddress(absl::string_view s);

// A JSON Web Key Set as RequestAuthentication's `jwks` holds it and a `jwksUri` serves it: a
// JSON object with a non-empty "keys" list, each key an object with a "kty". (Whether a key is
// usable is up to the proxy that verifies with it.)
std::string CheckJwks(absl::string_view text);
// A `jwksUri`: an absolute http:// or https:// URL with a host, as Istio accepts it.
std::string CheckJwksUri(absl::string_view uri);

// Resolves a host as Istio does: a short name ("reviews", no dot) becomes
// "reviews.<ns>.svc.cluster.local"; anything else (an FQDN or a wildcard) stays as written.
std::string ResolveHost(absl::string_view host, absl::string_view ns);

// Whether `host` (possibly "*.suffix" or "*") covers the concrete or wildcard name `name`.
bool HostMatches(absl::string_view pattern, absl::string_view name);

}  // namespace mesh::model
