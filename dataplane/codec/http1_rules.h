#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "dataplane/stream/header_map.h"

namespace mesh::dataplane {

// What RFC 9110/9112 and Envoy's HTTP/1.1 codec require of a message's framing and routing
// headers before a proxy may forward it. The parser (Boost.Beast) has already checked the syntax
// of every line; these rules close what a syntactically valid message can still use to make the
// proxy and the next hop disagree on where a message ends or where it goes (request smuggling,
// response splitting).
//
// A refusal is a value: `status` is the answer the peer gets when the message came from the
// client (400 or 501); for an upstream response every refusal means 502. `reason` is one line
// for the answer body and the log.
struct MessageRefusal {
  int status = 400;
  std::string reason;
};

// The framing a message's headers declare, once they are known to be unambiguous.
struct Framing {
  bool chunked = false;                    // Transfer-Encoding: chunked, alone
  std::optional<uint64_t> content_length;  // a single length, when not chunked
};

// Checks a request header. Refused (400): a Connection header nominating a framing or routing
// header (Content-Length, Transfer-Encoding, Host) or a token that is not one; Content-Length
// and Transfer-Encoding together; Content-Length with more than one distinct value or a value
// that is not a decimal number; Transfer-Encoding on an HTTP/1.0 request; an HTTP/1.1 request
// without exactly one Host, or with a Host that is not a valid authority. Refused (501): a
// transfer coding other than a single `chunked`. On success the fields are normalized in place
// (one Content-Length line holding the single value) and the framing is returned.
// `host` is the request's Host lines, which the codec keeps apart from the other fields.
std::optional<MessageRefusal> CheckRequestHeader(HeaderMap& fields, int hosts,
                                                 absl::string_view host, unsigned version,
                                                 Framing* framing);

// Checks an upstream response header the same way (Connection nominating a framing header, an
// ambiguous or invalid Content-Length, a transfer coding other than `chunked`), and refuses an
// 101 that the request did not ask for with an Upgrade. When both Transfer-Encoding: chunked and
// Content-Length arrive, the length is dropped, as RFC 9112 6.3 says a proxy must. `status` is
// the response's status code.
std::optional<MessageRefusal> CheckResponseHeader(HeaderMap& fields, int status,
                                                  bool upgrade_requested, Framing* framing);

// Whether `name` is one that a Connection header may nominate for removal: true hop-by-hop
// headers only, never the ones that frame or route the message.
bool NominationAllowed(absl::string_view name);

// Splits an HTTP/1.1 request target: origin form ("/p?q") leaves `authority` empty; absolute
// form ("http://host:port/p?q", an HTTP proxy request) gives both, the path "/" when it has none;
// "*" is OPTIONS's alone. False for anything else, such as an authority-form CONNECT target.
bool SplitRequestTarget(absl::string_view method, absl::string_view target, std::string* authority,
                        std::string* path);

// Whether `value` is a valid Host (RFC 9110 7.2: uri-host [":" port]).
bool ValidHost(absl::string_view value);

}  // namespace mesh::dataplane
