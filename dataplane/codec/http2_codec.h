#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "dataplane/codec/codec.h"
#include "dataplane/codec/output_buffer.h"

struct nghttp2_session;

namespace mesh::dataplane {

class Http2Stream;

// HTTP/2 on nghttp2 (framing, HPACK, flow control, the protocol's rules), sans I/O: Dispatch
// feeds nghttp2_session_mem_recv, PendingOutput drains nghttp2_session_mem_send. The server and
// client codecs below share this base.
//
// Flow control: a stream's receive window is given back (nghttp2_session_consume) only once its
// data has been handed on, and not while the stream is read-disabled, so a slow reader on the
// other side stalls the sender instead of growing a buffer. Abuse guards are nghttp2's: a reset
// rate limit (CVE-2023-44487: GOAWAY, then the connection closes), caps on queued SETTINGS and
// PING acknowledgements, on SETTINGS entries and on CONTINUATION frames; and the codec's own
// header-list limit (431 on a server stream, a reset on a client one).
class Http2Codec : public virtual Codec {
 public:
  ~Http2Codec() override;

  // Codec
  absl::StatusOr<size_t> Dispatch(absl::string_view data) override;
  absl::string_view PendingOutput() override;
  void ConsumeOutput(size_t n) override;
  bool WantsClose() const override;
  bool WantsRead() const override;
  void GoAway() override;
  void OnConnectionClosed(ResetReason reason) override;
  size_t ActiveStreams() const override { return streams_.size(); }
  HttpProtocol protocol() const override { return HttpProtocol::kHttp2; }

  // Every nghttp2 callback lands here (see the .cc); not for other callers.
  struct Callbacks;

 protected:
  Http2Codec(CodecOwner& owner, const CodecLimits& limits, bool server);
  void Output();  // tells the owner there is output, unless inside Dispatch/PendingOutput
  Http2Stream* Find(int32_t id);
  void Adopt(int32_t id, std::unique_ptr<Http2Stream> stream);

  friend class Http2Stream;
  CodecOwner& owner_;
  const CodecLimits limits_;
  const bool server_;
  nghttp2_session* session_ = nullptr;
  OutputBuffer output_;
  std::map<int32_t, std::unique_ptr<Http2Stream>> streams_;
  std::vector<std::unique_ptr<Http2Stream>> closed_;  // destroyed outside nghttp2's callbacks
  bool in_session_ = false;                           // inside mem_recv or mem_send
  bool fatal_ = false;
  bool goaway_received_ = false;
  bool goaway_sent_ = false;
};

class Http2ServerCodec : public Http2Codec, public ServerCodec {
 public:
  Http2ServerCodec(CodecOwner& owner, ServerCodecCallbacks& callbacks, const CodecLimits& limits,
                   bool tls);
  ~Http2ServerCodec() override;
  ServerCodecCallbacks& callbacks() { return callbacks_; }
  bool tls() const { return tls_; }

 private:
  ServerCodecCallbacks& callbacks_;
  const bool tls_;
};

class Http2ClientCodec : public Http2Codec, public ClientCodec {
 public:
  Http2ClientCodec(CodecOwner& owner, const CodecLimits& limits);
  ~Http2ClientCodec() override;

  // ClientCodec
  bool CanOpenStream() const override;
  bool Reusable() const override { return !fatal_ && !goaway_received_ && !goaway_sent_; }
  RequestEncoder& NewStream(ResponseDecoder& decoder) override;
  // The peer's SETTINGS_MAX_CONCURRENT_STREAMS (100 until its SETTINGS arrive).
  uint32_t max_concurrent_streams() const;

 private:
  friend class Http2Stream;
  void Submitted(Http2Stream* stream);  // its headers went out: it has an id now
  // Streams opened but not yet submitted (their id comes with their headers).
  std::vector<std::unique_ptr<Http2Stream>> unsubmitted_;
};

}  // namespace mesh::dataplane
