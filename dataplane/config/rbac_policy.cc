#include "dataplane/config/rbac_policy.h"

#include <arpa/inet.h>

#include <cstring>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "dataplane/stream/header_map.h"
#include "envoy/config/rbac/v3/rbac.pb.h"

namespace mesh::dataplane {

namespace rbac = envoy::config::rbac::v3;

namespace {

// An address prefix: the first `bits` bits of `bytes` (4 for IPv4, 16 for IPv6).
struct Cidr {
  unsigned char bytes[16] = {};
  int family = 0;
  uint32_t bits = 0;

  bool Contains(absl::string_view ip) const {
    unsigned char addr[16];
    std::string text(ip);
    if (inet_pton(family, text.c_str(), addr) != 1) return false;
    const uint32_t whole = bits / 8, rest = bits % 8;
    if (std::memcmp(addr, bytes, whole) != 0) return false;
    if (rest == 0) return true;
    const unsigned char mask = static_cast<unsigned char>(0xff << (8 - rest));
    return (addr[whole] & mask) == (bytes[whole] & mask);
  }
};

Cidr ReadCidr(const envoy::config::core::v3::CidrRange& in, const std::string& path,
              ConfigErrors* errors) {
  Cidr c;
  const std::string& prefix = in.address_prefix();
  c.family = prefix.find(':') == std::string::npos ? AF_INET : AF_INET6;
  const uint32_t max = c.family == AF_INET ? 32 : 128;
  if (inet_pton(c.family, prefix.c_str(), c.bytes) != 1)
    errors->Add(path + ".address_prefix", absl::StrCat("\"", prefix, "\" is not an IP address"));
  c.bits = in.has_prefix_len() ? in.prefix_len().value() : max;
  if (c.bits > max) errors->Add(path + ".prefix_len", absl::StrCat("must be at most ", max));
  return c;
}

// The value at a metadata path, as Istio's authn facts hold them.
struct MetadataMatch {
  std::string key;  // the path joined with '.'
  StringPattern value;
  bool list = false;  // list_match.one_of: any element
  bool invert = false;

  bool Matches(const RbacInput& in) const {
    bool found = false;
    if (in.authn) {
      auto it = in.authn->find(key);
      if (it != in.authn->end()) {
        for (const std::string& v : it->second) found = found || value.Matches(v);
        // A single value is matched as itself; list_match accepts any element.
        if (!list && it->second.size() != 1) found = false;
      }
    }
    return found != invert;
  }
};

MetadataMatch ReadMetadata(const envoy::type::matcher::v3::MetadataMatcher& in,
                           const std::string& path, ConfigErrors* errors) {
  MetadataMatch m;
  std::vector<std::string> keys;
  for (const auto& segment : in.path()) keys.push_back(segment.key());
  m.key = absl::StrJoin(keys, ".");
  m.invert = in.invert();
  if (in.filter() != "istio_authn") {
    errors->Add(path + ".filter",
                absl::StrCat("\"", in.filter(), "\": only istio_authn (request token) is served"));
  }
  if (keys.empty()) errors->Add(path + ".path", "at least one key is required");
  using VM = envoy::type::matcher::v3::ValueMatcher;
  const VM* value = &in.value();
  if (value->match_pattern_case() == VM::kListMatch) {
    m.list = true;
    value = &value->list_match().one_of();
  }
  if (value->match_pattern_case() == VM::kStringMatch) {
    m.value = FromStringMatcher(value->string_match(), path + ".value.string_match", errors);
  } else if (value->match_pattern_case() == VM::kPresentMatch && value->present_match()) {
    m.value.kind = StringPattern::Kind::kPresent;
  } else {
    errors->Add(path + ".value", "only string_match, present_match and list_match are served");
  }
  return m;
}

std::optional<absl::string_view> HeaderOf(const RbacInput& in, const std::string& name) {
  if (!in.headers) return std::nullopt;
  if (name == ":method") return in.method;
  if (name == ":authority" || name == "host") return in.authority;
  if (name == ":path") return in.path;
  const std::string* v = in.headers->Get(name);
  if (!v) return std::nullopt;
  return absl::string_view(*v);
}

}  // namespace

absl::string_view UrlPathOf(absl::string_view path) {
  size_t end = path.find_first_of("?#");
  return end == absl::string_view::npos ? path : path.substr(0, end);
}

struct RbacPolicy::Node {
  enum class Kind {
    kAny,
    kAnd,
    kOr,
    kNot,
    kHeader,
    kUrlPath,
    kDestinationIp,
    kDestinationPort,
    kSni,
    kAuthenticated,
    kDirectRemoteIp,
    kRemoteIp,
    kMetadata,
  };
  Kind kind = Kind::kAny;
  std::vector<Node> children;
  HeaderMatcher header;
  StringPattern pattern;  // url_path, sni, principal name
  bool has_pattern = false;
  Cidr cidr;
  uint32_t port = 0;
  MetadataMatch metadata;

