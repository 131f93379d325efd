#include "dataplane/config/route_table.h"

#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "dataplane/config/weighted.h"
#include "envoy/config/route/v3/route.pb.h"
#include "envoy/extensions/filters/http/fault/v3/fault.pb.h"
#include "re2/re2.h"

namespace mesh::dataplane {
namespace {

namespace pb = envoy::config::route::v3;

std::vector<HeaderOp> Ops(
    const google::protobuf::RepeatedPtrField<envoy::config::core::v3::HeaderValueOption>& in) {
  std::vector<HeaderOp> out;
  for (const auto& o : in) {
    bool overwrite =
        o.has_append() ? !o.append().value()
                       : o.append_action() ==
                             envoy::config::core::v3::HeaderValueOption::OVERWRITE_IF_EXISTS_OR_ADD;
    out.push_back({absl::AsciiStrToLower(o.header().key()), o.header().value(), overwrite});
  }
  return out;
}

std::vector<std::string> Names(const google::protobuf::RepeatedPtrField<std::string>& in) {
  std::vector<std::string> out;
  for (const auto& n : in) out.push_back(absl::AsciiStrToLower(n));
  return out;
}

absl::Duration ToDuration(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

// A FractionalPercent as parts per million.
uint32_t PerMillion(const envoy::type::v3::FractionalPercent& p) {
  uint64_t n = p.numerator();
  switch (p.denominator()) {
    case envoy::type::v3::FractionalPercent::HUNDRED: n *= 10000; break;
    case envoy::type::v3::FractionalPercent::TEN_THOUSAND: n *= 100; break;
    default: break;
  }
  return static_cast<uint32_t>(std::min<uint64_t>(n, 1'000'000));
}

// A request header's value as Envoy matches it: several occurrences joined with ",". On the
// request path: the value is a view into the request, and only a repeated header is copied (into
// `joined`). Returns nullopt when the header is absent.
std::optional<absl::string_view> HeaderValue(const RequestView& request, absl::string_view name,
                                             std::string* joined) {
  if (name == ":method") return request.method;
  if (name == ":authority") return request.authority;
  if (name == ":path") return request.path;
  std::optional<absl::string_view> first;
  bool repeated = false;
  for (const auto& [k, v] : request.headers) {
    if (k != name) continue;
    if (!first) {
      first = v;
      continue;
    }
    if (!repeated) {
      joined->assign(first->data(), first->size());
      repeated = true;
    }
    joined->append(",");
    joined->append(v.data(), v.size());
  }
  if (repeated) return absl::string_view(*joined);
  return first;
}

// Each reader below converts one part of a RouteConfiguration, adding what is wrong with it to
// `errors` under its field path.

void ReadMatch(const pb::RouteMatch& m, const std::string& rpath, Route* route,
               ConfigErrors* errors) {
  switch (m.path_specifier_case()) {
    case pb::RouteMatch::kPrefix:
      route->path_kind = Route::PathKind::kPrefix;
      route->path = m.prefix();
      break;
    case pb::RouteMatch::kPath:
      route->path_kind = Route::PathKind::kExact;
      route->path = m.path();
      break;
    case pb::RouteMatch::kSafeRegex:
      route->path_kind = Route::PathKind::kRegex;
      route->path_regex =
          CompileRegex(m.safe_regex().regex(), rpath + ".match.safe_regex.regex", errors);
      break;
    default:
      errors->Add(rpath + ".match", "a path specifier (prefix, path or safe_regex) is required");
  }
  if (m.has_case_sensitive()) route->case_sensitive = m.case_sensitive().value();
  for (int h = 0; h < m.headers_size(); ++h) {
    route->headers.push_back(
        FromHeaderMatcher(m.headers(h), absl::StrCat(rpath, ".match.headers[", h, "]"), errors));
  }
  for (int q = 0; q < m.query_parameters_size(); ++q) {
    const pb::QueryParameterMatcher& pq = m.query_parameters(q);
    QueryMatcher qm;
    qm.name = pq.name();
    if (pq.has_string_match()) {
      static_cast<StringPattern&>(qm) = FromStringMatcher(
          pq.string_match(), absl::StrCat(rpath, ".match.query_parameters[", q, "].string_match"),
          errors);
    } else {
      qm.kind = StringPattern::Kind::kPresent;
    }
    route->query.push_back(std::move(qm));
  }
}

// The route's envoy.filters.http.fault override, if it has one.
std::optional<FaultPolicy> ReadFault(const pb::Route& in, const std::string& rpath,
                                     ConfigErrors* errors) {
  auto it = in.typed_per_filter_config().find("envoy.filters.http.fault");
  if (it == in.typed_per_filter_config().end()) return std::nullopt;
  const std::string path = rpath + ".typed_per_filter_config[envoy.filters.http.fault]";
  envoy::extensions::filters::http::fault::v3::HTTPFault pf;
  if (!it->second.UnpackTo(&pf)) {
    errors->Add(path, "is not an HTTPFault");
    return std::nullopt;
  }
  FaultPolicy fault;
  if (pf.has_delay()) {
    fault.delay = ToDuration(pf.delay().fixed_delay());
    fault.delay_per_million = PerMillion(pf.delay().percentage());
  }
  if (pf.has_abort()) {
    const auto& abort = pf.abort();
    fault.abort_per_million = PerMillion(abort.percentage());
    if (abort.has_grpc_status()) {
      fault.abort_grpc_status = abort.grpc_status();
      if (abort.grpc_status() > 16)
        errors->Add(path + ".abort.grpc_status", "must be a gRPC status code (0-16)");
    } else {
      fault.abort_status = abort.http_status();
      if (fault.abort_status < 200 || fault.abort_status > 599)
        errors->Add(path + ".abort.http_status", "must be between 200 and 599");
    }
  }
  return fault;
}

void ReadTargets(const pb::RouteAction& a, const std::string& rpath, Route* route,
                 ConfigErrors* errors) {
  if (a.cluster_specifier_case() == pb::RouteAction::kCluster) {
    if (a.cluster().empty()) errors->Add(rpath + ".route.cluster", "must not be empty");
    route->targets.push_back({a.cluster(), 1, {}, {}, {}, {}});
    route->total_weight = 1;
    return;
  }
  if (a.cluster_specifier_case() != pb::RouteAction::kWeightedClusters) {
    errors->Add(rpath + ".route", "cluster or weighted_clusters is required");
    return;
  }
  uint32_t sum = 0;
  for (const auto& cw : a.weighted_clusters().clusters()) {
    WeightedTarget t{cw.name(),
                     cw.weight().value(),
                     Ops(cw.request_headers_to_add()),
                     Ops(cw.response_headers_to_add()),
                     Names(cw.request_headers_to_remove()),
                     Names(cw.response_headers_to_remove())};
    sum += t.weight;
    route->targets.push_back(std::move(t));
  }
  uint32_t total =
      a.weighted_clusters().has_total_weight() ? a.weighted_clusters().total_weight().value() : 100;
  if (route->targets.empty())
    errors->Add(rpath + ".route.weighted_clusters.clusters", "at least one cluster is required");
  if (sum != total) {
    errors->Add(rpath + ".route.weighted_clusters",
                absl::StrCat("weights sum to ", sum, ", not total_weight ", total));
  }
  route->total_weight = total;
}

RetryPolicy ReadRetry(const pb::RetryPolicy& rp) {
  RetryPolicy retry;
  for (absl::string_view on : absl::StrSplit(rp.retry_on(), ',', absl::SkipEmpty()))
    retry.retry_on.emplace_back(absl::StripAsciiWhitespace(on));
  if (rp.has_num_retries()) retry.num_retries = rp.num_retries().value();
  if (rp.has_per_try_timeout()) retry.per_try_timeout = ToDuration(rp.per_try_timeout());
  retry.retriable_status_codes.assign(rp.retriable_status_codes().begin(),
                                      rp.retriable_status_codes().end());
  return retry;
}

std::optional<HashPolicy> ReadHashPolicy(const pb::RouteAction::HashPolicy& hp,
                                         const std::string& path, ConfigErrors* errors) {
  HashPolicy policy;
  if (hp.has_header()) {
    policy.kind = HashPolicy::Kind::kHeader;
    policy.name = absl::AsciiStrToLower(hp.header().header_name());
  } else if (hp.has_cookie()) {
    policy.kind = HashPolicy::Kind::kCookie;
    policy.name = hp.cookie().name();
    policy.cookie_path = hp.cookie().path();
    if (hp.cookie().has_ttl()) policy.cookie_ttl = ToDuration(hp.cookie().ttl());
  } else if (hp.has_connection_properties()) {
    policy.kind = HashPolicy::Kind::kSourceIp;
  } else if (hp.has_query_parameter()) {
    policy.kind = HashPolicy::Kind::kQueryParameter;
    policy.name = hp.query_parameter().name();
  } else {
    errors->Add(path, "a policy specifier is required");
    return std::nullopt;
  }
  return policy;
}

CorsPolicy ReadCors(const pb::CorsPolicy& cp, const std::string& path, ConfigErrors* errors) {
  CorsPolicy cors;
  for (int o = 0; o < cp.allow_origin_string_match_size(); ++o) {
    cors.allow_origins.push_back(
        FromStringMatcher(cp.allow_origin_string_match(o),
                          absl::StrCat(path, ".allow_origin_string_match[", o, "]"), errors));
  }
  cors.allow_methods = cp.allow_methods();
  cors.allow_headers = cp.allow_headers();
  cors.expose_headers = cp.expose_headers();
  cors.max_age = cp.max_age();
  if (cp.has_allow_credentials()) cors.allow_credentials = cp.allow_credentials().value();
  return cors;
}

void ReadRouteAction(const pb::RouteAction& a, const std::string& rpath, Route* route,
                     ConfigErrors* errors) {
  ReadTargets(a, rpath, route, errors);
  route->prefix_rewrite = a.prefix_rewrite();
  route->host_rewrite = a.host_rewrite_literal();
  if (a.has_timeout()) route->timeout = ToDuration(a.timeout());
  if (a.has_retry_policy()) route->retry = ReadRetry(a.retry_policy());
  for (int h = 0; h < a.hash_policy_size(); ++h) {
    std::optional<HashPolicy> policy = ReadHashPolicy(
        a.hash_policy(h), absl::StrCat(rpath, ".route.hash_policy[", h, "]"), errors);
    if (policy) route->hash_policies.push_back(std::move(*policy));
  }
  for (const auto& mp : a.request_mirror_policies()) {
    MirrorPolicy mirror{mp.cluster(), 1'000'000};
    if (mp.has_runtime_fraction())
      mirror.per_million = PerMillion(mp.runtime_fraction().default_value());
    route->mirrors.push_back(std::move(mirror));
  }
  if (a.has_cors()) route->cors = ReadCors(a.cors(), rpath + ".route.cors", errors);
}

Redirect ReadRedirect(const pb::RedirectAction& rd) {
  Redirect redirect;
  redirect.scheme = rd.https_redirect() ? "https" : rd.scheme_redirect();
  redirect.host = rd.host_redirect();
  redirect.port = rd.port_redirect();
  redirect.path = rd.path_redirect();
  redirect.prefix_rewrite = rd.prefix_rewrite();
  static constexpr int kCodes[] = {301, 302, 303, 307, 308};
  redirect.status = kCodes[std::min<int>(rd.response_code(), 4)];
  return redirect;
}

Route ReadRoute(const pb::Route& in, const std::string& rpath, ConfigErrors* errors) {
  Route route;
  route.name = in.name();
  route.operation = in.decorator().operation();
  ReadMatch(in.match(), rpath, &route, errors);
  route.fault = ReadFault(in, rpath, errors);
  route.request_headers_to_add = Ops(in.request_headers_to_add());
  route.response_headers_to_add = Ops(in.response_headers_to_add());
  route.request_headers_to_remove = Names(in.request_headers_to_remove());
  route.response_headers_to_remove = Names(in.response_headers_to_remove());
  switch (in.action_case()) {
    case pb::Route::kRoute: ReadRouteAction(in.route(), rpath, &route, errors); break;
    case pb::Route::kRedirect: route.redirect = ReadRedirect(in.redirect()); break;
    case pb::Route::kDirectResponse:
      route.direct_status = static_cast<int>(in.direct_response().status());
      if (route.direct_status < 200 || route.direct_status > 599)
        errors->Add(rpath + ".direct_response.status", "must be between 200 and 599");
      break;
    default: errors->Add(rpath, "an action (route, redirect or direct_response) is required");
  }
  return route;
}

VirtualHost ReadVirtualHost(const pb::VirtualHost& in, const std::string& vpath,
                            ConfigErrors* errors) {
  VirtualHost vh;
  vh.name = in.name();
  if (in.domains_size() == 0) errors->Add(vpath + ".domains", "at least one domain is required");
  for (const auto& d : in.domains()) vh.domains.push_back(absl::AsciiStrToLower(d));
  vh.require_tls = in.require_tls() != pb::VirtualHost::NONE;
  for (int r = 0; r < in.routes_size(); ++r)
    vh.routes.push_back(ReadRoute(in.routes(r), absl::StrCat(vpath, ".routes[", r, "]"), errors));
  return vh;
}

}  // namespace

bool Route::Matches(const RequestView& request) const {
  absl::string_view path_only = request.path.substr(0, request.path.find('?'));
  switch (path_kind) {
    case PathKind::kPrefix:
      if (case_sensitive ? !absl::StartsWith(path_only, path)
                         : !absl::StartsWithIgnoreCase(path_only, path))
        return false;
      break;
    case PathKind::kExact:
      if (case_sensitive ? path_only != path : !absl::EqualsIgnoreCase(path_only, path))
        return false;
      break;
    case PathKind::kRegex:
      if (!re2::RE2::FullMatch(re2::StringPiece(path_only.data(), path_only.size()), *path_regex))
        return false;
      break;
  }
  for (const HeaderMatcher& h : headers) {
    std::string joined;
    std::optional<absl::string_view> value = HeaderValue(request, h.name, &joined);
    bool matched = value && h.Matches(*value);
    if (matched == h.invert) return false;
  }
  if (!query.empty()) {
    size_t q = request.path.find('?');
    absl::string_view qs =
        q == absl::string_view::npos ? absl::string_view() : request.path.substr(q + 1);
    for (const QueryMatcher& m : query) {
      bool matched = false;
      for (absl::string_view pair : absl::StrSplit(qs, '&', absl::SkipEmpty())) {
        std::pair<absl::string_view, absl::string_view> kv =
            absl::StrSplit(pair, absl::MaxSplits('=', 1));
        if (kv.first != m.name) continue;
        matched = m.Matches(kv.second);
        if (matched) break;
      }
      if (!matched) return false;
    }
  }
  return true;
}

const WeightedTarget* Route::Pick(uint64_t draw) const {
  return PickWeighted(targets, total_weight, draw);
}

absl::StatusOr<std::shared_ptr<const RouteTable>> RouteTable::FromProto(
    const pb::RouteConfiguration& config) {
  auto table = std::make_shared<RouteTable>();
  table->name_ = config.name();
  ConfigErrors errors;
  for (int v = 0; v < config.virtual_hosts_size(); ++v) {
    table->virtual_hosts_.push_back(
        ReadVirtualHost(config.virtual_hosts(v), absl::StrCat("virtual_hosts[", v, "]"), &errors));
  }
  if (!errors.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("route config ", config.name(), ": ", errors.Join()));
  }
  return std::shared_ptr<const RouteTable>(std::move(table));
}

const VirtualHost* RouteTable::FindVirtualHost(absl::string_view authority) const {
  std::string host = absl::AsciiStrToLower(authority);
  std::string without_port = host;
  if (size_t colon = host.rfind(':');
      colon != std::string::npos && host.find(']') == std::string::npos) {
    without_port = host.substr(0, colon);
  }
  const VirtualHost* suffix_best = nullptr;
  const VirtualHost* prefix_best = nullptr;
  const VirtualHost* star = nullptr;
  size_t suffix_len = 0, prefix_len = 0;
  for (const std::string& candidate : {host, without_port}) {
    for (const VirtualHost& vh : virtual_hosts_) {
      for (const std::string& d : vh.domains) {
        if (d == candidate) return &vh;
      }
    }
  }
  for (const VirtualHost& vh : virtual_hosts_) {
    for (const std::string& d : vh.domains) {
      if (d == "*") {
        if (!star) star = &vh;
      } else if (absl::StartsWith(d, "*")) {
        absl::string_view suffix = absl::string_view(d).substr(1);
        for (const std::string& candidate : {host, without_port}) {
          if (candidate.size() > suffix.size() && absl::EndsWith(candidate, suffix) &&
              suffix.size() > suffix_len) {
            suffix_best = &vh;
            suffix_len = suffix.size();
          }
        }
      } else if (absl::EndsWith(d, "*")) {
        absl::string_view prefix = absl::string_view(d).substr(0, d.size() - 1);
        for (const std::string& candidate : {host, without_port}) {
          if (candidate.size() > prefix.size() && absl::StartsWith(candidate, prefix) &&
              prefix.size() > prefix_len) {
            prefix_best = &vh;
            prefix_len = prefix.size();
          }
        }
      }
    }
  }
  if (suffix_best) return suffix_best;
  if (prefix_best) return prefix_best;
  return star;
}

const Route* RouteTable::Match(const RequestView& request) const {
  const VirtualHost* vh = FindVirtualHost(request.authority);
  if (!vh) return nullptr;
  for (const Route& r : vh->routes) {
    if (r.Matches(request)) return &r;
  }
  return nullptr;
}

}  // namespace mesh::dataplane
