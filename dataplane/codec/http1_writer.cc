#include "dataplane/codec/http1_writer.h"

#include "absl/strings/str_cat.h"

namespace mesh::dataplane::http1 {

absl::string_view ReasonPhrase(int status) {
  switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
  }
}

bool CodecOwnedField(absl::string_view name) {
  if (name.empty() || name[0] == ':') return true;
  switch (name.size()) {
    case 2: return name == "te";
    case 7: return name == "upgrade" || name == "trailer";
    case 10: return name == "connection" || name == "keep-alive";
    case 14: return name == "content-length";
    case 16: return name == "proxy-connection";
    case 17: return name == "transfer-encoding";
    default: return false;
  }
}

void AppendFields(const HeaderMap& fields, std::string& out) {
  for (const HeaderMap::Field& f : fields) {
    if (CodecOwnedField(f.name)) continue;
    absl::StrAppend(&out, f.name, ": ", f.value, "\r\n");
  }
}

void AppendBody(BodyFraming framing, absl::string_view data, bool end, OutputBuffer& out) {
  if (framing == BodyFraming::kChunked) {
    std::string& b = out.back();
    if (!data.empty()) {
      absl::StrAppend(&b, absl::Hex(data.size()), "\r\n");
      b.append(data.data(), data.size());
      b.append("\r\n");
    }
    if (end) b.append("0\r\n\r\n");
    return;
  }
  if (framing != BodyFraming::kNone) out.Append(data);
}

void AppendTrailers(BodyFraming framing, const HeaderMap& trailers, OutputBuffer& out) {
  if (framing != BodyFraming::kChunked) {
    AppendBody(framing, "", true, out);
    return;
  }
  std::string& b = out.back();
  b.append("0\r\n");
  for (const HeaderMap::Field& f : trailers) {
    if (!CodecOwnedField(f.name)) absl::StrAppend(&b, f.name, ": ", f.value, "\r\n");
  }
  b.append("\r\n");
}

}  // namespace mesh::dataplane::http1
