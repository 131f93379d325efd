#include "dataplane/codec/http1_client_codec.h"

#include <boost/asio/buffer.hpp>

#include "absl/strings/str_cat.h"
#include "dataplane/codec/http1_rules.h"

namespace mesh::dataplane {
namespace {

namespace http = boost::beast::http;

constexpr int kMaxInterim = 8;  // 1xx answers to one request before the server is given up on

}  // namespace

class Http1ClientCodec::ClientStream : public RequestEncoder, public Stream {
 public:
  explicit ClientStream(Http1ClientCodec& codec) : codec_(codec) {}

  StreamCallbacks* callbacks() const { return callbacks_; }

  // RequestEncoder
  Stream& stream() override { return *this; }
  void EncodeHeaders(const RequestHead& head, bool end_stream) override {
    if (headers_sent_ || !codec_.stream_active_) return;
    headers_sent_ = true;
    std::string& b = codec_.output_.back();
    absl::StrAppend(&b, head.method, " ", head.path, " HTTP/1.1\r\nhost: ", head.authority, "\r\n");
    http1::AppendFields(head.headers, b);
    codec_.head_request_ = head.method == "HEAD";
    const std::string* length = head.headers.Get("content-length");
    if (!head.upgrade.empty()) {
      codec_.upgrade_requested_ = true;
      framing_ = http1::BodyFraming::kTunnel;
      absl::StrAppend(&b, "connection: upgrade\r\nupgrade: ", head.upgrade, "\r\n");
    } else if (length) {
      framing_ = http1::BodyFraming::kLength;
      absl::StrAppend(&b, "content-length: ", *length, "\r\n");
    } else if (end_stream) {
      framing_ = http1::BodyFraming::kNone;
      // A POST, PUT or PATCH without a body says so: some servers would otherwise wait for one.
      if (head.method == "POST" || head.method == "PUT" || head.method == "PATCH")
        b.append("content-length: 0\r\n");
    } else {
      framing_ = http1::BodyFraming::kChunked;
      b.append("transfer-encoding: chunked\r\n");
    }
    b.append("\r\n");
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
    codec_.broken_ = true;
    codec_.stream_active_ = false;
    codec_.decoder_ = nullptr;
    codec_.Output();  // the owner sees WantsClose
    codec_.owner_.OnCodecStreamClosed();
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
    codec_.request_complete_ = true;
    codec_.MaybeFinishStream();
  }

