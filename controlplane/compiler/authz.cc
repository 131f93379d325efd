#include "controlplane/compiler/authz.h"

#include <arpa/inet.h>

#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "controlplane/registry/registry.h"
#include "re2/re2.h"

namespace mesh::compiler {
namespace {

namespace rbac = envoy::config::rbac::v3;
namespace matcher = envoy::type::matcher::v3;
using AP = model::AuthorizationPolicy;

constexpr char kRootNamespace[] = "istio-system";
// Where a request's JWT facts live (Istio's authn filter metadata namespace).
constexpr char kAuthnMetadata[] = "istio_authn";

// Istio's value patterns: "*" (anything), "prefix*", "*suffix", or exact. `add` goes in front of
// every value but a suffix (principals are matched with their "spiffe://" scheme).
matcher::StringMatcher Pattern(const std::string& v, const std::string& add = "",
                               bool ignore_case = false) {
  matcher::StringMatcher m;
  if (v == "*") {
    m.set_prefix(add);
  } else if (absl::EndsWith(v, "*")) {
    m.set_prefix(add + v.substr(0, v.size() - 1));
  } else if (absl::StartsWith(v, "*")) {
    m.set_suffix(v.substr(1));
  } else {
    m.set_exact(add + v);
  }
  if (ignore_case) m.set_ignore_case(true);
  return m;
}

// A namespace as the SPIFFE ID shows it: spiffe://TRUST_DOMAIN/ns/NS/sa/SA.
matcher::StringMatcher NamespacePattern(const std::string& ns) {
  std::string inner;
  if (ns == "*") {
    inner = "[^/]+";
  } else if (absl::EndsWith(ns, "*")) {
    inner = RE2::QuoteMeta(ns.substr(0, ns.size() - 1)) + "[^/]*";
  } else if (absl::StartsWith(ns, "*")) {
    inner = "[^/]*" + RE2::QuoteMeta(ns.substr(1));
  } else {
    inner = RE2::QuoteMeta(ns);
  }
  matcher::StringMatcher m;
  m.mutable_safe_regex()->set_regex(absl::StrCat("spiffe://[^/]+/ns/", inner, "/.*"));
  return m;
}

envoy::config::core::v3::CidrRange Cidr(const std::string& v) {
  envoy::config::core::v3::CidrRange c;
  std::vector<std::string> parts = absl::StrSplit(v, absl::MaxSplits('/', 1));
  c.set_address_prefix(parts[0]);
  uint32_t len = absl::StrContains(parts[0], ':') ? 128 : 32;
  if (parts.size() == 2) absl::SimpleAtoi(parts[1], &len);
  c.mutable_prefix_len()->set_value(len);
  return c;
}

// ---- Principals (who is asking) ----

rbac::Principal AnyId() {
  rbac::Principal p;
  p.set_any(true);
  return p;
}
rbac::Principal Ids(std::vector<rbac::Principal> ids, bool all) {
  if (ids.size() == 1) return std::move(ids[0]);
  rbac::Principal p;
  auto* set = all ? p.mutable_and_ids() : p.mutable_or_ids();
  for (auto& id : ids) *set->add_ids() = std::move(id);
  return p;
}
rbac::Principal NotId(rbac::Principal id) {
  rbac::Principal p;
  *p.mutable_not_id() = std::move(id);
  return p;
}
rbac::Principal Authenticated(matcher::StringMatcher name) {
  rbac::Principal p;
  *p.mutable_authenticated()->mutable_principal_name() = std::move(name);
  return p;
}
rbac::Principal AuthnMetadata(const std::vector<std::string>& path, matcher::StringMatcher value,
                              bool list) {
  rbac::Principal p;
  auto* m = p.mutable_metadata();
  m->set_filter(kAuthnMetadata);
  for (const auto& key : path) m->add_path()->set_key(key);
  if (list) {
    *m->mutable_value()->mutable_list_match()->mutable_one_of()->mutable_string_match() =
        std::move(value);
  } else {
    *m->mutable_value()->mutable_string_match() = std::move(value);
  }
  return p;
}
rbac::Principal HeaderId(const std::string& name, matcher::StringMatcher value) {
  rbac::Principal p;
  p.mutable_header()->set_name(name);
  *p.mutable_header()->mutable_string_match() = std::move(value);
  return p;
}

// ---- Permissions (what is asked) ----

rbac::Permission AnyRule() {
  rbac::Permission p;
  p.set_any(true);
  return p;
}
rbac::Permission Rules(std::vector<rbac::Permission> rules, bool all) {
  if (rules.size() == 1) return std::move(rules[0]);
  rbac::Permission p;
  auto* set = all ? p.mutable_and_rules() : p.mutable_or_rules();
  for (auto& r : rules) *set->add_rules() = std::move(r);
  return p;
}
rbac::Permission NotRule(rbac::Permission rule) {
  rbac::Permission p;
  *p.mutable_not_rule() = std::move(rule);
  return p;
}
rbac::Permission HeaderRule(const std::string& name, matcher::StringMatcher value) {
  rbac::Permission p;
  p.mutable_header()->set_name(name);
  *p.mutable_header()->mutable_string_match() = std::move(value);
  return p;
}
rbac::Permission PathRule(const std::string& v) {
  rbac::Permission p;
  *p.mutable_url_path()->mutable_path() = Pattern(v);
  return p;
}

// A list of values as one identifier: any of `values` (or none of them, for the not-forms).
template <typename T, typename Make>
void AddAnyOf(const std::vector<std::string>& values, bool negate, Make make, std::vector<T>* out) {
  if (values.empty()) return;
  std::vector<T> each;
  for (const auto& v : values) each.push_back(make(v));
  if constexpr (std::is_same_v<T, rbac::Principal>) {
    rbac::Principal any = Ids(std::move(each), false);
    out->push_back(negate ? NotId(std::move(any)) : std::move(any));
  } else {
    rbac::Permission any = Rules(std::move(each), false);
    out->push_back(negate ? NotRule(std::move(any)) : std::move(any));
  }
}

// Compiles one rule for one filter kind; records whether it needed HTTP.
class RuleCompiler {
 public:
  RuleCompiler(bool tcp, const std::map<uint32_t, uint32_t>& listener_ports)
      : tcp_(tcp), listener_ports_(listener_ports) {}