  bool Matches(const RbacInput& in) const {
    switch (kind) {
      case Kind::kAny: return true;
      case Kind::kAnd:
        for (const Node& c : children) {
          if (!c.Matches(in)) return false;
        }
        return true;
      case Kind::kOr:
        for (const Node& c : children) {
          if (c.Matches(in)) return true;
        }
        return false;
      case Kind::kNot: return !children[0].Matches(in);
      case Kind::kHeader: {
        std::optional<absl::string_view> v = HeaderOf(in, header.name);
        return (v && header.Matches(*v)) != header.invert;
      }
      case Kind::kUrlPath: return in.headers && pattern.Matches(in.url_path);
      case Kind::kDestinationIp: return cidr.Contains(in.destination_ip);
      case Kind::kDestinationPort: return in.destination_port == port;
      case Kind::kSni: return pattern.Matches(in.sni);
      case Kind::kAuthenticated:
        // Authenticated: a peer certificate was presented; then its name, if one is asked for.
        return !in.principal.empty() && (!has_pattern || pattern.Matches(in.principal));
      case Kind::kDirectRemoteIp: return cidr.Contains(in.source_ip);
      case Kind::kRemoteIp: return cidr.Contains(in.remote_ip);
      case Kind::kMetadata: return metadata.Matches(in);
    }
    return false;
  }
};

namespace {

using Node = RbacPolicy::Node;

Node ReadPermission(const rbac::Permission& in, const std::string& path, ConfigErrors* errors) {
  Node n;
  switch (in.rule_case()) {
    case rbac::Permission::kAndRules:
    case rbac::Permission::kOrRules: {
      const bool all = in.rule_case() == rbac::Permission::kAndRules;
      n.kind = all ? Node::Kind::kAnd : Node::Kind::kOr;
      const auto& rules = all ? in.and_rules().rules() : in.or_rules().rules();
      const std::string set = path + (all ? ".and_rules" : ".or_rules");
      if (rules.empty()) errors->Add(set + ".rules", "at least one rule is required");
      for (int i = 0; i < rules.size(); ++i)
        n.children.push_back(
            ReadPermission(rules[i], absl::StrCat(set, ".rules[", i, "]"), errors));
      break;
    }
    case rbac::Permission::kAny: n.kind = Node::Kind::kAny; break;
    case rbac::Permission::kHeader:
      n.kind = Node::Kind::kHeader;
      n.header = FromHeaderMatcher(in.header(), path + ".header", errors);
      break;
    case rbac::Permission::kUrlPath:
      n.kind = Node::Kind::kUrlPath;
      n.pattern = FromStringMatcher(in.url_path().path(), path + ".url_path.path", errors);
      break;
    case rbac::Permission::kDestinationIp:
      n.kind = Node::Kind::kDestinationIp;
      n.cidr = ReadCidr(in.destination_ip(), path + ".destination_ip", errors);
      break;
    case rbac::Permission::kDestinationPort:
      n.kind = Node::Kind::kDestinationPort;
      n.port = in.destination_port();
      if (n.port > 65535) errors->Add(path + ".destination_port", "must be at most 65535");
      break;
    case rbac::Permission::kMetadata:
      n.kind = Node::Kind::kMetadata;
      n.metadata = ReadMetadata(in.metadata(), path + ".metadata", errors);
      break;
    case rbac::Permission::kNotRule:
      n.kind = Node::Kind::kNot;
      n.children.push_back(ReadPermission(in.not_rule(), path + ".not_rule", errors));
      break;
    case rbac::Permission::kRequestedServerName:
      n.kind = Node::Kind::kSni;
      n.pattern =
          FromStringMatcher(in.requested_server_name(), path + ".requested_server_name", errors);
      break;
    default: errors->Add(path, "a rule is required");
  }
  return n;
}

Node ReadPrincipal(const rbac::Principal& in, const std::string& path, ConfigErrors* errors) {
  Node n;
  switch (in.identifier_case()) {
    case rbac::Principal::kAndIds:
    case rbac::Principal::kOrIds: {
      const bool all = in.identifier_case() == rbac::Principal::kAndIds;
      n.kind = all ? Node::Kind::kAnd : Node::Kind::kOr;
      const auto& ids = all ? in.and_ids().ids() : in.or_ids().ids();
      const std::string set = path + (all ? ".and_ids" : ".or_ids");
      if (ids.empty()) errors->Add(set + ".ids", "at least one identifier is required");
      for (int i = 0; i < ids.size(); ++i)
        n.children.push_back(ReadPrincipal(ids[i], absl::StrCat(set, ".ids[", i, "]"), errors));
      break;
    }
    case rbac::Principal::kAny: n.kind = Node::Kind::kAny; break;
    case rbac::Principal::kAuthenticated:
      n.kind = Node::Kind::kAuthenticated;
      n.has_pattern = in.authenticated().has_principal_name();
      if (n.has_pattern) {
        n.pattern = FromStringMatcher(in.authenticated().principal_name(),
                                      path + ".authenticated.principal_name", errors);
      }
      break;
    case rbac::Principal::kHeader:
      n.kind = Node::Kind::kHeader;
      n.header = FromHeaderMatcher(in.header(), path + ".header", errors);
      break;
    case rbac::Principal::kUrlPath:
      n.kind = Node::Kind::kUrlPath;
      n.pattern = FromStringMatcher(in.url_path().path(), path + ".url_path.path", errors);
      break;
    case rbac::Principal::kMetadata:
      n.kind = Node::Kind::kMetadata;
      n.metadata = ReadMetadata(in.metadata(), path + ".metadata", errors);
      break;
    case rbac::Principal::kNotId:
      n.kind = Node::Kind::kNot;
      n.children.push_back(ReadPrincipal(in.not_id(), path + ".not_id", errors));
      break;
    case rbac::Principal::kDirectRemoteIp:
      n.kind = Node::Kind::kDirectRemoteIp;
      n.cidr = ReadCidr(in.direct_remote_ip(), path + ".direct_remote_ip", errors);
      break;
    case rbac::Principal::kRemoteIp:
      n.kind = Node::Kind::kRemoteIp;
      n.cidr = ReadCidr(in.remote_ip(), path + ".remote_ip", errors);
      break;
    default: errors->Add(path, "an identifier is required");
  }
  return n;
}

}  // namespace

// Matches when one of its permissions and one of its principals match.
struct RbacPolicy::Policy {
  std::string name;
  Node permissions;  // kOr over the policy's permissions
  Node principals;   // kOr over its principals
};

absl::StatusOr<std::shared_ptr<const RbacPolicy>> RbacPolicy::FromProto(const rbac::RBAC& in,
                                                                        const std::string& path) {
  auto out = std::make_shared<RbacPolicy>();
  ConfigErrors errors;
  switch (in.action()) {
    case rbac::RBAC::ALLOW: out->action_ = Action::kAllow; break;
    case rbac::RBAC::DENY: out->action_ = Action::kDeny; break;
    case rbac::RBAC::LOG: out->action_ = Action::kLog; break;
    default: errors.Add(path + ".action", "must be ALLOW, DENY or LOG");
  }
  // A protobuf map iterates in no set order; Envoy tries policies in name order.
  std::map<std::string, const rbac::Policy*> sorted;
  for (const auto& [name, p] : in.policies()) sorted[name] = &p;
  for (const auto& [name, p] : sorted) {
    const std::string ppath = absl::StrCat(path, ".policies[", name, "]");
    Policy policy;
    policy.name = name;
    policy.permissions.kind = Node::Kind::kOr;
    policy.principals.kind = Node::Kind::kOr;
    if (p->permissions().empty()) errors.Add(ppath + ".permissions", "at least one is required");
    if (p->principals().empty()) errors.Add(ppath + ".principals", "at least one is required");
    for (int i = 0; i < p->permissions_size(); ++i) {
      policy.permissions.children.push_back(
          ReadPermission(p->permissions(i), absl::StrCat(ppath, ".permissions[", i, "]"), &errors));
    }
    for (int i = 0; i < p->principals_size(); ++i) {
      policy.principals.children.push_back(
          ReadPrincipal(p->principals(i), absl::StrCat(ppath, ".principals[", i, "]"), &errors));
    }
    out->policies_.push_back(std::move(policy));
  }
  if (!errors.empty()) return absl::InvalidArgumentError(errors.Join());
  return std::shared_ptr<const RbacPolicy>(std::move(out));
}

bool RbacPolicy::Allows(const RbacInput& input, const std::string** matched) const {
  const Policy* match = nullptr;
  for (const Policy& p : policies_) {
    if (p.permissions.Matches(input) && p.principals.Matches(input)) {
      match = &p;
      break;
    }
  }
  if (matched) *matched = match ? &match->name : nullptr;
  switch (action_) {
    case Action::kAllow: return match != nullptr;
    case Action::kDeny: return match == nullptr;
    case Action::kLog: return true;
  }
  return false;
}

bool RbacAllows(const std::vector<RbacPolicyPtr>& filters, const RbacInput& input,
                const std::string** denied_by) {
  for (const RbacPolicyPtr& f : filters) {
    const std::string* matched = nullptr;
    if (!f->Allows(input, &matched)) {
      if (denied_by) *denied_by = matched;
      return false;
    }
  }
  return true;
}

}  // namespace mesh::dataplane
