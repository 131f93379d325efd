#pragma once

#include <memory>
#include <optional>
#include <string>

#include "dataplane/codec/codec.h"
#include "dataplane/codec/http1_parser.h"
#include "dataplane/codec/http1_writer.h"
#include "dataplane/codec/output_buffer.h"

namespace mesh::dataplane {

// The server side of an HTTP/1.1 connection: one request at a time, each a stream. Requests are
// parsed by Boost.Beast and checked against http1_rules.h; a request that breaks them, or that
// the parser refuses, is answered here (400, 431, 501) and the connection closes after the
// answer. A pipelined request waits, unparsed, until the response before it is complete.
//
// Responses: the codec chooses the framing (Content-Length when the head has one, else chunked
// for HTTP/1.1 and close-delimited for HTTP/1.0) and the connection header. "Expect:
// 100-continue" is answered with 100 Continue at once, as Envoy does. An upgrade request
// (WebSocket) becomes a tunnel once the response is a 101: bytes either way are then body data.
class Http1ServerCodec : public ServerCodec, private http1::MessageEvents {
 public:
  Http1ServerCodec(CodecOwner& owner, ServerCodecCallbacks& callbacks, const CodecLimits& limits,
                   bool tls);
  ~Http1ServerCodec() override;

  // Codec
  absl::StatusOr<size_t> Dispatch(absl::string_view data) override;
  absl::string_view PendingOutput() override { return output_.Front(); }
  void ConsumeOutput(size_t n) override;
  bool WantsClose() const override { return close_after_output_ && output_.empty(); }
  bool WantsRead() const override;
  void GoAway() override;
  void OnConnectionClosed(ResetReason reason) override;
  size_t ActiveStreams() const override { return stream_active_ ? 1 : 0; }
  HttpProtocol protocol() const override { return HttpProtocol::kHttp11; }

 private:
  class ServerStream;
  friend class ServerStream;

  // http1::MessageEvents
  boost::system::error_code OnHeader() override;
  void OnBody(absl::string_view data) override;
  void OnComplete(HeaderMap* trailers) override;

  // Answers a request the codec refuses, and closes after it.
  void RefuseRequest(int status, absl::string_view reason);
  void OnResponseComplete();
  void MaybeFinishStream();
  void Output();         // new bytes in output_: tell the owner when not inside Dispatch
  void TellWatermark();  // the stream's callbacks learn when output_ crosses a watermark

  CodecOwner& owner_;
  ServerCodecCallbacks& callbacks_;
  const CodecLimits limits_;
  const bool tls_;
  OutputBuffer output_;
  std::optional<http1::Parser<true>> parser_;
  std::unique_ptr<ServerStream> stream_;  // the current exchange's; kept until the next begins
  RequestDecoder* decoder_ = nullptr;
  bool stream_active_ = false;
  bool request_complete_ = false;
  bool response_complete_ = false;
  bool keep_alive_ = true;
  bool tunnel_ = false;  // a 101 went out: bytes are relayed as they come
  bool upgrade_requested_ = false;
  bool going_away_ = false;
  bool close_after_output_ = false;
  bool dispatching_ = false;
  bool request_body_expected_ = false;
  std::optional<uint64_t> request_remaining_;  // Content-Length bytes still to come
  int read_disabled_ = 0;
  std::string refusal_;  // why OnHeader refused the request
  int refusal_status_ = 0;
};

}  // namespace mesh::dataplane
