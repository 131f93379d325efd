#include "dataplane/stream/stream.h"

namespace mesh::dataplane {

absl::string_view ProtocolName(HttpProtocol protocol) {
  switch (protocol) {
    case HttpProtocol::kHttp10: return "HTTP/1.0";
    case HttpProtocol::kHttp11: return "HTTP/1.1";
    case HttpProtocol::kHttp2: return "HTTP/2";
  }
  return "HTTP/1.1";
}

absl::string_view ResetReasonName(ResetReason reason) {
  switch (reason) {
    case ResetReason::kLocal: return "local reset";
    case ResetReason::kRemote: return "remote reset";
    case ResetReason::kProtocolError: return "protocol error";
    case ResetReason::kConnectionFailure: return "connection failure";
    case ResetReason::kConnectionTermination: return "connection termination";
    case ResetReason::kOverflow: return "overflow";
    case ResetReason::kRefused: return "refused stream";
  }
  return "reset";
}

}  // namespace mesh::dataplane