  // The rule as an RBAC policy; `needs_http` says whether a part of it was HTTP-only (left out
  // of a TCP filter's policy).
  rbac::Policy Compile(const AP::Rule& rule, bool* needs_http) {
    needs_http_ = false;
    std::vector<rbac::Principal> ids;
    std::vector<rbac::Permission> rules;
    if (!rule.from.empty()) {
      std::vector<rbac::Principal> sources;
      for (const AP::Source& s : rule.from) sources.push_back(Source(s));
      ids.push_back(Ids(std::move(sources), false));
    }
    if (!rule.to.empty()) {
      std::vector<rbac::Permission> operations;
      for (const AP::Operation& o : rule.to) operations.push_back(Operation(o));
      rules.push_back(Rules(std::move(operations), false));
    }
    for (const AP::Condition& c : rule.when) Condition(c, &ids, &rules);
    rbac::Policy policy;
    *policy.add_principals() = ids.empty() ? AnyId() : Ids(std::move(ids), true);
    *policy.add_permissions() = rules.empty() ? AnyRule() : Rules(std::move(rules), true);
    *needs_http = needs_http_;
    return policy;
  }

 private:
  // Whether an HTTP-only part may go in; notes that the rule had one.
  bool Http(const std::vector<std::string>& values) {
    if (values.empty()) return false;
    needs_http_ = true;
    return !tcp_;
  }

