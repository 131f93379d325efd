#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/strings/string_view.h"
#include "dataplane/stream/header_map.h"

// The codec-independent stream: what an HTTP/1.1 or HTTP/2 codec delivers to the layer above
// (headers, body chunks, trailers, end of stream, reset) and what that layer sends back through
// it. The shapes follow Envoy's codec interfaces (a decoder receives a direction of a stream, an
// encoder sends one), so everything above the codec is the same for both protocols.
//
// Threading: a stream, its codec and everything it calls belong to one worker thread.
// Lifetime: the codec owns its streams; a decoder or encoder reference is valid until the
// stream ends (both directions complete) or is reset, whichever comes first, and then not at all.
namespace mesh::dataplane {

enum class HttpProtocol { kHttp10, kHttp11, kHttp2 };
absl::string_view ProtocolName(HttpProtocol protocol);  // "HTTP/1.1", "HTTP/2"

// A request head: the pseudo-headers apart, the other fields in `headers` (HTTP/1.1's Host is
// `authority`, and never also a field).
struct RequestHead {
  std::string method;
  std::string scheme;     // "http" or "https"
  std::string authority;  // Host or :authority, as sent
  std::string path;       // origin form: path and query
  // An extended CONNECT's :protocol (RFC 8441), or HTTP/1.1's "Upgrade: websocket".
  std::string upgrade;
  HeaderMap headers;
  HttpProtocol protocol = HttpProtocol::kHttp11;
};
using RequestHeadPtr = std::unique_ptr<RequestHead>;

struct ResponseHead {
  int status = 200;
  HeaderMap headers;
};
using ResponseHeadPtr = std::unique_ptr<ResponseHead>;

// Why a stream ended before both directions completed.
enum class ResetReason {
  kLocal,                  // this proxy gave up on it (timeout, policy, the other side's reset)
  kRemote,                 // the peer reset it (RST_STREAM, a closed HTTP/1.1 connection)
  kProtocolError,          // the peer broke the protocol on this stream
  kConnectionFailure,      // the upstream could not be reached
  kConnectionTermination,  // the connection closed under it
  kOverflow,               // a limit refused it (too many streams, a buffer limit)
  kRefused,                // the peer refused it before processing (GOAWAY, REFUSED_STREAM)
};
absl::string_view ResetReasonName(ResetReason reason);  // "remote reset", "protocol error", ...

// Events that concern a whole stream, whichever direction: its end by reset, and the watermarks
// of the buffer its outgoing data waits in (flow control: above high, the other side stops
// reading; below low, it resumes).
class StreamCallbacks {
 public:
  virtual ~StreamCallbacks() = default;
  virtual void OnReset(ResetReason reason, absl::string_view detail) = 0;
  virtual void OnAboveWriteBufferHighWatermark() {}
  virtual void OnBelowWriteBufferLowWatermark() {}
};

// The handle on one stream that the layer above holds, whichever codec made it.
class Stream {
 public:
  virtual ~Stream() = default;
  // At most one observer; nullptr removes it.
  virtual void SetCallbacks(StreamCallbacks* callbacks) = 0;
  // Ends the stream now in both directions (RST_STREAM, or closing an HTTP/1.1 connection that
  // is mid-message). The callbacks are not called for a reset made here.
  virtual void Reset(ResetReason reason) = 0;
  // Flow control: while disabled, the codec delivers no more of this stream's body (it stops
  // reading the socket, or stops giving HTTP/2 window back). Calls nest: each `true` needs a
  // `false`.
  virtual void ReadDisable(bool disable) = 0;
  // Bytes of this stream's outgoing data waiting to be written.
  virtual size_t BufferedBytes() const = 0;
};

// Receives a request: its head, then body chunks, then optional trailers. `end_stream` marks the
// last event of the request. Data is valid only during the call.
class RequestDecoder {
 public:
  virtual ~RequestDecoder() = default;
  virtual void DecodeHeaders(RequestHeadPtr head, bool end_stream) = 0;
  virtual void DecodeData(absl::string_view data, bool end_stream) = 0;
  virtual void DecodeTrailers(HeaderMap trailers) = 0;
};

// Receives a response the same way. Interim (1xx) heads never reach it: the codecs drop them,
// except 101 after an upgrade request, which is a final response.
class ResponseDecoder {
 public:
  virtual ~ResponseDecoder() = default;
  virtual void DecodeHeaders(ResponseHeadPtr head, bool end_stream) = 0;
  virtual void DecodeData(absl::string_view data, bool end_stream) = 0;
  virtual void DecodeTrailers(HeaderMap trailers) = 0;
};

// Sends a response on a server stream: a head, body chunks, trailers. After the last call with
// `end_stream` (or trailers) the stream's response is complete.
class ResponseEncoder {
 public:
  virtual ~ResponseEncoder() = default;
  virtual Stream& stream() = 0;
  virtual void EncodeHeaders(const ResponseHead& head, bool end_stream) = 0;
  virtual void EncodeData(absl::string_view data, bool end_stream) = 0;
  virtual void EncodeTrailers(const HeaderMap& trailers) = 0;
};

// Sends a request on a client stream.
class RequestEncoder {
 public:
  virtual ~RequestEncoder() = default;
  virtual Stream& stream() = 0;
  virtual void EncodeHeaders(const RequestHead& head, bool end_stream) = 0;
  virtual void EncodeData(absl::string_view data, bool end_stream) = 0;
  virtual void EncodeTrailers(const HeaderMap& trailers) = 0;
};

}  // namespace mesh::dataplane
