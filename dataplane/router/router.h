#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "dataplane/config/route_table.h"

// The routing decision for one request, taken from a route table alone: no sockets, no clock, so
// every branch is unit-tested. The HTTP layer then carries it out.
namespace mesh::dataplane {

struct Decision {
  enum class Kind {
    kForward,   // send to `target->cluster`
    kRedirect,  // answer `status` with a Location of `location`
    kDirect,    // answer `status` with an empty body
    kNoRoute,   // answer 404
  };
  Kind kind = Kind::kNoRoute;
  const Route* route = nullptr;  // null for kNoRoute
  const WeightedTarget* target = nullptr;
  int status = 0;
  std::string location;
};

// Matches the request and, for weighted routes, picks a target with `draw` (a uniform random
// number). The returned pointers live as long as `table`.
Decision Decide(const RouteTable& table, const RequestView& request, uint64_t draw);

// The path sent upstream: `path` with the route's prefix rewrite applied (the matched prefix, or
// the whole path of an exact match, replaced); the query string is kept.
std::string RewritePath(const Route& route, absl::string_view path);

// The Location of a redirect for a request to `authority` + `path` over plain HTTP.
std::string RedirectLocation(const Redirect& redirect, const Route& route,
                             absl::string_view authority, absl::string_view path);

}  // namespace mesh::dataplane

namespace mesh::dataplane {

// The ring-hash key of a request under the route's hash policies (header, cookie, source IP,
// query parameter), as Envoy combines them; nullopt when no policy applies, and then the cluster
// picks a host at random. A cookie policy with a TTL whose cookie the request lacks makes one up
// (from `random`), as Envoy does: its value keys this request, and `set_cookie` receives the
// Set-Cookie value that makes the client send it from now on.
std::optional<uint64_t> RequestHash(const Route& route, const RequestView& request,
                                    absl::string_view source_ip, uint64_t random = 0,
                                    std::string* set_cookie = nullptr);

}  // namespace mesh::dataplane
