#include "dataplane/authn/jwt_authn.h"

#include <optional>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "dataplane/stream/header_map.h"
#include "envoy/extensions/filters/http/jwt_authn/v3/config.pb.h"

namespace mesh::dataplane {

namespace pb = envoy::extensions::filters::http::jwt_authn::v3;

struct JwtAuthn::Provider {
  struct Header {
    std::string name, prefix;  // name lower case
  };
  std::string name;
  JwtRule rule;
  std::shared_ptr<const Jwks> jwks;
  bool forward = false;
  std::vector<Header> from_headers;
  std::vector<std::string> from_params;
  std::string payload_header;  // lower case; empty: none
};

struct JwtAuthn::Requirement {
  enum class Kind { kProvider, kAny, kAll, kAllowMissing, kAllowMissingOrFailed };
  Kind kind = Kind::kAllowMissingOrFailed;
  size_t provider = 0;
  std::vector<Requirement> children;
};

struct JwtAuthn::Rule {
  bool exact = false;  // match.path; else match.prefix
  std::string path;
  std::optional<Requirement> requirement;  // none: nothing required
};

JwtAuthn::JwtAuthn() = default;
JwtAuthn::~JwtAuthn() = default;

namespace {

// A query parameter's value from a request path ("/p?a=1&b=2"), or nullopt.
std::optional<absl::string_view> QueryParam(absl::string_view path, absl::string_view name) {
  size_t q = path.find('?');
  if (q == absl::string_view::npos) return std::nullopt;
  absl::string_view query = path.substr(q + 1);
  query = query.substr(0, query.find('#'));
  for (absl::string_view pair : absl::StrSplit(query, '&')) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(pair, absl::MaxSplits('=', 1));
    if (kv.first == name) return kv.second;
  }
  return std::nullopt;
}

}  // namespace

absl::StatusOr<std::shared_ptr<const JwtAuthn>> JwtAuthn::FromProto(const pb::JwtAuthentication& in,
                                                                    const std::string& path) {
  auto out = std::make_shared<JwtAuthn>();
  std::map<std::string, size_t> index;
  std::map<std::string, const pb::JwtProvider*> sorted;
  for (const auto& [name, p] : in.providers()) sorted[name] = &p;
  for (const auto& [name, p] : sorted) {
    const std::string ppath = absl::StrCat(path, ".providers[", name, "]");
    Provider provider;
    provider.name = name;
    provider.rule.issuer = p->issuer();
    provider.rule.audiences.assign(p->audiences().begin(), p->audiences().end());
    if (!p->has_local_jwks() || p->local_jwks().inline_string().empty())
      return absl::InvalidArgumentError(ppath + ".local_jwks.inline_string: is required");
    auto jwks = Jwks::Parse(p->local_jwks().inline_string());
    if (!jwks.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(ppath, ".local_jwks.inline_string: ", jwks.status().message()));
    }
    provider.jwks = *jwks;
    provider.forward = p->forward();
    for (const auto& h : p->from_headers())
      provider.from_headers.push_back({absl::AsciiStrToLower(h.name()), h.value_prefix()});
    provider.from_params.assign(p->from_params().begin(), p->from_params().end());
    if (provider.from_headers.empty() && provider.from_params.empty()) {
      // Envoy's defaults: the Authorization header's Bearer token, then ?access_token=.
      provider.from_headers.push_back({"authorization", "Bearer "});
      provider.from_params.push_back("access_token");
    }
    provider.payload_header = absl::AsciiStrToLower(p->forward_payload_header());
    index[name] = out->providers_.size();
    out->providers_.push_back(std::move(provider));
  }
  // A requirement tree, each provider name resolved.
  std::function<absl::StatusOr<Requirement>(const pb::JwtRequirement&, const std::string&)> read =
      [&](const pb::JwtRequirement& r, const std::string& rpath) -> absl::StatusOr<Requirement> {
    Requirement req;
    switch (r.requires_type_case()) {
      case pb::JwtRequirement::kProviderName: {
        auto it = index.find(r.provider_name());
        if (it == index.end()) {
          return absl::InvalidArgumentError(
              absl::StrCat(rpath, ".provider_name: no provider \"", r.provider_name(), "\""));
        }
        req.kind = Requirement::Kind::kProvider;
        req.provider = it->second;
        return req;
      }
      case pb::JwtRequirement::kRequiresAny:
      case pb::JwtRequirement::kRequiresAll: {
        const bool any = r.requires_type_case() == pb::JwtRequirement::kRequiresAny;
        req.kind = any ? Requirement::Kind::kAny : Requirement::Kind::kAll;
        const auto& list = any ? r.requires_any().requirements() : r.requires_all().requirements();
        for (int i = 0; i < list.size(); ++i) {
          auto child = read(list[i], absl::StrCat(rpath, any ? ".requires_any" : ".requires_all",
                                                  ".requirements[", i, "]"));
          if (!child.ok()) return child.status();
          req.children.push_back(std::move(*child));
        }
        return req;
      }
      case pb::JwtRequirement::kAllowMissing:
        req.kind = Requirement::Kind::kAllowMissing;
        return req;
      case pb::JwtRequirement::kAllowMissingOrFailed:
        req.kind = Requirement::Kind::kAllowMissingOrFailed;
        return req;
      default:
        return absl::InvalidArgumentError(
            absl::StrCat(rpath, ": provider_and_audiences is not supported"));
    }
  };
  for (int i = 0; i < in.rules_size(); ++i) {
    const std::string rpath = absl::StrCat(path, ".rules[", i, "]");
    const auto& r = in.rules(i);
    Rule rule;
    if (r.match().has_path()) {
      rule.exact = true;
      rule.path = r.match().path();
    } else if (r.match().has_prefix()) {
      rule.path = r.match().prefix();
    } else {
      return absl::InvalidArgumentError(rpath + ".match: only prefix and path are supported");
    }
    if (r.has_requires_()) {
      auto req = read(r.requires_(), rpath + ".requires");
      if (!req.ok()) return req.status();
      rule.requirement = std::move(*req);
    }
    out->rules_.push_back(std::move(rule));
  }
  return std::shared_ptr<const JwtAuthn>(std::move(out));
}