  rbac::Principal Source(const AP::Source& s) {
    std::vector<rbac::Principal> all;
    auto principal = [](const std::string& v) { return Authenticated(Pattern(v, "spiffe://")); };
    auto ns = [](const std::string& v) { return Authenticated(NamespacePattern(v)); };
    auto direct_ip = [](const std::string& v) {
      rbac::Principal p;
      *p.mutable_direct_remote_ip() = Cidr(v);
      return p;
    };
    auto remote_ip = [](const std::string& v) {
      rbac::Principal p;
      *p.mutable_remote_ip() = Cidr(v);
      return p;
    };
    auto request_principal = [](const std::string& v) {
      return AuthnMetadata({"request.auth.principal"}, Pattern(v), false);
    };
    AddAnyOf(s.principals, false, principal, &all);
    AddAnyOf(s.not_principals, true, principal, &all);
    if (Http(s.request_principals)) AddAnyOf(s.request_principals, false, request_principal, &all);
    if (Http(s.not_request_principals))
      AddAnyOf(s.not_request_principals, true, request_principal, &all);
    AddAnyOf(s.namespaces, false, ns, &all);
    AddAnyOf(s.not_namespaces, true, ns, &all);
    AddAnyOf(s.ip_blocks, false, direct_ip, &all);
    AddAnyOf(s.not_ip_blocks, true, direct_ip, &all);
    AddAnyOf(s.remote_ip_blocks, false, remote_ip, &all);
    AddAnyOf(s.not_remote_ip_blocks, true, remote_ip, &all);
    return all.empty() ? AnyId() : Ids(std::move(all), true);
  }

  rbac::Permission Port(const std::string& v) {
    uint32_t port = 0;
    absl::SimpleAtoi(v, &port);
    if (auto it = listener_ports_.find(port); it != listener_ports_.end()) port = it->second;
    rbac::Permission p;
    p.set_destination_port(port);
    return p;
  }

  rbac::Permission Operation(const AP::Operation& o) {
    std::vector<rbac::Permission> all;
    auto host = [](const std::string& v) { return HeaderRule(":authority", Pattern(v, "", true)); };
    auto method = [](const std::string& v) { return HeaderRule(":method", Pattern(v)); };
    auto port = [this](const std::string& v) { return Port(v); };
    if (Http(o.hosts)) AddAnyOf(o.hosts, false, host, &all);
    if (Http(o.not_hosts)) AddAnyOf(o.not_hosts, true, host, &all);
    AddAnyOf(o.ports, false, port, &all);
    AddAnyOf(o.not_ports, true, port, &all);
    if (Http(o.methods)) AddAnyOf(o.methods, false, method, &all);
    if (Http(o.not_methods)) AddAnyOf(o.not_methods, true, method, &all);
    if (Http(o.paths)) AddAnyOf(o.paths, false, PathRule, &all);
    if (Http(o.not_paths)) AddAnyOf(o.not_paths, true, PathRule, &all);
    return all.empty() ? AnyRule() : Rules(std::move(all), true);
  }

