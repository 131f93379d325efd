#include "dataplane/router/router.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "dataplane/upstream/cluster_table.h"

namespace mesh::dataplane {

Decision Decide(const RouteTable& table, const RequestView& request, uint64_t draw) {
  Decision d;
  const VirtualHost* vh = table.FindVirtualHost(request.authority);
  if (vh && vh->require_tls && !request.tls) {
    // httpsRedirect: the same URL over https, on the default port.
    absl::string_view host = request.authority.substr(0, request.authority.rfind(':'));
    d.kind = Decision::Kind::kRedirect;
    d.status = 301;
    d.location = absl::StrCat("https://", host, request.path);
    return d;
  }
  d.route = table.Match(request);
  if (!d.route) return d;
  if (d.route->redirect) {
    d.kind = Decision::Kind::kRedirect;
    d.status = d.route->redirect->status;
    d.location = RedirectLocation(*d.route->redirect, *d.route, request.authority, request.path);
    return d;
  }
  if (d.route->direct_status) {
    d.kind = Decision::Kind::kDirect;
    d.status = d.route->direct_status;
    return d;
  }
  d.target = d.route->Pick(draw);
  if (!d.target) return Decision{};  // a route with no action cannot be built; treat as no route
  d.kind = Decision::Kind::kForward;
  return d;
}

namespace {

// `path` with `replacement` in place of its first `matched` characters.
std::string Replace(absl::string_view path, size_t matched, absl::string_view replacement) {
  return absl::StrCat(replacement, path.substr(std::min(matched, path.size())));
}

std::string Rewrite(const Route& route, absl::string_view path, const std::string& rewrite) {
  size_t q = path.find('?');
  absl::string_view only = path.substr(0, q);
  absl::string_view query = q == absl::string_view::npos ? "" : path.substr(q);
  if (route.path_kind == Route::PathKind::kPrefix)
    return absl::StrCat(Replace(only, route.path.size(), rewrite), query);
  // An exact or regex match rewrites the whole path, as Istio's uri.exact/regex with rewrite.uri.
  return absl::StrCat(rewrite, query);
}

}  // namespace

std::string RewritePath(const Route& route, absl::string_view path) {
  if (route.prefix_rewrite.empty()) return std::string(path);
  return Rewrite(route, path, route.prefix_rewrite);
}

std::string RedirectLocation(const Redirect& redirect, const Route& route,
                             absl::string_view authority, absl::string_view path) {
  std::string scheme = redirect.scheme.empty() ? "http" : redirect.scheme;
  std::string host(authority);
  if (!redirect.host.empty()) host = redirect.host;  // the whole authority, as Envoy does
  if (redirect.port) {
    size_t colon = host.rfind(':');
    host =
        absl::StrCat(colon == std::string::npos ? host : host.substr(0, colon), ":", redirect.port);
  }
  std::string new_path;
  if (!redirect.path.empty()) {
    size_t q = path.find('?');
    new_path = redirect.path + std::string(q == absl::string_view::npos ? "" : path.substr(q));
  } else if (!redirect.prefix_rewrite.empty()) {
    new_path = Rewrite(route, path, redirect.prefix_rewrite);
  } else {
    new_path = std::string(path);
  }
  return absl::StrCat(scheme, "://", host, new_path);
}

}  // namespace mesh::dataplane

namespace mesh::dataplane {
namespace {

std::optional<absl::string_view> Header(const RequestView& request, absl::string_view name) {
  for (const auto& [k, v] : request.headers) {
    if (k == name) return v;
  }
  return std::nullopt;
}

std::optional<absl::string_view> Cookie(const RequestView& request, absl::string_view name) {
  for (const auto& [k, v] : request.headers) {
    if (k != "cookie") continue;
    for (absl::string_view pair : absl::StrSplit(v, ';')) {
      pair = absl::StripAsciiWhitespace(pair);
      std::pair<absl::string_view, absl::string_view> kv =
          absl::StrSplit(pair, absl::MaxSplits('=', 1));
      if (kv.first == name) return kv.second;
    }
  }
  return std::nullopt;
}

std::optional<absl::string_view> QueryParameter(const RequestView& request,
                                                absl::string_view name) {
  size_t q = request.path.find('?');
  if (q == absl::string_view::npos) return std::nullopt;
  for (absl::string_view pair : absl::StrSplit(request.path.substr(q + 1), '&')) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(pair, absl::MaxSplits('=', 1));
    if (kv.first == name) return kv.second;
  }
  return std::nullopt;
}

}  // namespace

std::optional<uint64_t> RequestHash(const Route& route, const RequestView& request,
                                    absl::string_view source_ip, uint64_t random,
                                    std::string* set_cookie) {
  std::optional<uint64_t> out;
  std::string generated;
  for (const HashPolicy& policy : route.hash_policies) {
    std::optional<absl::string_view> key;
    switch (policy.kind) {
      case HashPolicy::Kind::kHeader: key = Header(request, policy.name); break;
      case HashPolicy::Kind::kCookie:
        key = Cookie(request, policy.name);
        if (!key && policy.cookie_ttl && set_cookie) {
          generated = absl::StrCat(absl::Hex(random, absl::kZeroPad16));
          key = generated;
          *set_cookie = absl::StrCat(
              policy.name, "=", generated, "; Max-Age=", absl::ToInt64Seconds(*policy.cookie_ttl),
              policy.cookie_path.empty() ? "" : "; Path=", policy.cookie_path, "; HttpOnly");
        }
        break;
      case HashPolicy::Kind::kSourceIp:
        if (!source_ip.empty()) key = source_ip;
        break;
      case HashPolicy::Kind::kQueryParameter: key = QueryParameter(request, policy.name); break;
    }
    if (!key) continue;
    uint64_t h = HashKey(*key);
    // Envoy folds several policies' hashes together: rotate the previous one, then xor.
    out = out ? (((*out << 1) | (*out >> 63)) ^ h) : h;
  }
  return out;
}

}  // namespace mesh::dataplane
