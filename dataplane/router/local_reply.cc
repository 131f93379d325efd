#include "dataplane/router/local_reply.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace mesh::dataplane {

bool IsGrpcContentType(absl::string_view content_type) {
  constexpr absl::string_view kGrpc = "application/grpc";
  if (!absl::StartsWithIgnoreCase(content_type, kGrpc)) return false;
  if (content_type.size() == kGrpc.size()) return true;
  const char next = content_type[kGrpc.size()];
  return next == '+' || next == ';';
}

uint32_t GrpcStatusForHttp(int http_status) {
  switch (http_status) {
    case 400: return 13;  // INTERNAL
    case 401: return 16;  // UNAUTHENTICATED
    case 403: return 7;   // PERMISSION_DENIED
    case 404: return 12;  // UNIMPLEMENTED
    case 429:
    case 502:
    case 503:
    case 504: return 14;  // UNAVAILABLE
    default: return 2;    // UNKNOWN
  }
}

int HttpStatusForGrpc(uint32_t grpc_status) {
  static constexpr int kHttp[] = {200, 499, 500, 400, 504, 404, 409, 403, 429,
                                  400, 409, 400, 501, 500, 503, 500, 401};
  return grpc_status < std::size(kHttp) ? kHttp[grpc_status] : 500;
}

std::string PercentEncodeGrpcMessage(absl::string_view message) {
  std::string out;
  out.reserve(message.size());
  for (unsigned char c : message) {
    if (c < 0x20 || c > 0x7e || c == '%') {
      static constexpr char kHex[] = "0123456789ABCDEF";
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

RenderedReply Render(const LocalReply& reply, bool grpc_request) {
  RenderedReply out;
  if (grpc_request) {
    out.status = 200;
    out.headers.emplace_back("content-type", "application/grpc");
    const uint32_t code = reply.grpc_status ? *reply.grpc_status : GrpcStatusForHttp(reply.status);
    out.headers.emplace_back("grpc-status", absl::StrCat(code));
    if (!reply.body.empty())
      out.headers.emplace_back("grpc-message", PercentEncodeGrpcMessage(reply.body));
  } else {
    out.status = reply.grpc_status ? HttpStatusForGrpc(*reply.grpc_status) : reply.status;
    if (!reply.body.empty()) {
      out.headers.emplace_back("content-type", "text/plain");
      out.body = absl::StrCat(reply.body, "\n");
    }
  }
  for (const auto& header : reply.headers) out.headers.push_back(header);
  return out;
}

}  // namespace mesh::dataplane