  // A `when` condition: on the principal side (who) or the permission side (what).
  void Condition(const AP::Condition& c, std::vector<rbac::Principal>* ids,
                 std::vector<rbac::Permission>* rules) {
    const std::string& key = c.key;
    auto both = [&](auto make, auto* out) {
      AddAnyOf(c.values, false, make, out);
      AddAnyOf(c.not_values, true, make, out);
    };
    auto bracketed = [&](absl::string_view prefix) {
      return key.substr(prefix.size(), key.size() - prefix.size() - 1);
    };
    const bool http_values = !c.values.empty() || !c.not_values.empty();
    if (absl::StartsWith(key, "request.headers[")) {
      if (!Http({key}) || !http_values) return;
      std::string name = bracketed("request.headers[");
      both([&](const std::string& v) { return HeaderId(name, Pattern(v)); }, ids);
    } else if (absl::StartsWith(key, "request.auth.claims[")) {
      if (!Http({key})) return;
      std::vector<std::string> path = {"request.auth.claims"};
      for (absl::string_view part : absl::StrSplit(bracketed("request.auth.claims["), "]["))
        path.emplace_back(part);
      both([&](const std::string& v) { return AuthnMetadata(path, Pattern(v), true); }, ids);
    } else if (absl::StartsWith(key, "request.auth.")) {
      if (!Http({key})) return;
      const bool list = key == "request.auth.audiences";
      both([&](const std::string& v) { return AuthnMetadata({key}, Pattern(v), list); }, ids);
    } else if (key == "source.ip" || key == "remote.ip") {
      both(
          [&](const std::string& v) {
            rbac::Principal p;
            *(key == "source.ip" ? p.mutable_direct_remote_ip() : p.mutable_remote_ip()) = Cidr(v);
            return p;
          },
          ids);
    } else if (key == "source.namespace") {
      both([](const std::string& v) { return Authenticated(NamespacePattern(v)); }, ids);
    } else if (key == "source.principal") {
      both([](const std::string& v) { return Authenticated(Pattern(v, "spiffe://")); }, ids);
    } else if (key == "destination.ip") {
      both(
          [](const std::string& v) {
            rbac::Permission p;
            *p.mutable_destination_ip() = Cidr(v);
            return p;
          },
          rules);
    } else if (key == "destination.port") {
      both([this](const std::string& v) { return Port(v); }, rules);
    } else if (key == "connection.sni") {
      both(
          [](const std::string& v) {
            rbac::Permission p;
            *p.mutable_requested_server_name() = Pattern(v);
            return p;
          },
          rules);
    }
  }

