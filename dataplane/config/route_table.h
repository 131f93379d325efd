#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "dataplane/config/matchers.h"

namespace envoy::config::route::v3 {
class RouteConfiguration;
}

// meshproxy's routing table: an immutable, validated form of an Envoy RouteConfiguration that
// answers "which route does this request take" without locks, allocation-free on the match path
// except for what the request itself carries. Built once per RDS update and shared by every
// worker; in-flight requests keep the table they started with.
namespace mesh::dataplane {

// What routing looks at in a request. Header names are lower case.
struct RequestView {
  absl::string_view method;
  absl::string_view authority;  // Host or :authority, possibly with a port
  absl::string_view path;       // path and query, as on the request line
  std::vector<std::pair<absl::string_view, absl::string_view>> headers;
  bool tls = false;  // the request arrived over TLS
};

struct HeaderOp {
  std::string name, value;
  bool overwrite = true;  // set; false appends
};

struct QueryMatcher : StringPattern {
  std::string name;
};

struct WeightedTarget {
  std::string cluster;
  uint32_t weight = 0;
  std::vector<HeaderOp> request_headers_to_add, response_headers_to_add;
  std::vector<std::string> request_headers_to_remove, response_headers_to_remove;
};

struct Redirect {
  std::string scheme, host, path, prefix_rewrite;
  uint32_t port = 0;
  int status = 301;
};

struct RetryPolicy {
  std::vector<std::string> retry_on;  // "5xx", "gateway-error", "connect-failure", "reset", ...
  uint32_t num_retries = 1;
  std::optional<absl::Duration> per_try_timeout;
  std::vector<uint32_t> retriable_status_codes;
};

struct HashPolicy {
  enum class Kind { kHeader, kCookie, kSourceIp, kQueryParameter };
  Kind kind = Kind::kHeader;
  std::string name;  // header, cookie or query parameter name
  std::optional<absl::Duration> cookie_ttl;
  std::string cookie_path;
};

struct FaultPolicy {
  std::optional<absl::Duration> delay;
  uint32_t delay_per_million = 0;
  uint32_t abort_status = 0;                  // an HTTP status, or 0 with abort_grpc_status
  std::optional<uint32_t> abort_grpc_status;  // a gRPC status code (0-16)
  uint32_t abort_per_million = 0;
  bool aborts() const { return abort_status != 0 || abort_grpc_status.has_value(); }
};

struct MirrorPolicy {
  std::string cluster;
  uint32_t per_million = 1'000'000;
};

struct CorsPolicy {
  std::vector<StringPattern> allow_origins;  // matched against the Origin header
  std::string allow_methods, allow_headers, expose_headers, max_age;
  std::optional<bool> allow_credentials;
};

struct Route {
  std::string name;
  std::string operation;  // the decorator's: the span name of requests on this route
  // Path: exactly one of these.
  enum class PathKind { kPrefix, kExact, kRegex } path_kind = PathKind::kPrefix;
  std::string path;
  std::shared_ptr<const re2::RE2> path_regex;
  bool case_sensitive = true;
  std::vector<HeaderMatcher> headers;
  std::vector<QueryMatcher> query;

  // Action: targets (one, or weighted), a redirect, or a direct status.
  std::vector<WeightedTarget> targets;
  uint32_t total_weight = 0;
  std::optional<Redirect> redirect;
  int direct_status = 0;

  std::string prefix_rewrite, host_rewrite;
  std::optional<absl::Duration> timeout;
  std::optional<RetryPolicy> retry;
  std::vector<HashPolicy> hash_policies;
  std::optional<FaultPolicy> fault;
  std::vector<MirrorPolicy> mirrors;
  std::optional<CorsPolicy> cors;
  std::vector<HeaderOp> request_headers_to_add, response_headers_to_add;
  std::vector<std::string> request_headers_to_remove, response_headers_to_remove;

  // Whether the request's path, headers and query parameters match.
  bool Matches(const RequestView& request) const;
  // The target for a number drawn uniformly from [0, total_weight); nullptr for redirects and
  // direct responses.
  const WeightedTarget* Pick(uint64_t draw) const;
};

struct VirtualHost {
  std::string name;
  std::vector<std::string> domains;
  bool require_tls = false;  // plaintext requests are redirected to https
  std::vector<Route> routes;
};

class RouteTable {
 public:
  // Validates and converts; InvalidArgument names the field, e.g.
  // "route config http.80: virtual_hosts[0].routes[2].match.safe_regex.regex: invalid regex ...",
  // which is what an xDS client puts in its NACK.
  static absl::StatusOr<std::shared_ptr<const RouteTable>> FromProto(
      const envoy::config::route::v3::RouteConfiguration& config);

  const std::string& name() const { return name_; }
  const std::vector<VirtualHost>& virtual_hosts() const { return virtual_hosts_; }

  // Envoy's virtual host selection: an exact domain, then the longest "*.suffix", then the
  // longest "prefix.*", then "*". The authority is tried with its port and without.
  const VirtualHost* FindVirtualHost(absl::string_view authority) const;
  // The first route of the request's virtual host that matches, or nullptr (a 404).
  const Route* Match(const RequestView& request) const;

 private:
  std::string name_;
  std::vector<VirtualHost> virtual_hosts_;
};

using RouteTablePtr = std::shared_ptr<const RouteTable>;

}  // namespace mesh::dataplane
