#include "dataplane/codec/http1_server_codec.h"

#include <boost/asio/buffer.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "dataplane/codec/http1_rules.h"

namespace mesh::dataplane {
namespace {

namespace http = boost::beast::http;

}  // namespace

class Http1ServerCodec::ServerStream : public ResponseEncoder, public Stream {
 public:
  ServerStream(Http1ServerCodec& codec, bool http10, bool head_request)
      : codec_(codec), http10_(http10), head_request_(head_request) {}

  StreamCallbacks* callbacks() const { return callbacks_; }
  bool response_started() const { return headers_sent_; }

  // ResponseEncoder
  Stream& stream() override { return *this; }
  void EncodeHeaders(const ResponseHead& head, bool end_stream) override {
    if (headers_sent_ || !codec_.stream_active_) return;
    headers_sent_ = true;
    std::string& b = codec_.output_.back();
    const int status = head.status;
    absl::StrAppend(&b, http10_ ? "HTTP/1.0 " : "HTTP/1.1 ", status, " ",
                    http1::ReasonPhrase(status), "\r\n");
    http1::AppendFields(head.headers, b);
    const bool no_body =
        head_request_ || status == 204 || status == 304 || (status >= 100 && status < 200);
    const std::string* length = head.headers.Get("content-length");
    if (status == 101 && codec_.upgrade_requested_) {
      framing_ = http1::BodyFraming::kTunnel;
      b.append("connection: upgrade\r\n");
      if (const std::string* upgrade = head.headers.Get("upgrade"))
        absl::StrAppend(&b, "upgrade: ", *upgrade, "\r\n");
    } else if (length && status != 204 && status >= 200) {
      framing_ = no_body ? http1::BodyFraming::kNone : http1::BodyFraming::kLength;
      absl::StrAppend(&b, "content-length: ", *length, "\r\n");
    } else if (no_body) {
      framing_ = http1::BodyFraming::kNone;
    } else if (end_stream) {
      framing_ = http1::BodyFraming::kNone;
      b.append("content-length: 0\r\n");
    } else if (!http10_) {
      framing_ = http1::BodyFraming::kChunked;
      b.append("transfer-encoding: chunked\r\n");
    } else {
      framing_ = http1::BodyFraming::kClose;
      codec_.keep_alive_ = false;
    }
    if (codec_.upgrade_requested_ && framing_ != http1::BodyFraming::kTunnel) {
      codec_.keep_alive_ = false;  // the client may already be sending tunnel bytes
    }
    if (framing_ != http1::BodyFraming::kTunnel) {
      if (!codec_.keep_alive_ || codec_.going_away_) {
        codec_.keep_alive_ = false;
        b.append("connection: close\r\n");
      } else if (http10_) {
        b.append("connection: keep-alive\r\n");
      }
    }
    b.append("\r\n");
    if (framing_ == http1::BodyFraming::kTunnel) codec_.tunnel_ = true;
    if (end_stream) End();
    codec_.Output();
  }
  void EncodeData(absl::string_view data, bool end_stream) override {
    if (!headers_sent_ || ended_ || !codec_.stream_active_) return;
    http1::AppendBody(framing_, data, end_stream, codec_.output_);
    if (end_stream) End();
    codec_.Output();
  }
  void EncodeTrailers(const HeaderMap& trailers) override {
    if (!headers_sent_ || ended_ || !codec_.stream_active_) return;
    http1::AppendTrailers(framing_, trailers, codec_.output_);
    End();
    codec_.Output();
  }

  // Stream
  void SetCallbacks(StreamCallbacks* callbacks) override { callbacks_ = callbacks; }
  void Reset(ResetReason) override {
    if (!codec_.stream_active_) return;
    // HTTP/1.1 has no stream reset: the connection ends, after what is already written.
    codec_.stream_active_ = false;
    codec_.decoder_ = nullptr;
    codec_.close_after_output_ = true;
    codec_.Output();
  }
  void ReadDisable(bool disable) override {
    codec_.read_disabled_ += disable ? 1 : -1;
    if (!disable && codec_.read_disabled_ == 0 && !codec_.dispatching_)
      codec_.owner_.OnCodecReadResumed();
  }
  size_t BufferedBytes() const override { return codec_.output_.size(); }

 private:
  void End() {
    ended_ = true;
    const bool close =
        framing_ == http1::BodyFraming::kClose || framing_ == http1::BodyFraming::kTunnel;
    if (close) codec_.keep_alive_ = false;
    codec_.OnResponseComplete();
  }