  const bool tcp_;
  const std::map<uint32_t, uint32_t>& listener_ports_;
  bool needs_http_ = false;
};

bool Applies(const model::Object& o, const std::optional<model::Labels>& selector,
             const std::string& ns, const model::Labels& labels) {
  const bool no_selector = !selector || selector->empty();
  if (o.meta.namespace_ != ns && o.meta.namespace_ != kRootNamespace) return false;
  return no_selector || registry::LabelsMatch(*selector, labels);
}

namespace jwt = envoy::extensions::filters::http::jwt_authn::v3;

std::optional<jwt::JwtAuthentication> BuildJwt(const model::ConfigSnapshot& config,
                                               const std::string& ns, const model::Labels& labels,
                                               const MeshConfig& mesh,
                                               std::set<std::string>* uris) {
  jwt::JwtAuthentication out;
  jwt::JwtRequirementOrList any;
  for (const model::Object* o : config.Sorted(model::Kind::kRequestAuthentication)) {
    const auto& ra = std::get<model::RequestAuthentication>(o->spec);
    if (!Applies(*o, ra.selector, ns, labels)) continue;
    for (size_t i = 0; i < ra.jwt_rules.size(); ++i) {
      const auto& rule = ra.jwt_rules[i];
      const std::string name =
          absl::StrCat("origins-", o->meta.namespace_, "-", o->meta.name, "-", i);
      jwt::JwtProvider& p = (*out.mutable_providers())[name];
      p.set_issuer(rule.issuer);
      for (const auto& a : rule.audiences) p.add_audiences(a);
      if (rule.jwks_uri.empty()) {
        p.mutable_local_jwks()->set_inline_string(rule.jwks);
      } else {
        const std::string* fetched = nullptr;
        if (mesh.fetched_jwks) {
          auto it = mesh.fetched_jwks->find(rule.jwks_uri);
          if (it != mesh.fetched_jwks->end()) fetched = &it->second;
        }
        p.mutable_local_jwks()->set_inline_string(fetched ? *fetched : kUnfetchedJwks);
        uris->insert(rule.jwks_uri);
      }
      p.set_forward(rule.forward_original_token);
      for (const auto& h : rule.from_headers) {
        jwt::JwtHeader* header = p.add_from_headers();
        header->set_name(h.name);
        header->set_value_prefix(h.prefix);
      }
      for (const auto& param : rule.from_params) p.add_from_params(param);
      p.set_forward_payload_header(rule.output_payload_to_header);
      p.set_payload_in_metadata(rule.issuer);
      any.add_requirements()->set_provider_name(name);
    }
  }
  if (out.providers().empty()) return std::nullopt;
  any.add_requirements()->mutable_allow_missing();
  jwt::RequirementRule* r = out.add_rules();
  r->mutable_match()->set_prefix("/");
  *r->mutable_requires_()->mutable_requires_any() = std::move(any);
  return out;
}

rbac::RBAC::Action RbacAction(AP::Action a) {
  switch (a) {
    case AP::Action::kDeny: return rbac::RBAC::DENY;
    case AP::Action::kAudit: return rbac::RBAC::LOG;
    case AP::Action::kAllow: break;
  }
  return rbac::RBAC::ALLOW;
}

}  // namespace

// An EC P-256 public key made for this purpose; its private key was never kept.
const char kUnfetchedJwks[] =
    R"({"keys":[{"kty":"EC","crv":"P-256","kid":"meshpilot-unfetched","alg":"ES256",)"
    R"("x":"G0k_A_XIzXBYfvrKBqsSxw06O13IIGMHCIzMovhKb7M",)"
    R"("y":"AL3JwfWEi1go0EiGBNVSXijHy6meSRZV04XMnHfadp4"}]})";

AuthzFilters BuildAuthz(const model::ConfigSnapshot& config, const std::string& ns,
                        const model::Labels& labels,
                        const std::map<uint32_t, uint32_t>& listener_ports,
                        const MeshConfig& mesh) {
  std::vector<const model::Object*> applying;
  for (const model::Object* o : config.Sorted(model::Kind::kAuthorizationPolicy)) {
    if (Applies(*o, std::get<AP>(o->spec).selector, ns, labels)) applying.push_back(o);
  }
  AuthzFilters out;
  out.jwt = BuildJwt(config, ns, labels, mesh, &out.jwks_uris);
  for (AP::Action action : {AP::Action::kDeny, AP::Action::kAllow, AP::Action::kAudit}) {
    std::optional<rbac::RBAC> http, tcp;
    for (const model::Object* o : applying) {
      const auto& ap = std::get<AP>(o->spec);
      if (ap.action != action) continue;
      // An ALLOW policy takes part even without rules: it then allows nothing.
      if (!http) {
        http.emplace();
        http->set_action(RbacAction(action));
        tcp.emplace();
        tcp->set_action(RbacAction(action));
      }
      RuleCompiler http_rules(false, listener_ports), tcp_rules(true, listener_ports);
      for (size_t i = 0; i < ap.rules.size(); ++i) {
        const std::string name =
            absl::StrCat("ns[", o->meta.namespace_, "]-policy[", o->meta.name, "]-rule[", i, "]");
        bool needs_http = false;
        (*http->mutable_policies())[name] = http_rules.Compile(ap.rules[i], &needs_http);
        rbac::Policy tcp_policy = tcp_rules.Compile(ap.rules[i], &needs_http);
        if (!needs_http || action == AP::Action::kDeny)
          (*tcp->mutable_policies())[name] = std::move(tcp_policy);
      }
    }
    if (!http) continue;
    envoy::extensions::filters::http::rbac::v3::RBAC h;
    *h.mutable_rules() = std::move(*http);
    out.http.push_back(std::move(h));
    envoy::extensions::filters::network::rbac::v3::RBAC t;
    t.set_stat_prefix("tcp.");
    *t.mutable_rules() = std::move(*tcp);
    out.tcp.push_back(std::move(t));
  }
  return out;
}

}  // namespace mesh::compiler
