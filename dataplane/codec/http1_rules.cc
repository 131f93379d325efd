#include "dataplane/codec/http1_rules.h"

#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace mesh::dataplane {
namespace {

bool TokenChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
         absl::StrContains("!#$%&'*+-.^_`|~", c);
}

bool IsToken(absl::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!TokenChar(c)) return false;
  }
  return true;
}

// The elements of every field line named `name`, as one comma-separated list (RFC 9110 5.3),
// with optional whitespace trimmed and empty elements dropped.
std::vector<std::string> ListElements(const HeaderMap& fields, absl::string_view name) {
  std::vector<std::string> out;
  fields.ForEachElement(name, [&](absl::string_view element) { out.emplace_back(element); });
  return out;
}

std::optional<MessageRefusal> Refuse(int status, std::string reason) {
  return MessageRefusal{status, std::move(reason)};
}

// The rules requests and responses share: Connection nominations, and one unambiguous framing.
std::optional<MessageRefusal> CheckFraming(HeaderMap& fields, Framing* framing) {
  for (const std::string& token : ListElements(fields, "connection")) {
    if (!IsToken(token))
      return Refuse(400, absl::StrCat("invalid Connection token \"", token, "\""));
    if (!NominationAllowed(token))
      return Refuse(400, absl::StrCat("Connection may not nominate ", token));
  }
  const bool has_length = fields.Count("content-length") > 0;
  const bool has_coding = fields.Count("transfer-encoding") > 0;
  *framing = Framing{};
  if (has_coding) {
    std::vector<std::string> codings = ListElements(fields, "transfer-encoding");
    if (codings.size() == 1 && absl::EqualsIgnoreCase(codings[0], "chunked")) {
      framing->chunked = true;
    } else {
      for (const std::string& coding : codings) {
        if (!absl::EqualsIgnoreCase(coding, "chunked"))
          return Refuse(501, absl::StrCat("transfer coding \"", coding, "\" is not supported"));
      }
      return Refuse(400, "Transfer-Encoding must be chunked, applied once");
    }
  }
  if (has_length && !has_coding && fields.Count("content-length") == 1) {
    // The usual case, one line holding a plain number: nothing to normalize, nothing allocated.
    absl::string_view value = *fields.Get("content-length");
    uint64_t n;
    if (!value.empty() &&
        std::all_of(value.begin(), value.end(),
                    [](char c) { return absl::ascii_isdigit(static_cast<unsigned char>(c)); }) &&
        absl::SimpleAtoi(value, &n)) {
      framing->content_length = n;
      return std::nullopt;
    }
  }
  if (has_length) {
    std::optional<uint64_t> length;
    std::vector<std::string> values = ListElements(fields, "content-length");
    if (values.empty()) return Refuse(400, "empty Content-Length");
    for (const std::string& v : values) {
      uint64_t n;
      if (!std::all_of(v.begin(), v.end(), [](char c) { return absl::ascii_isdigit(c); }) ||
          !absl::SimpleAtoi(v, &n)) {
        return Refuse(400, absl::StrCat("invalid Content-Length \"", v, "\""));
      }
      if (length && *length != n) return Refuse(400, "Content-Length with differing values");
      length = n;
    }
    if (!has_coding) {
      // One line with the single value: the next hop never sees the list form.
      fields.Set("content-length", std::to_string(*length));
      framing->content_length = length;
    }
  }
  return std::nullopt;
}

}  // namespace

bool NominationAllowed(absl::string_view name) {
  // Framing and routing headers are never hop-by-hop, whatever the client says (Envoy refuses
  // such a request; removing them would let the next hop frame or route it differently).
  static constexpr const char* kProtected[] = {"content-length", "transfer-encoding", "host"};
  for (const char* p : kProtected) {
    if (absl::EqualsIgnoreCase(name, p)) return false;
  }
  return true;
}

bool ValidHost(absl::string_view value) {
  absl::string_view host = value;
  if (host.empty()) return false;
  absl::string_view port;
  if (host.front() == '[') {
    size_t close = host.find(']');
    if (close == absl::string_view::npos) return false;
    for (char c : host.substr(1, close - 1)) {
      if (!absl::ascii_isxdigit(static_cast<unsigned char>(c)) && c != ':' && c != '.')
        return false;
    }
    absl::string_view rest = host.substr(close + 1);
    if (!rest.empty() && !absl::ConsumePrefix(&rest, ":")) return false;
    port = rest;
  } else {
    size_t colon = host.rfind(':');
    if (colon != absl::string_view::npos) {
      port = host.substr(colon + 1);
      host = host.substr(0, colon);
    }
    if (host.empty()) return false;
    for (char c : host) {
      // reg-name: unreserved, pct-encoded and sub-delims.
      if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) &&
          !absl::StrContains("-._~%!$&'()*+,;=", c))
        return false;
    }
  }
  if (port.size() > 5) return false;
  for (char c : port) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

std::optional<MessageRefusal> CheckRequestHeader(HeaderMap& fields, int hosts,
                                                 absl::string_view host, unsigned version,
                                                 Framing* framing) {
  if (version >= 11) {
    if (hosts == 0) return Refuse(400, "missing Host");
    if (hosts > 1) return Refuse(400, "more than one Host");
    if (!ValidHost(host)) return Refuse(400, absl::StrCat("invalid Host \"", host, "\""));
  } else if (hosts > 1) {
    return Refuse(400, "more than one Host");
  } else if (fields.Count("transfer-encoding")) {
    // RFC 9112 6.1: an HTTP/1.0 peer cannot have meant chunked framing.
    return Refuse(400, "Transfer-Encoding in an HTTP/1.0 request");
  }
  if (fields.Count("content-length") && fields.Count("transfer-encoding"))
    return Refuse(400, "both Content-Length and Transfer-Encoding");
  return CheckFraming(fields, framing);
}

std::optional<MessageRefusal> CheckResponseHeader(HeaderMap& fields, int status,
                                                  bool upgrade_requested, Framing* framing) {
  if (status == 101 && !upgrade_requested)
    return Refuse(502, "upstream switched protocols without being asked");
  std::optional<MessageRefusal> refusal = CheckFraming(fields, framing);
  if (refusal) {
    refusal->status = 502;
    return refusal;
  }
  if (framing->chunked) fields.Remove("content-length");  // RFC 9112 6.3
  return std::nullopt;
}

bool SplitRequestTarget(absl::string_view method, absl::string_view target, std::string* authority,
                        std::string* path) {
  if (absl::StartsWith(target, "/")) {
    *path = std::string(target);
    return true;
  }
  if (target == "*" && method == "OPTIONS") {
    *path = "*";
    return true;
  }
  for (absl::string_view scheme : {"http://", "https://"}) {
    if (!absl::StartsWithIgnoreCase(target, scheme)) continue;
    absl::string_view rest = target.substr(scheme.size());
    size_t slash = rest.find_first_of("/?");
    absl::string_view host = rest.substr(0, slash);
    if (host.empty()) return false;
    *authority = std::string(host);
    *path = slash == absl::string_view::npos ? "/" : std::string(rest.substr(slash));
    if ((*path)[0] == '?') path->insert(0, "/");
    return true;
  }
  return false;
}

}  // namespace mesh::dataplane