  Http1ClientCodec& codec_;
  StreamCallbacks* callbacks_ = nullptr;
  bool headers_sent_ = false;
  bool ended_ = false;
  http1::BodyFraming framing_ = http1::BodyFraming::kNone;
};

Http1ClientCodec::Http1ClientCodec(CodecOwner& owner, const CodecLimits& limits)
    : owner_(owner), limits_(limits) {}

Http1ClientCodec::~Http1ClientCodec() = default;

RequestEncoder& Http1ClientCodec::NewStream(ResponseDecoder& decoder) {
  stream_ = std::make_unique<ClientStream>(*this);
  decoder_ = &decoder;
  stream_active_ = true;
  request_complete_ = response_complete_ = false;
  head_request_ = upgrade_requested_ = tunnel_ = false;
  interim_ = 0;
  parser_.reset();
  return *stream_;
}

absl::StatusOr<size_t> Http1ClientCodec::Dispatch(absl::string_view data) {
  dispatching_ = true;
  struct Done {
    bool& flag;
    ~Done() { flag = false; }
  } done{dispatching_};
  size_t used = 0;
  while (used < data.size() && read_disabled_ == 0) {
    if (tunnel_) {
      if (stream_active_ && decoder_) decoder_->DecodeData(data.substr(used), false);
      return data.size();
    }
    if (!stream_active_ || response_complete_) {
      // Bytes nobody asked for: whatever they are, this connection cannot be trusted again.
      broken_ = true;
      return absl::DataLossError("upstream sent bytes outside a response");
    }
    if (!parser_ || parser_->is_done()) {
      parser_.emplace(static_cast<http1::MessageEvents&>(*this), limits_.max_header_bytes);
      if (head_request_) parser_->skip(true);
      protocol_error_.clear();
    }
    boost::system::error_code ec;
    size_t n = parser_->put(boost::asio::buffer(data.data() + used, data.size() - used), ec);
    used += n;
    if (ec == http::error::need_more) break;
    if (ec) {
      std::string detail = protocol_error_.empty() ? ec.message() : protocol_error_;
      ResetStream(ResetReason::kProtocolError, detail);
      return absl::DataLossError(absl::StrCat("upstream response: ", detail));
    }
    if (n == 0) break;
  }
  return used;
}

boost::system::error_code Http1ClientCodec::OnHeader() {
  http1::Parser<false>& p = *parser_;
  if (p.status < 100) {
    // Three digits, but not a status (found by fuzz_http1: "HTTP/1.0 000 OK").
    protocol_error_ = absl::StrCat("invalid status code ", p.status);
    return http::error::bad_status;
  }
  if (p.status >= 100 && p.status < 200 && p.status != 101) {
    // 100 Continue, 103 Early Hints: dropped; the final response follows on this connection.
    if (++interim_ > kMaxInterim) {
      protocol_error_ = "too many interim responses";
      return http::error::bad_status;
    }
    return {};
  }
  Framing framing;
  if (std::optional<MessageRefusal> refusal =
          CheckResponseHeader(p.fields, p.status, upgrade_requested_, &framing)) {
    protocol_error_ = refusal->reason;
    return http::error::bad_value;
  }
  keep_alive_ = p.keep_alive();
  response_remaining_.reset();
  if (!framing.chunked && framing.content_length) response_remaining_ = framing.content_length;
  const bool end_stream = p.status != 101 && (head_request_ || p.status == 204 || p.status == 304 ||
                                              (!framing.chunked && framing.content_length == 0u));
  auto head = std::make_unique<ResponseHead>();
  head->status = p.status;
  head->headers = std::move(p.fields);
  if (end_stream) response_complete_ = true;
  if (stream_active_ && decoder_) decoder_->DecodeHeaders(std::move(head), end_stream);
  if (end_stream) MaybeFinishStream();
  return {};
}

void Http1ClientCodec::OnBody(absl::string_view data) {
  bool end = false;
  if (response_remaining_) {
    *response_remaining_ -= std::min<uint64_t>(*response_remaining_, data.size());
    end = *response_remaining_ == 0;
  }
  if (end) response_complete_ = true;
  if (stream_active_ && decoder_) decoder_->DecodeData(data, end);
  if (end) MaybeFinishStream();
}

void Http1ClientCodec::OnComplete(HeaderMap* trailers) {
  const int status = parser_->status;
  if (status >= 100 && status < 200 && status != 101) return;  // interim: the next one follows
  if (status == 101) {
    tunnel_ = true;  // bytes from here on are the tunnel's
    keep_alive_ = false;
    return;
  }
  if (response_complete_) return;
  response_complete_ = true;
  if (stream_active_ && decoder_) {
    if (trailers && !trailers->empty()) {
      decoder_->DecodeTrailers(std::move(*trailers));
    } else {
      decoder_->DecodeData("", true);
    }
  }
  MaybeFinishStream();
}

void Http1ClientCodec::ResetStream(ResetReason reason, absl::string_view detail) {
  broken_ = true;
  if (!stream_active_) return;
  stream_active_ = false;
  decoder_ = nullptr;
  if (StreamCallbacks* callbacks = stream_->callbacks()) callbacks->OnReset(reason, detail);
  owner_.OnCodecStreamClosed();
}

void Http1ClientCodec::MaybeFinishStream() {
  if (!stream_active_ || !request_complete_ || !response_complete_) return;
  stream_active_ = false;
  decoder_ = nullptr;
  owner_.OnCodecStreamClosed();
}

void Http1ClientCodec::OnConnectionClosed(ResetReason reason) {
  if (stream_active_ && tunnel_) {
    broken_ = true;
    ResponseDecoder* decoder = decoder_;
    stream_active_ = false;
    decoder_ = nullptr;
    if (decoder) decoder->DecodeData("", true);  // the tunnel's far end closed
    return;
  }
  if (stream_active_ && parser_ && parser_->is_header_done() && !parser_->is_done() &&
      !response_complete_) {
    // A body delimited by the connection's close ends here.
    boost::system::error_code ec;
    parser_->put_eof(ec);
    if (!ec && response_complete_) {
      broken_ = true;
      return;
    }
  }
  ResetStream(reason, "upstream connection closed");
}

void Http1ClientCodec::ConsumeOutput(size_t n) {
  output_.Consume(n);
  TellWatermark();
}

void Http1ClientCodec::Output() {
  TellWatermark();  // above: the upstream reads the body slower than the client sends it
  if (!dispatching_) owner_.OnCodecOutput();
}

void Http1ClientCodec::TellWatermark() {
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
