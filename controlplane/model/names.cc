#include "controlplane/model/names.h"

#include <arpa/inet.h>

#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"

namespace mesh::model {
namespace {

bool IsLowerAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}
bool IsAlnum(char c) {
  return IsLowerAlnum(c) || (c >= 'A' && c <= 'Z');
}

bool IsLabel(absl::string_view s) {
  if (s.empty() || s.size() > 63 || !IsLowerAlnum(s.front()) || !IsLowerAlnum(s.back()))
    return false;
  for (char c : s) {
    if (!IsLowerAlnum(c) && c != '-') return false;
  }
  return true;
}

bool IsQualifiedName(absl::string_view s) {
  if (s.empty() || s.size() > 63 || !IsAlnum(s.front()) || !IsAlnum(s.back())) return false;
  for (char c : s) {
    if (!IsAlnum(c) && c != '-' && c != '_' && c != '.') return false;
  }
  return true;
}

}  // namespace

std::string CheckDns1123Label(absl::string_view s) {
  if (IsLabel(s)) return "";
  return absl::StrCat("\"", s,
                      "\" must be a DNS-1123 label: at most 63 lower-case letters, digits or '-', "
                      "starting and ending with a letter or digit");
}

std::string CheckDns1123Subdomain(absl::string_view s) {
  bool ok = !s.empty() && s.size() <= 253;
  if (ok) {
    for (absl::string_view part : absl::StrSplit(s, '.')) ok = ok && IsLabel(part);
  }
  if (ok) return "";
  return absl::StrCat("\"", s,
                      "\" must be a DNS-1123 subdomain: lower-case letters, digits, '-' and '.', "
                      "at most 253 characters");
}

std::string CheckLabelKey(absl::string_view s) {
  absl::string_view name = s;
  if (size_t slash = s.find('/'); slash != absl::string_view::npos) {
    absl::string_view prefix = s.substr(0, slash);
    name = s.substr(slash + 1);
    if (!CheckDns1123Subdomain(prefix).empty()) {
      return absl::StrCat("label key \"", s,
                          "\" has an invalid prefix: it must be a DNS-1123 subdomain");
    }
  }
  if (IsQualifiedName(name)) return "";
  return absl::StrCat(
      "label key \"", s,
      "\" is invalid: at most 63 letters, digits, '-', '_' or '.', starting and "
      "ending with a letter or digit, with an optional DNS subdomain prefix and '/'");
}

std::string CheckLabelValue(absl::string_view s) {
  if (s.empty() || IsQualifiedName(s)) return "";
  return absl::StrCat("label value \"", s,
                      "\" is invalid: at most 63 letters, digits, '-', '_' or '.', starting and "
                      "ending with a letter or digit");
}

std::string CheckHost(absl::string_view s, bool allow_star) {
  if (s == "*") return allow_star ? "" : "\"*\" is not allowed here";
  absl::string_view rest = s;
  if (absl::StartsWith(rest, "*.")) rest.remove_prefix(2);
  bool ok = !rest.empty() && s.size() <= 255;
  if (ok) {
    for (absl::string_view part : absl::StrSplit(rest, '.')) {
      ok =
          ok && !part.empty() && part.size() <= 63 && IsAlnum(part.front()) && IsAlnum(part.back());
      for (char c : part) ok = ok && (IsAlnum(c) || c == '-');
    }
  }
  if (ok) return "";
  return absl::StrCat("\"", s,
                      "\" is not a valid host: want a DNS name, a short service name, or a "
                      "wildcard \"*.suffix\"");
}

bool IsIpAddress(absl::string_view s) {
  std::string str(s);
  unsigned char buf[16];
  return inet_pton(AF_INET, str.c_str(), buf) == 1 || inet_pton(AF_INET6, str.c_str(), buf) == 1;
}

std::string CheckIpOrCidr(absl::string_view s) {
  absl::string_view ip = s;
  if (size_t slash = s.find('/'); slash != absl::string_view::npos) {
    ip = s.substr(0, slash);
    int bits;
    int max = ip.find(':') == absl::string_view::npos ? 32 : 128;
    if (!absl::SimpleAtoi(s.substr(slash + 1), &bits) || bits < 0 || bits > max) {
      return absl::StrCat("\"", s, "\" has an invalid prefix length");
    }
  }
  if (IsIpAddress(ip)) return "";
  return absl::StrCat("\"", s, "\" is not an IP address or CIDR block");
}

std::string ResolveHost(absl::string_view host, absl::string_view ns) {
  if (host.find('.') != absl::string_view::npos || host == "*") return std::string(host);
  return absl::StrCat(host, ".", ns, ".svc.cluster.local");
}

bool HostMatches(absl::string_view pattern, absl::string_view name) {
  if (pattern == "*") return true;
  if (absl::StartsWith(pattern, "*.")) {
    absl::string_view suffix = pattern.substr(1);  // ".example.com"
    if (absl::StartsWith(name, "*.")) return absl::EndsWith(name.substr(1), suffix);
    return name.size() > suffix.size() && absl::EndsWith(name, suffix);
  }
  return pattern == name;
}

std::string CheckJwks(absl::string_view text) {
  nlohmann::json doc = nlohmann::json::parse(text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) return "must be a JSON Web Key Set (a JSON object)";
  const nlohmann::json* keys = doc.contains("keys") ? &doc["keys"] : nullptr;
  if (!keys || !keys->is_array() || keys->empty()) return "must hold a non-empty \"keys\" list";
  for (const auto& k : *keys) {
    if (!k.is_object() || !k.contains("kty") || !k["kty"].is_string())
      return "every key must be an object with a \"kty\"";
  }
  return "";
}

std::string CheckJwksUri(absl::string_view uri) {
  const std::string bad = absl::StrCat("\"", uri, "\" ");
  for (char c : uri) {
    if (absl::ascii_isspace(static_cast<unsigned char>(c)) || absl::ascii_iscntrl(c))
      return bad + "must not contain spaces or control characters";
  }
  const std::string lower = absl::AsciiStrToLower(uri);
  absl::string_view rest = uri;
  if (absl::StartsWith(lower, "https://")) {
    rest.remove_prefix(8);
  } else if (absl::StartsWith(lower, "http://")) {
    rest.remove_prefix(7);
  } else {
    return bad + "must be an http:// or https:// URL";
  }
  absl::string_view authority = rest.substr(0, rest.find_first_of("/?#"));
  if (absl::StrContains(authority, '@')) return bad + "must not carry credentials";
  absl::string_view host = authority, port;
  if (absl::StartsWith(authority, "[")) {  // [IPv6]:port
    size_t close = authority.find(']');
    if (close == absl::string_view::npos) return bad + "has an unclosed [ in its host";
    host = authority.substr(1, close - 1);
    absl::string_view after = authority.substr(close + 1);
    if (!after.empty() && !absl::ConsumePrefix(&after, ":"))
      return bad + "has text after its [IPv6] host";
    port = after;
    if (!IsIpAddress(host)) return bad + "has a host in [ ] that is not an IPv6 address";
  } else if (size_t colon = authority.rfind(':'); colon != absl::string_view::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
  }
  if (host.empty()) return bad + "has no host";
  uint32_t number = 0;
  if (authority.back() == ':' ||
      (!port.empty() && (!absl::SimpleAtoi(port, &number) || number == 0 || number > 65535)))
    return bad + "has a port that is not a number from 1 to 65535";
  return "";
}

}  // namespace mesh::model
