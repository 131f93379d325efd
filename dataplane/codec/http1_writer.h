#pragma once

#include <string>

#include "absl/strings/string_view.h"
#include "dataplane/codec/output_buffer.h"
#include "dataplane/stream/header_map.h"

// How the HTTP/1.1 codecs write a message: the head into one contiguous buffer (no serializer
// iterators), and the body in the framing the head chose.
namespace mesh::dataplane::http1 {

// How a body is delimited on the wire.
enum class BodyFraming {
  kNone,     // no body (HEAD, 204, 304, or ended with the head)
  kLength,   // Content-Length
  kChunked,  // Transfer-Encoding: chunked
  kClose,    // until the connection closes (a response to an HTTP/1.0 client)
  kTunnel,   // raw bytes after a 101 or an upgrade request
};

// The reason phrase for a status ("OK", "Not Found"; "Unknown" for codes without one).
absl::string_view ReasonPhrase(int status);

// Whether a field is one the codec writes itself or that never crosses a hop: framing
// (content-length, transfer-encoding), connection management (connection, keep-alive,
// proxy-connection, upgrade, te, trailer), and HTTP/2 pseudo-headers.
bool CodecOwnedField(absl::string_view lower_case_name);

// Appends "name: value\r\n" for every field the codec does not own.
void AppendFields(const HeaderMap& fields, std::string& out);

// Appends one body piece in `framing` (a chunk when chunked), and the final chunk when `end`.
void AppendBody(BodyFraming framing, absl::string_view data, bool end, OutputBuffer& out);

// Ends the body with trailers: the last chunk carrying them when chunked; other framings cannot
// carry trailers, so they are dropped and the body just ends.
void AppendTrailers(BodyFraming framing, const HeaderMap& trailers, OutputBuffer& out);

}  // namespace mesh::dataplane::http1
