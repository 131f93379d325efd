#pragma once

#include <memory>
#include <optional>
#include <string>

#include "dataplane/codec/codec.h"
#include "dataplane/codec/http1_parser.h"
#include "dataplane/codec/http1_writer.h"
#include "dataplane/codec/output_buffer.h"

namespace mesh::dataplane {

// The client side of an HTTP/1.1 upstream connection: one exchange at a time. The request head
// is written with Host from the authority and the framing the request needs (Content-Length when
// known, else chunked). The response is parsed by Boost.Beast and checked against
// http1_rules.h: interim 1xx answers are dropped (the client only ever sees the final one), a
// response that breaks the rules resets the stream with kProtocolError and the connection is not
// reused. A connection returns to the pool only when the exchange completed on both sides, the
// server kept it alive, and no byte beyond the response arrived.
class Http1ClientCodec : public ClientCodec, private http1::MessageEvents {
 public:
  Http1ClientCodec(CodecOwner& owner, const CodecLimits& limits);
  ~Http1ClientCodec() override;

  // Codec
  absl::StatusOr<size_t> Dispatch(absl::string_view data) override;
  absl::string_view PendingOutput() override { return output_.Front(); }
  void ConsumeOutput(size_t n) override;
  bool WantsClose() const override { return broken_ && output_.empty(); }
  bool WantsRead() const override { return read_disabled_ == 0; }
  void GoAway() override { going_away_ = true; }
  void OnConnectionClosed(ResetReason reason) override;
  size_t ActiveStreams() const override { return stream_active_ ? 1 : 0; }
  HttpProtocol protocol() const override { return HttpProtocol::kHttp11; }

  // ClientCodec
  bool CanOpenStream() const override { return !stream_active_ && Reusable(); }
  bool Reusable() const override { return !broken_ && !going_away_ && keep_alive_; }
  RequestEncoder& NewStream(ResponseDecoder& decoder) override;

 private:
  class ClientStream;
  friend class ClientStream;

  // http1::MessageEvents
  boost::system::error_code OnHeader() override;
  void OnBody(absl::string_view data) override;
  void OnComplete(HeaderMap* trailers) override;

  // Ends the exchange with a reset: the connection is not reused.
  void ResetStream(ResetReason reason, absl::string_view detail);
  void MaybeFinishStream();
  void Output();         // new bytes in output_: tell the owner when not inside Dispatch
  void TellWatermark();  // the stream's callbacks learn when output_ crosses a watermark

  CodecOwner& owner_;
  const CodecLimits limits_;
  OutputBuffer output_;
  std::optional<http1::Parser<false>> parser_;
  std::unique_ptr<ClientStream> stream_;
  ResponseDecoder* decoder_ = nullptr;
  bool stream_active_ = false;
  bool request_complete_ = false;
  bool response_complete_ = false;
  bool head_request_ = false;
  bool upgrade_requested_ = false;
  bool tunnel_ = false;
  bool keep_alive_ = true;
  bool broken_ = false;  // a protocol error, a reset or a stray byte: never reused
  bool going_away_ = false;
  bool dispatching_ = false;
  int interim_ = 0;  // 1xx answers dropped for this exchange
  std::optional<uint64_t> response_remaining_;
  std::string protocol_error_;
  int read_disabled_ = 0;
};

}  // namespace mesh::dataplane
