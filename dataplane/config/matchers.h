#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace re2 {
class RE2;
}
namespace envoy::type::matcher::v3 {
class StringMatcher;
}
namespace envoy::config::route::v3 {
class HeaderMatcher;
}

// Envoy's string and header matchers, validated once when config arrives and then matched
// without allocation. Shared by the route table and the RBAC policies.
namespace mesh::dataplane {

// What is wrong with a config, each with its field path ("virtual_hosts[0].domains: ...").
class ConfigErrors {
 public:
  void Add(std::string path, std::string message);
  bool empty() const { return list_.empty(); }
  std::string Join() const;  // "; "-separated

 private:
  std::vector<std::string> list_;
};

// An RE2 for `pattern`, or null (with an error at `path`) when it does not compile.
std::shared_ptr<const re2::RE2> CompileRegex(const std::string& pattern, const std::string& path,
                                             ConfigErrors* errors);

// How a header, query parameter, origin, path or identity value is matched.
struct StringPattern {
  enum class Kind { kExact, kPrefix, kSuffix, kContains, kRegex, kPresent };
  Kind kind = Kind::kExact;
  std::string value;
  bool ignore_case = false;               // not for kRegex
  std::shared_ptr<const re2::RE2> regex;  // kRegex only
  bool Matches(absl::string_view candidate) const;
};

struct HeaderMatcher : StringPattern {
  std::string name;  // lower case
  bool invert = false;
};

// An Envoy StringMatcher as a pattern; `path` names it in errors.
StringPattern FromStringMatcher(const envoy::type::matcher::v3::StringMatcher& sm,
                                const std::string& path, ConfigErrors* errors);
// An Envoy HeaderMatcher (the legacy exact/prefix/suffix/regex/present forms, or string_match).
HeaderMatcher FromHeaderMatcher(const envoy::config::route::v3::HeaderMatcher& in,
                                const std::string& path, ConfigErrors* errors);

}  // namespace mesh::dataplane