  Http1ServerCodec& codec_;
  const bool http10_;
  const bool head_request_;
  StreamCallbacks* callbacks_ = nullptr;
  bool headers_sent_ = false;
  bool ended_ = false;
  http1::BodyFraming framing_ = http1::BodyFraming::kNone;
};

Http1ServerCodec::Http1ServerCodec(CodecOwner& owner, ServerCodecCallbacks& callbacks,
                                   const CodecLimits& limits, bool tls)
    : owner_(owner), callbacks_(callbacks), limits_(limits), tls_(tls) {}

Http1ServerCodec::~Http1ServerCodec() = default;

bool Http1ServerCodec::WantsRead() const {
  return !close_after_output_ && read_disabled_ == 0;
}

absl::StatusOr<size_t> Http1ServerCodec::Dispatch(absl::string_view data) {
  dispatching_ = true;
  struct Done {
    bool& flag;
    ~Done() { flag = false; }
  } done{dispatching_};
  size_t used = 0;
  while (used < data.size() && !close_after_output_ && read_disabled_ == 0) {
    if (tunnel_ || (upgrade_requested_ && request_complete_)) {
      // Tunnel bytes: the request "body" of an upgrade. Before the 101 they are held back.
      if (!tunnel_) break;
      if (stream_active_ && decoder_) decoder_->DecodeData(data.substr(used), false);
      used = data.size();
      break;
    }
    if (stream_active_ && request_complete_) break;  // a pipelined request waits its turn
    if (!stream_active_ && (!parser_ || parser_->is_done())) {
      if (going_away_) {
        close_after_output_ = true;
        break;
      }
      stream_.reset();
      parser_.emplace(static_cast<http1::MessageEvents&>(*this), limits_.max_header_bytes);
      refusal_.clear();
    }
    boost::system::error_code ec;
    size_t n = parser_->put(boost::asio::buffer(data.data() + used, data.size() - used), ec);
    used += n;
    if (ec == http::error::need_more) break;
    if (ec) {
      if (!refusal_.empty()) {
        RefuseRequest(refusal_status_, refusal_);
      } else if (ec == http::error::header_limit) {
        RefuseRequest(431, "request header fields too large");
      } else if (stream_active_) {
        // The body broke off or broke the chunked syntax: the client's error. The layer above
        // abandons the stream; the client gets a 400 unless its response has begun.
        StreamCallbacks* callbacks = stream_->callbacks();
        const bool started = stream_->response_started();
        stream_active_ = false;
        decoder_ = nullptr;
        if (callbacks) callbacks->OnReset(ResetReason::kProtocolError, ec.message());
        if (!started) {
          RefuseRequest(400, ec.message());
        } else {
          close_after_output_ = true;
        }
      } else {
        RefuseRequest(400, ec.message());
      }
      return absl::InvalidArgumentError(absl::StrCat("HTTP/1.1 request: ", ec.message()));
    }
    if (n == 0) break;
  }
  return used;
}

boost::system::error_code Http1ServerCodec::OnHeader() {
  http1::Parser<true>& p = *parser_;
  Framing framing;
  if (std::optional<MessageRefusal> refusal = CheckRequestHeader(
          p.fields, p.hosts, p.host, static_cast<unsigned>(p.version), &framing)) {
    refusal_ = refusal->reason;
    refusal_status_ = refusal->status;
    return http::error::bad_value;
  }
  auto head = std::make_unique<RequestHead>();
  if (!SplitRequestTarget(p.method, p.target, &head->authority, &head->path)) {
    refusal_ = "unsupported request target";
    refusal_status_ = 400;
    return http::error::bad_target;
  }
  if (head->authority.empty()) head->authority = std::move(p.host);
  head->method = std::move(p.method);
  head->scheme = tls_ ? "https" : "http";
  head->protocol = p.version >= 11 ? HttpProtocol::kHttp11 : HttpProtocol::kHttp10;
  keep_alive_ = p.keep_alive() && !going_away_;
  request_body_expected_ = framing.chunked || framing.content_length.value_or(0) > 0;
  request_remaining_.reset();
  if (!framing.chunked && framing.content_length) request_remaining_ = framing.content_length;
  upgrade_requested_ = false;
  if (p.upgrade() && !request_body_expected_) {
    if (const std::string* upgrade = p.fields.Get("upgrade")) {
      head->upgrade = *upgrade;
      upgrade_requested_ = true;
    }
  }
  if (const std::string* expect = p.fields.Get("expect")) {
    // Envoy answers 100-continue itself, so the client sends its body without waiting.
    if (absl::EqualsIgnoreCase(*expect, "100-continue") && request_body_expected_ &&
        p.version >= 11) {
      output_.Append("HTTP/1.1 100 Continue\r\n\r\n");
    }
    p.fields.Remove("expect");
  }
  head->headers = std::move(p.fields);
  const bool end_stream = !request_body_expected_ && !upgrade_requested_;
  stream_ = std::make_unique<ServerStream>(*this, p.version < 11, head->method == "HEAD");
  stream_active_ = true;
  request_complete_ = end_stream;
  response_complete_ = false;
  decoder_ = &callbacks_.NewStream(*stream_);
  decoder_->DecodeHeaders(std::move(head), end_stream);
  MaybeFinishStream();
  return {};
}

void Http1ServerCodec::OnBody(absl::string_view data) {
  bool end = false;
  if (request_remaining_) {
    *request_remaining_ -= std::min<uint64_t>(*request_remaining_, data.size());
    end = *request_remaining_ == 0;
  }
  if (end) request_complete_ = true;
  if (stream_active_ && decoder_) decoder_->DecodeData(data, end);
  if (end) MaybeFinishStream();
}

void Http1ServerCodec::OnComplete(HeaderMap* trailers) {
  if (request_complete_) return;  // ended with the header or the last Content-Length byte
  request_complete_ = true;
  if (upgrade_requested_) return;  // the tunnel's bytes follow; see Dispatch
  if (stream_active_ && decoder_) {
    if (trailers && !trailers->empty()) {
      decoder_->DecodeTrailers(std::move(*trailers));
    } else {
      decoder_->DecodeData("", true);
    }
  }
  MaybeFinishStream();
}

void Http1ServerCodec::RefuseRequest(int status, absl::string_view reason) {
  std::string body =
      absl::StrCat(status == 501 ? "not implemented: " : "bad request: ", reason, "\n");
  if (status == 431) body = absl::StrCat(reason, "\n");
  absl::StrAppend(&output_.back(), "HTTP/1.1 ", status, " ", http1::ReasonPhrase(status),
                  "\r\ncontent-type: text/plain\r\ncontent-length: ", body.size(),
                  "\r\nconnection: close\r\n\r\n", body);
  close_after_output_ = true;
  Output();
}

void Http1ServerCodec::OnResponseComplete() {
  response_complete_ = true;
  if (!keep_alive_) close_after_output_ = true;
  if (upgrade_requested_ && !tunnel_) request_complete_ = true;  // refused upgrade: no tunnel
  MaybeFinishStream();
}

void Http1ServerCodec::MaybeFinishStream() {
  if (!stream_active_ || !request_complete_ || !response_complete_) return;
  stream_active_ = false;
  decoder_ = nullptr;
  if (!close_after_output_ && !dispatching_) owner_.OnCodecReadResumed();
}

void Http1ServerCodec::ConsumeOutput(size_t n) {
  output_.Consume(n);
  TellWatermark();
}

void Http1ServerCodec::GoAway() {
  going_away_ = true;
  if (!stream_active_) {
    close_after_output_ = true;
    Output();
  }
}

void Http1ServerCodec::OnConnectionClosed(ResetReason reason) {
  close_after_output_ = true;
  if (!stream_active_) return;
  stream_active_ = false;
  decoder_ = nullptr;
  if (StreamCallbacks* callbacks = stream_->callbacks()) {
    callbacks->OnReset(reason, "downstream connection closed");
  }
}

void Http1ServerCodec::Output() {
  TellWatermark();  // above: the client reads slower than the upstream answers
  if (!dispatching_) owner_.OnCodecOutput();
}

void Http1ServerCodec::TellWatermark() {
  switch (output_.CrossedWatermark(limits_.output_high_watermark)) {
    case OutputBuffer::Watermark::kNone: return;
    case OutputBuffer::Watermark::kAbove:
      if (stream_active_ && stream_->callbacks())
        stream_->callbacks()->OnAboveWriteBufferHighWatermark();
      return;
    case OutputBuffer::Watermark::kBelow:
      if (stream_active_ && stream_->callbacks())
        stream_->callbacks()->OnBelowWriteBufferLowWatermark();
      return;
  }
}

}  // namespace mesh::dataplane