JwtAuthn::Outcome JwtAuthn::Authenticate(HeaderMap& headers, absl::string_view path,
                                         absl::Time now) const {
  Outcome out;
  const absl::string_view path_only = path.substr(0, path.find_first_of("?#"));
  const Rule* rule = nullptr;
  for (const Rule& r : rules_) {
    if (r.exact ? path_only == r.path : absl::StartsWith(path_only, r.path)) {
      rule = &r;
      break;
    }
  }
  if (!rule || !rule->requirement) return out;

  // Each provider's token (where it was found) and its verification, done once.
  struct Found {
    bool looked = false;
    std::string token, header;  // header: where it came from ("" for a query parameter)
    std::optional<absl::StatusOr<VerifiedJwt>> verified;
  };
  std::vector<Found> found(providers_.size());
  auto look = [&](size_t i) -> Found& {
    Found& f = found[i];
    if (f.looked) return f;
    f.looked = true;
    const Provider& p = providers_[i];
    for (const auto& h : p.from_headers) {
      const std::string* v = headers.Get(h.name);
      if (v && absl::StartsWith(*v, h.prefix)) {
        f.token =
            std::string(absl::StripAsciiWhitespace(absl::string_view(*v).substr(h.prefix.size())));
        f.header = h.name;
        break;
      }
    }
    for (size_t j = 0; f.token.empty() && j < p.from_params.size(); ++j) {
      if (auto v = QueryParam(path, p.from_params[j])) f.token = std::string(*v);
    }
    if (!f.token.empty()) f.verified = JwtVerifier::Verify(f.token, p.rule, *p.jwks, now);
    return f;
  };
  bool any_token = false;
  for (size_t i = 0; i < providers_.size(); ++i) any_token = any_token || !look(i).token.empty();

  // Evaluation: ok, or the error that refuses the request.
  std::function<std::optional<std::string>(const Requirement&)> check =
      [&](const Requirement& r) -> std::optional<std::string> {
    switch (r.kind) {
      case Requirement::Kind::kProvider: {
        Found& f = look(r.provider);
        if (f.token.empty()) return std::string("Jwt is missing");
        if (!f.verified->ok()) return std::string(f.verified->status().message());
        return std::nullopt;
      }
      case Requirement::Kind::kAny: {
        std::optional<std::string> first;
        for (const Requirement& c : r.children) {
          std::optional<std::string> e = check(c);
          if (!e) return std::nullopt;
          if (!first || *first == "Jwt is missing") first = e;
        }
        return first;
      }
      case Requirement::Kind::kAll:
        for (const Requirement& c : r.children) {
          if (std::optional<std::string> e = check(c)) return e;
        }
        return std::nullopt;
      case Requirement::Kind::kAllowMissing:
        if (!any_token) return std::nullopt;
        return std::string("Jwt is missing");  // a token is present: it must verify elsewhere
      case Requirement::Kind::kAllowMissingOrFailed: return std::nullopt;
    }
    return std::nullopt;
  };
  if (std::optional<std::string> error = check(*rule->requirement)) {
    out.allowed = false;
    out.error = *error;
    return out;
  }
  for (size_t i = 0; i < providers_.size(); ++i) {
    const Found& f = found[i];
    if (!f.verified || !f.verified->ok()) continue;
    const VerifiedJwt& v = **f.verified;
    for (const auto& [k, values] : v.facts) out.facts[k] = values;
    const Provider& p = providers_[i];
    if (!p.forward && !f.header.empty()) headers.Remove(f.header);
    if (!p.payload_header.empty())
      headers.Set(p.payload_header, absl::WebSafeBase64Escape(v.payload_json));
  }
  return out;
}

}  // namespace mesh::dataplane
