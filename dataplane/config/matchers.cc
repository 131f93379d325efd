#include "dataplane/config/matchers.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "envoy/config/route/v3/route.pb.h"
#include "envoy/type/matcher/v3/regex.pb.h"
#include "re2/re2.h"

namespace mesh::dataplane {

void ConfigErrors::Add(std::string path, std::string message) {
  list_.push_back(absl::StrCat(path, ": ", message));
}

std::string ConfigErrors::Join() const {
  return absl::StrJoin(list_, "; ");
}

std::shared_ptr<const re2::RE2> CompileRegex(const std::string& pattern, const std::string& path,
                                             ConfigErrors* errors) {
  auto re = std::make_shared<re2::RE2>(pattern, re2::RE2::Quiet);
  if (!re->ok()) {
    errors->Add(path, absl::StrCat("invalid regex \"", pattern, "\": ", re->error()));
    return nullptr;
  }
  return re;
}

bool StringPattern::Matches(absl::string_view candidate) const {
  if (ignore_case) {
    switch (kind) {
      case Kind::kExact: return absl::EqualsIgnoreCase(candidate, value);
      case Kind::kPrefix: return absl::StartsWithIgnoreCase(candidate, value);
      case Kind::kSuffix: return absl::EndsWithIgnoreCase(candidate, value);
      case Kind::kContains:
        return absl::StrContains(absl::AsciiStrToLower(candidate), absl::AsciiStrToLower(value));
      default: break;
    }
  }
  switch (kind) {
    case Kind::kExact: return candidate == value;
    case Kind::kPrefix: return absl::StartsWith(candidate, value);
    case Kind::kSuffix: return absl::EndsWith(candidate, value);
    case Kind::kContains: return absl::StrContains(candidate, value);
    case Kind::kRegex:
      return regex &&
             re2::RE2::FullMatch(re2::StringPiece(candidate.data(), candidate.size()), *regex);
    case Kind::kPresent: return true;
  }
  return false;
}

StringPattern FromStringMatcher(const envoy::type::matcher::v3::StringMatcher& sm,
                                const std::string& path, ConfigErrors* errors) {
  using SM = envoy::type::matcher::v3::StringMatcher;
  StringPattern p;
  p.ignore_case = sm.ignore_case();
  switch (sm.match_pattern_case()) {
    case SM::kExact:
      p.kind = StringPattern::Kind::kExact;
      p.value = sm.exact();
      break;
    case SM::kPrefix:
      p.kind = StringPattern::Kind::kPrefix;
      p.value = sm.prefix();
      break;
    case SM::kSuffix:
      p.kind = StringPattern::Kind::kSuffix;
      p.value = sm.suffix();
      break;
    case SM::kContains:
      p.kind = StringPattern::Kind::kContains;
      p.value = sm.contains();
      break;
    case SM::kSafeRegex:
      p.kind = StringPattern::Kind::kRegex;
      p.regex = CompileRegex(sm.safe_regex().regex(), path + ".safe_regex.regex", errors);
      break;
    default: errors->Add(path, "a pattern is required");
  }
  if (p.ignore_case && p.kind == StringPattern::Kind::kRegex)
    errors->Add(path + ".ignore_case", "does not apply to safe_regex");
  return p;
}

HeaderMatcher FromHeaderMatcher(const envoy::config::route::v3::HeaderMatcher& in,
                                const std::string& path, ConfigErrors* errors) {
  using pb = envoy::config::route::v3::HeaderMatcher;
  HeaderMatcher hm;
  switch (in.header_match_specifier_case()) {
    case pb::kExactMatch:
      hm.kind = HeaderMatcher::Kind::kExact;
      hm.value = in.exact_match();
      break;
    case pb::kPrefixMatch:
      hm.kind = HeaderMatcher::Kind::kPrefix;
      hm.value = in.prefix_match();
      break;
    case pb::kSuffixMatch:
      hm.kind = HeaderMatcher::Kind::kSuffix;
      hm.value = in.suffix_match();
      break;
    case pb::kSafeRegexMatch:
      hm.kind = HeaderMatcher::Kind::kRegex;
      hm.regex =
          CompileRegex(in.safe_regex_match().regex(), path + ".safe_regex_match.regex", errors);
      break;
    case pb::kStringMatch:
      static_cast<StringPattern&>(hm) =
          FromStringMatcher(in.string_match(), path + ".string_match", errors);
      break;
    default: hm.kind = HeaderMatcher::Kind::kPresent; break;  // present_match, or nothing: presence
  }
  hm.name = absl::AsciiStrToLower(in.name());
  hm.invert = in.invert_match();
  if (hm.name.empty()) errors->Add(path + ".name", "is required");
  return hm;
}

}  // namespace mesh::dataplane
