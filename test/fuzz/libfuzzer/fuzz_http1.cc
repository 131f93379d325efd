// libFuzzer: bytes from a client, then bytes from an upstream, as meshproxy's HTTP/1.1 edge reads
// them. Whatever the parser accepts must pass or fail the framing rules without crashing, and
// what passes must be unambiguous: one framing, one Host.
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <cstdlib>

#include "dataplane/http/message_rules.h"

namespace http = boost::beast::http;
using mesh::dataplane::Framing;

namespace {

template <bool isRequest>
void Feed(http::parser<isRequest, http::buffer_body>& parser, const uint8_t* data, size_t size) {
  parser.header_limit(60 * 1024);
  parser.body_limit(std::numeric_limits<uint64_t>::max());
  boost::system::error_code ec;
  size_t used = parser.put(boost::asio::buffer(data, size), ec);
  if (ec || !parser.is_header_done()) return;
  auto& m = parser.get();
  Framing framing;
  std::optional<mesh::dataplane::MessageRefusal> refusal;
  if constexpr (isRequest) {
    refusal = mesh::dataplane::CheckRequestHeader(m.base(), m.version(), &framing);
    if (!refusal && m.version() >= 11 && m.count(http::field::host) != 1) std::abort();
  } else {
    refusal = mesh::dataplane::CheckResponseHeader(m.base(), m.result_int(), &framing);
  }
  if (!refusal) {
    // What passes frames one way only.
    if (framing.chunked && m.count(http::field::content_length)) std::abort();
    if (m.count(http::field::content_length) > 1) std::abort();
    // The body streams through a fixed buffer, as the proxy relays it.
    char chunk[4096];
    while (!parser.is_done() && used < size) {
      parser.get().body().data = chunk;
      parser.get().body().size = sizeof chunk;
      size_t n = parser.put(boost::asio::buffer(data + used, size - used), ec);
      if (ec == http::error::need_buffer) ec = {};
      if (ec || n == 0) break;
      used += n;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  {
    http::request_parser<http::buffer_body> request;
    request.eager(true);
    Feed(request, data, size);
  }
  {
    http::response_parser<http::buffer_body> response;
    response.eager(true);
    Feed(response, data, size);
  }
  return 0;
}
