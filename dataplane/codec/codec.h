#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "dataplane/stream/stream.h"

// The codec layer: one connection's bytes in, stream events out; stream encodes in, bytes out.
// A codec does no I/O and reads no clock. The connection that owns it (see server/) reads the
// socket and hands the bytes to Dispatch, and writes what PendingOutput holds, so both codecs
// are tested by feeding bytes, byte by byte or in one piece.
namespace mesh::dataplane {

// What a codec tells the connection that drives it.
class CodecOwner {
 public:
  virtual ~CodecOwner() = default;
  // The codec has new output (an encode happened outside Dispatch, e.g. an upstream response
  // arrived); the owner should write PendingOutput soon.
  virtual void OnCodecOutput() = 0;
  // The codec can take bytes again after it stopped consuming them (an HTTP/1.1 pipelined request
  // waits until the previous response is complete): the owner should Dispatch what it holds.
  virtual void OnCodecReadResumed() {}
  // A stream ended (completed or reset); an upstream connection may now carry another.
  virtual void OnCodecStreamClosed() {}
};

class Codec {
 public:
  virtual ~Codec() = default;
  // Feeds bytes read from the connection; stream events are delivered during the call. Returns
  // how many bytes were consumed: the rest must be offered again later, with more appended (an
  // incomplete HTTP/1.1 header, or a pipelined request while a response is in progress). An error
  // means the connection is unusable: the owner writes what is pending (an error answer, a
  // GOAWAY) and closes. Every open stream is then reset.
  virtual absl::StatusOr<size_t> Dispatch(absl::string_view data) = 0;
  // The next bytes to write (maybe not all that wait: the owner writes, calls ConsumeOutput, and
  // asks again until this is empty). The bytes stay valid and unmoved until consumed, whatever
  // is encoded meanwhile.
  virtual absl::string_view PendingOutput() = 0;
  virtual void ConsumeOutput(size_t n) = 0;
  // The connection should close once its output is written: HTTP/1.1 "Connection: close", a
  // finished GOAWAY, a fatal error.
  virtual bool WantsClose() const = 0;
  // Whether the owner should read from the socket now (false while every stream that could take
  // data is read-disabled, or an HTTP/1.1 connection waits for its response).
  virtual bool WantsRead() const = 0;
  // Starts a graceful close: HTTP/2 sends GOAWAY and lets open streams finish; HTTP/1.1 closes
  // after the current exchange. New streams are refused from now on.
  virtual void GoAway() = 0;
  // The socket closed (or failed): open streams are reset with `reason`; no more events follow.
  virtual void OnConnectionClosed(ResetReason reason) = 0;
  // Streams in progress.
  virtual size_t ActiveStreams() const = 0;
  virtual HttpProtocol protocol() const = 0;
};

// A server connection's codec. Each request starts a stream: the codec calls NewStream with the
// stream's encoder, and delivers the request's events to the decoder returned.
class ServerCodecCallbacks {
 public:
  virtual ~ServerCodecCallbacks() = default;
  // The decoder must stay valid until the stream completes or resets.
  virtual RequestDecoder& NewStream(ResponseEncoder& encoder) = 0;
};

class ServerCodec : public virtual Codec {};
using ServerCodecPtr = std::unique_ptr<ServerCodec>;

// An upstream connection's codec.
class ClientCodec : public virtual Codec {
 public:
  // Whether NewStream may be called now: HTTP/1.1 carries one exchange at a time, HTTP/2 up to
  // the peer's SETTINGS_MAX_CONCURRENT_STREAMS; neither after a GOAWAY or an error.
  virtual bool CanOpenStream() const = 0;
  // A connection with no stream that can be reused (no unread bytes, keep-alive, no GOAWAY).
  virtual bool Reusable() const = 0;
  // Opens a stream; the response's events go to `decoder`, which must stay valid until the
  // stream completes or resets. REQUIRES: CanOpenStream().
  virtual RequestEncoder& NewStream(ResponseDecoder& decoder) = 0;
};
using ClientCodecPtr = std::unique_ptr<ClientCodec>;

// Limits shared by the codecs; the defaults are Envoy's.
struct CodecLimits {
  size_t max_header_bytes = 60 * 1024;          // a larger request header: 431
  uint32_t max_concurrent_streams = 100;        // HTTP/2, per connection
  uint32_t initial_stream_window = 256 * 1024;  // HTTP/2 receive window per stream
  uint32_t initial_connection_window = 1024 * 1024;
  // Output held for one connection before streams writing to it are told to stop their source
  // (high watermark); they resume below half of it.
  size_t output_high_watermark = 1024 * 1024;
};

}  // namespace mesh::dataplane
