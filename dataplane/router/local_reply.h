#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

// Replies the proxy makes itself (no route, a fault abort, an overflow, a timeout), in the form
// the client understands, as Envoy makes them: a gRPC client gets HTTP 200 with `grpc-status`
// and `grpc-message` in one header block (a trailers-only response); any other client gets the
// HTTP status with a short text body. Pure functions, unit-tested.
namespace mesh::dataplane {

using HeaderPairs = std::vector<std::pair<std::string, std::string>>;

struct LocalReply {
  int status = 503;  // the HTTP status
  std::string body;  // text, without the trailing newline; the gRPC form carries it as grpc-message
  HeaderPairs headers;  // extra response headers (x-envoy-overloaded, location, ...)
  // A gRPC status chosen by config (a grpcStatus fault); otherwise it follows from `status`.
  std::optional<uint32_t> grpc_status;
  // Envoy's response flag for the access log and Istio's response_flags label ("NR", "UH",
  // "UF", "UO", "UT", "FI", ...); empty when the reply is not a failure of the proxy's making.
  std::string flags;
};

// How a local reply goes on the wire.
struct RenderedReply {
  int status = 0;
  HeaderPairs headers;  // content-type and the reply's headers; grpc-status for gRPC
  std::string body;     // empty for gRPC
};

// Whether a request with this content-type is gRPC: "application/grpc", alone or with a "+" or
// ";" suffix (grpc-web is not: its replies are ordinary HTTP).
bool IsGrpcContentType(absl::string_view content_type);

// Envoy's mapping of an HTTP status to the gRPC status a client sees (gRPC's
// http-grpc-status-mapping): 400 INTERNAL, 401 UNAUTHENTICATED, 403 PERMISSION_DENIED,
// 404 UNIMPLEMENTED, 429/502/503/504 UNAVAILABLE, anything else UNKNOWN.
uint32_t GrpcStatusForHttp(int http_status);
// The reverse, for a gRPC status given to a client that is not gRPC (UNAVAILABLE 503, ...).
int HttpStatusForGrpc(uint32_t grpc_status);

// `reply` as it goes to a client whose request was (or was not) gRPC.
RenderedReply Render(const LocalReply& reply, bool grpc_request);

// grpc-message's percent-encoding: bytes outside 0x20-0x7e, and '%', become %XX.
std::string PercentEncodeGrpcMessage(absl::string_view message);

}  // namespace mesh::dataplane
