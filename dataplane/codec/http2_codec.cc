#include "dataplane/codec/http2_codec.h"

#include <nghttp2/nghttp2.h>

#include <cstring>
#include <optional>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace mesh::dataplane {
namespace {

constexpr size_t kOutputChunk = 64 * 1024;  // PendingOutput stops filling at about this much

// Fields that describe one HTTP/1.1 connection and may not appear in HTTP/2 (RFC 9113 8.2.2);
// "te" may, with the value "trailers" only.
bool ConnectionSpecific(const HeaderMap::Field& f) {
  const std::string& n = f.name;
  if (n == "te") return f.value != "trailers";
  return n == "connection" || n == "keep-alive" || n == "proxy-connection" ||
         n == "transfer-encoding" || n == "upgrade" || n == "host";
}

nghttp2_nv Nv(const std::string& name, const std::string& value) {
  return {reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
          reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(), value.size(),
          NGHTTP2_NV_FLAG_NONE};
}

uint32_t ErrorCode(ResetReason reason) {
  switch (reason) {
    case ResetReason::kProtocolError: return NGHTTP2_PROTOCOL_ERROR;
    case ResetReason::kOverflow: return NGHTTP2_REFUSED_STREAM;
    case ResetReason::kRefused: return NGHTTP2_REFUSED_STREAM;
    case ResetReason::kConnectionFailure:
    case ResetReason::kConnectionTermination: return NGHTTP2_CONNECT_ERROR;
    default: return NGHTTP2_CANCEL;
  }
}

}  // namespace

// nghttp2's callbacks; `user` is the codec.
struct Http2Codec::Callbacks {
  static ssize_t ReadData(nghttp2_session*, int32_t, uint8_t* buf, size_t length, uint32_t* flags,
                          nghttp2_data_source* source, void*);
  static int OnBeginHeaders(nghttp2_session*, const nghttp2_frame* frame, void* user);
  static int OnHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                      size_t name_length, const uint8_t* value, size_t value_length, uint8_t,
                      void* user);
  static int OnFrameRecv(nghttp2_session*, const nghttp2_frame* frame, void* user);
  static int OnDataChunkRecv(nghttp2_session*, uint8_t, int32_t stream_id, const uint8_t* data,
                             size_t length, void* user);
  static int OnStreamClose(nghttp2_session*, int32_t stream_id, uint32_t error_code, void* user);
};

// One HTTP/2 stream, either side: it receives a head, data and trailers from nghttp2 and hands
// them to its decoder; what the layer above encodes waits in `send_` until nghttp2 asks for it.
class Http2Stream : public Stream, public ResponseEncoder, public RequestEncoder {
 public:
  Http2Stream(Http2Codec& codec, RequestDecoder* request_decoder, ResponseDecoder* response_decoder)
      : codec_(codec), request_decoder_(request_decoder), response_decoder_(response_decoder) {}

  int32_t id = -1;
  // Receiving.
  std::string method, scheme, authority, path, protocol;
  int status = 0;
  HeaderMap fields;
  size_t header_bytes = 0;
  bool header_too_large = false;
  bool head_delivered = false;
  bool remote_ended = false;
  bool local_ended = false;  // all of our side was handed to nghttp2's data source
  bool reset = false;        // reset here or by the peer: no more events either way
  StreamCallbacks* callbacks = nullptr;
  RequestDecoder* request_decoder_;
  ResponseDecoder* response_decoder_;

  // Stream
  void SetCallbacks(StreamCallbacks* c) override { callbacks = c; }
  void Reset(ResetReason reason) override {
    if (reset) return;
    reset = true;
    request_decoder_ = nullptr;
    response_decoder_ = nullptr;
    if (id > 0)
      nghttp2_submit_rst_stream(codec_.session_, NGHTTP2_FLAG_NONE, id, ErrorCode(reason));
    codec_.Output();
  }
  void ReadDisable(bool disable) override {
    read_disabled_ += disable ? 1 : -1;
    if (read_disabled_ == 0 && unconsumed_ > 0 && id > 0) {
      nghttp2_session_consume(codec_.session_, id, unconsumed_);
      unconsumed_ = 0;
      codec_.Output();  // a WINDOW_UPDATE to send
    }
  }
  size_t BufferedBytes() const override { return send_.size() - sent_; }

  // ResponseEncoder (server streams)
  Stream& stream() override { return *this; }
  void EncodeHeaders(const ResponseHead& head, bool end_stream) override {
    if (reset || headers_sent_) return;
    headers_sent_ = true;
    std::string status_value = absl::StrCat(head.status);
    static const std::string kStatus = ":status";
    std::vector<nghttp2_nv> nva;
    nva.reserve(head.headers.size() + 1);
    nva.push_back(Nv(kStatus, status_value));
    AppendFields(head.headers, nva);
    local_ended = end_stream;
    nghttp2_submit_response(codec_.session_, id, nva.data(), nva.size(),
                            end_stream ? nullptr : &provider_);
    codec_.Output();
  }

  // RequestEncoder (client streams)
  void EncodeHeaders(const RequestHead& head, bool end_stream) override {
    if (reset || headers_sent_) return;
    headers_sent_ = true;
    static const std::string kMethod = ":method", kScheme = ":scheme", kAuthority = ":authority",
                             kPath = ":path";
    std::vector<nghttp2_nv> nva;
    nva.reserve(head.headers.size() + 4);
    nva.push_back(Nv(kMethod, head.method));
    static const std::string kHttp = "http";
    nva.push_back(Nv(kScheme, head.scheme.empty() ? kHttp : head.scheme));
    nva.push_back(Nv(kAuthority, head.authority));
    nva.push_back(Nv(kPath, head.path));
    AppendFields(head.headers, nva);
    local_ended = end_stream;
    id = nghttp2_submit_request(codec_.session_, nullptr, nva.data(), nva.size(),
                                end_stream ? nullptr : &provider_, this);
    if (id < 0) {
      // No stream id left, or the session is going away: the stream never existed.
      reset = true;
      if (callbacks) callbacks->OnReset(ResetReason::kRefused, nghttp2_strerror(id));
      return;
    }
    static_cast<Http2ClientCodec&>(codec_).Submitted(this);
    codec_.Output();
  }

  // Both
  void EncodeData(absl::string_view data, bool end_stream) override {
    if (reset || !headers_sent_ || local_ended) return;
    send_.append(data.data(), data.size());
    if (end_stream) local_ended = true;
    Resume();
    if (!above_watermark_ && BufferedBytes() > codec_.limits_.output_high_watermark) {
      above_watermark_ = true;
      if (callbacks) callbacks->OnAboveWriteBufferHighWatermark();
    }
  }
  void EncodeTrailers(const HeaderMap& trailers) override {
    if (reset || !headers_sent_ || local_ended) return;
    trailers_ = trailers;
    local_ended = true;
    Resume();
  }

  // Called by nghttp2 for the next DATA frame's payload.
  ssize_t Read(uint8_t* buf, size_t length, uint32_t* flags) {
    size_t n = std::min(length, BufferedBytes());
    memcpy(buf, send_.data() + sent_, n);
    sent_ += n;
    if (sent_ == send_.size()) {
      send_.clear();
      sent_ = 0;
    }
    if (above_watermark_ && BufferedBytes() < codec_.limits_.output_high_watermark / 2) {
      above_watermark_ = false;
      if (callbacks) callbacks->OnBelowWriteBufferLowWatermark();
    }
    if (BufferedBytes() == 0 && local_ended) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      if (trailers_) {
        *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        std::vector<nghttp2_nv> nva;
        AppendFields(*trailers_, nva);
        nghttp2_submit_trailer(codec_.session_, id, nva.data(), nva.size());
        trailers_.reset();
      }
      return static_cast<ssize_t>(n);
    }
    if (n == 0) {
      deferred_ = true;
      return NGHTTP2_ERR_DEFERRED;
    }
    return static_cast<ssize_t>(n);
  }

  // Received body bytes were handed on: give their window back unless read-disabled.
  void Consumed(size_t n) {
    if (read_disabled_ > 0) {
      unconsumed_ += n;
    } else {
      nghttp2_session_consume(codec_.session_, id, n);
    }
  }

 private:
  static void AppendFields(const HeaderMap& headers, std::vector<nghttp2_nv>& nva) {
    for (const HeaderMap::Field& f : headers) {
      if (f.name.empty() || f.name[0] == ':' || ConnectionSpecific(f)) continue;
      nva.push_back(Nv(f.name, f.value));
    }
  }
  void Resume() {
    if (deferred_ && id > 0) {
      deferred_ = false;
      nghttp2_session_resume_data(codec_.session_, id);
    }
    codec_.Output();
  }

  Http2Codec& codec_;
  nghttp2_data_provider provider_{{.ptr = this}, &Http2Codec::Callbacks::ReadData};
  bool headers_sent_ = false;
  bool deferred_ = false;
  bool above_watermark_ = false;
  std::string send_;
  size_t sent_ = 0;
  std::optional<HeaderMap> trailers_;
  int read_disabled_ = 0;
  size_t unconsumed_ = 0;
};

// --- nghttp2's callbacks.

ssize_t Http2Codec::Callbacks::ReadData(nghttp2_session*, int32_t, uint8_t* buf, size_t length,
                                        uint32_t* flags, nghttp2_data_source* source, void*) {
  return static_cast<Http2Stream*>(source->ptr)->Read(buf, length, flags);
}

int Http2Codec::Callbacks::OnBeginHeaders(nghttp2_session*, const nghttp2_frame* frame,
                                          void* user) {
  auto& codec = *static_cast<Http2Codec*>(user);
  if (frame->hd.type != NGHTTP2_HEADERS) return 0;
  if (codec.server_ && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
    auto stream = std::make_unique<Http2Stream>(codec, nullptr, nullptr);
    const int32_t id = frame->hd.stream_id;
    stream->id = id;
    codec.Adopt(id, std::move(stream));
  }
  return 0;
}

int Http2Codec::Callbacks::OnHeader(nghttp2_session*, const nghttp2_frame* frame,
                                    const uint8_t* name, size_t name_length, const uint8_t* value,
                                    size_t value_length, uint8_t, void* user) {
  auto& codec = *static_cast<Http2Codec*>(user);
  Http2Stream* stream = codec.Find(frame->hd.stream_id);
  if (!stream || stream->reset) return 0;
  stream->header_bytes += name_length + value_length + 32;
  if (stream->header_bytes > codec.limits_.max_header_bytes) {
    stream->header_too_large = true;
    return 0;
  }
  absl::string_view n(reinterpret_cast<const char*>(name), name_length);
  absl::string_view v(reinterpret_cast<const char*>(value), value_length);
  if (!n.empty() && n[0] == ':') {
    if (n == ":method") {
      stream->method = std::string(v);
    } else if (n == ":scheme") {
      stream->scheme = std::string(v);
    } else if (n == ":authority") {
      stream->authority = std::string(v);
    } else if (n == ":path") {
      stream->path = std::string(v);
    } else if (n == ":protocol") {
      stream->protocol = std::string(v);
    } else if (n == ":status") {
      (void)absl::SimpleAtoi(v, &stream->status);
    }
    return 0;
  }
  stream->fields.Add(n, v);
  return 0;
}

int Http2Codec::Callbacks::OnFrameRecv(nghttp2_session* session, const nghttp2_frame* frame,
                                       void* user) {
  auto& codec = *static_cast<Http2Codec*>(user);
  if (frame->hd.type == NGHTTP2_GOAWAY) {
    codec.goaway_received_ = true;
    return 0;
  }
  if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) return 0;
  Http2Stream* stream = codec.Find(frame->hd.stream_id);
  if (!stream || stream->reset) return 0;
  const bool end = frame->hd.flags & NGHTTP2_FLAG_END_STREAM;
  if (end) stream->remote_ended = true;
  if (frame->hd.type == NGHTTP2_DATA) {
    if (!end) return 0;
    if (stream->request_decoder_) stream->request_decoder_->DecodeData("", true);
    if (stream->response_decoder_) stream->response_decoder_->DecodeData("", true);
    return 0;
  }
  if (stream->head_delivered) {
    // A second header block ends the stream: trailers.
    HeaderMap trailers = std::move(stream->fields);
    stream->fields.clear();
    if (stream->request_decoder_) {
      stream->request_decoder_->DecodeTrailers(std::move(trailers));
    } else if (stream->response_decoder_) {
      stream->response_decoder_->DecodeTrailers(std::move(trailers));
    }
    return 0;
  }
  if (codec.server_) {
    auto& server = static_cast<Http2ServerCodec&>(codec);
    stream->head_delivered = true;
    stream->header_bytes = 0;  // trailers get a limit of their own
    if (stream->header_too_large) {
      // Answered here, as Envoy does: 431, and the request never reaches the layer above.
      static const std::string kStatus = ":status", k431 = "431";
      nghttp2_nv nv = Nv(kStatus, k431);
      stream->local_ended = true;
      nghttp2_submit_response(session, stream->id, &nv, 1, nullptr);
      stream->reset = true;
      return 0;
    }
    auto head = std::make_unique<RequestHead>();
    head->method = std::move(stream->method);
    head->scheme =
        stream->scheme.empty() ? (server.tls() ? "https" : "http") : std::move(stream->scheme);
    head->authority = std::move(stream->authority);
    if (head->authority.empty()) {
      if (const std::string* host = stream->fields.Get("host")) head->authority = *host;
    }
    head->path = std::move(stream->path);
    head->upgrade = std::move(stream->protocol);
    head->protocol = HttpProtocol::kHttp2;
    // HTTP/2 may split cookies over several fields; HTTP/1.1 servers expect one (RFC 9113 8.2.3).
    if (stream->fields.Count("cookie") > 1) {
      std::string joined;
      for (const HeaderMap::Field& f : stream->fields) {
        if (f.name != "cookie") continue;
        if (!joined.empty()) joined += "; ";
        joined += f.value;
      }
      stream->fields.Set("cookie", joined);
    }
    stream->fields.Remove("host");
    head->headers = std::move(stream->fields);
    stream->fields.clear();
    RequestDecoder& decoder = server.callbacks().NewStream(*stream);
    stream->request_decoder_ = &decoder;
    decoder.DecodeHeaders(std::move(head), end);
    return 0;
  }
  if (stream->header_too_large) {
    stream->Reset(ResetReason::kProtocolError);
    if (stream->callbacks)
      stream->callbacks->OnReset(ResetReason::kProtocolError, "response headers too large");
    return 0;
  }
  if (stream->status >= 100 && stream->status < 200) {
    // Interim (100 Continue, 103 Early Hints): dropped; the final head follows.
    stream->fields.clear();
    stream->status = 0;
    stream->header_bytes = 0;
    return 0;
  }
  stream->head_delivered = true;
  stream->header_bytes = 0;
  auto head = std::make_unique<ResponseHead>();
  head->status = stream->status;
  head->headers = std::move(stream->fields);
  stream->fields.clear();
  if (stream->response_decoder_) stream->response_decoder_->DecodeHeaders(std::move(head), end);
  return 0;
}

int Http2Codec::Callbacks::OnDataChunkRecv(nghttp2_session* session, uint8_t, int32_t stream_id,
                                           const uint8_t* data, size_t length, void* user) {
  auto& codec = *static_cast<Http2Codec*>(user);
  Http2Stream* stream = codec.Find(stream_id);
  absl::string_view bytes(reinterpret_cast<const char*>(data), length);
  if (stream && !stream->reset) {
    if (stream->request_decoder_) stream->request_decoder_->DecodeData(bytes, false);
    if (stream->response_decoder_) stream->response_decoder_->DecodeData(bytes, false);
  }
  if (stream && !stream->reset) {
    stream->Consumed(length);
  } else {
    nghttp2_session_consume(session, stream_id, length);  // dropped: its window comes back
  }
  return 0;
}

int Http2Codec::Callbacks::OnStreamClose(nghttp2_session*, int32_t stream_id, uint32_t error_code,
                                         void* user) {
  auto& codec = *static_cast<Http2Codec*>(user);
  auto it = codec.streams_.find(stream_id);
  if (it == codec.streams_.end()) return 0;
  Http2Stream& stream = *it->second;
  const bool complete = stream.local_ended && stream.remote_ended;
  if (!stream.reset && !complete) {
    stream.reset = true;
    if (stream.callbacks) {
      ResetReason reason =
          error_code == NGHTTP2_REFUSED_STREAM ? ResetReason::kRefused : ResetReason::kRemote;
      stream.callbacks->OnReset(reason, nghttp2_http2_strerror(error_code));
    }
  }
  codec.closed_.push_back(std::move(it->second));
  codec.streams_.erase(it);
  codec.owner_.OnCodecStreamClosed();
  return 0;
}

// --- The codec.

Http2Codec::Http2Codec(CodecOwner& owner, const CodecLimits& limits, bool server)
    : owner_(owner), limits_(limits), server_(server) {
  nghttp2_session_callbacks* callbacks;
  nghttp2_session_callbacks_new(&callbacks);
  nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, &Callbacks::OnBeginHeaders);
  nghttp2_session_callbacks_set_on_header_callback(callbacks, &Callbacks::OnHeader);
  nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, &Callbacks::OnFrameRecv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, &Callbacks::OnDataChunkRecv);
  nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, &Callbacks::OnStreamClose);
  nghttp2_option* options;
  nghttp2_option_new(&options);
  nghttp2_option_set_no_auto_window_update(options, 1);
  nghttp2_option_set_no_closed_streams(options, 1);
  nghttp2_option_set_max_outbound_ack(options, 1000);  // SETTINGS and PING floods
  nghttp2_option_set_max_settings(options, 32);
  nghttp2_option_set_stream_reset_rate_limit(options, 1000, 33);  // rapid reset
  nghttp2_option_set_max_continuations(options, 8);
  if (server) {
    nghttp2_session_server_new2(&session_, callbacks, this, options);
  } else {
    nghttp2_session_client_new2(&session_, callbacks, this, options);
  }
  nghttp2_option_del(options);
  nghttp2_session_callbacks_del(callbacks);
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, server ? limits.max_concurrent_streams : 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, limits.initial_stream_window},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, static_cast<uint32_t>(limits.max_header_bytes)},
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, server ? 3 : std::size(settings));
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0,
                                        static_cast<int32_t>(limits.initial_connection_window));
}

Http2Codec::~Http2Codec() {
  nghttp2_session_del(session_);
}

void Http2Codec::Adopt(int32_t id, std::unique_ptr<Http2Stream> stream) {
  nghttp2_session_set_stream_user_data(session_, id, stream.get());
  streams_[id] = std::move(stream);
}

Http2Stream* Http2Codec::Find(int32_t id) {
  auto it = streams_.find(id);
  return it == streams_.end() ? nullptr : it->second.get();
}

absl::StatusOr<size_t> Http2Codec::Dispatch(absl::string_view data) {
  if (fatal_) return absl::FailedPreconditionError("HTTP/2 connection already failed");
  closed_.clear();
  in_session_ = true;
  ssize_t rv = nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(data.data()),
                                        data.size());
  in_session_ = false;
  if (rv < 0) {
    fatal_ = true;
    // nghttp2 queued a GOAWAY with the error code where the protocol calls for one.
    return absl::InvalidArgumentError(absl::StrCat("HTTP/2: ", nghttp2_strerror(rv)));
  }
  return data.size();
}

absl::string_view Http2Codec::PendingOutput() {
  closed_.clear();
  in_session_ = true;
  while (output_.size() < kOutputChunk) {
    const uint8_t* bytes = nullptr;
    ssize_t n = nghttp2_session_mem_send(session_, &bytes);
    if (n < 0) {
      fatal_ = true;
      break;
    }
    if (n == 0) break;
    output_.Append(absl::string_view(reinterpret_cast<const char*>(bytes), n));
  }
  in_session_ = false;
  return output_.Front();
}

void Http2Codec::ConsumeOutput(size_t n) {
  output_.Consume(n);
}

bool Http2Codec::WantsClose() const {
  if (!output_.empty()) return false;
  if (fatal_) return true;
  return !nghttp2_session_want_read(session_) && !nghttp2_session_want_write(session_);
}

bool Http2Codec::WantsRead() const {
  return !fatal_ && nghttp2_session_want_read(session_);
}

void Http2Codec::GoAway() {
  if (goaway_sent_ || fatal_) return;
  goaway_sent_ = true;
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE,
                        nghttp2_session_get_last_proc_stream_id(session_), NGHTTP2_NO_ERROR,
                        nullptr, 0);
  Output();
}

void Http2Codec::OnConnectionClosed(ResetReason reason) {
  fatal_ = true;
  for (auto& [id, stream] : streams_) {
    const bool complete = stream->local_ended && stream->remote_ended;
    if (stream->reset || complete) continue;
    stream->reset = true;
    if (stream->callbacks) stream->callbacks->OnReset(reason, "connection closed");
  }
  for (auto& [id, stream] : streams_) closed_.push_back(std::move(stream));
  streams_.clear();
}

void Http2Codec::Output() {
  if (!in_session_) owner_.OnCodecOutput();
}

Http2ServerCodec::Http2ServerCodec(CodecOwner& owner, ServerCodecCallbacks& callbacks,
                                   const CodecLimits& limits, bool tls)
    : Http2Codec(owner, limits, true), callbacks_(callbacks), tls_(tls) {}

Http2ServerCodec::~Http2ServerCodec() = default;

Http2ClientCodec::Http2ClientCodec(CodecOwner& owner, const CodecLimits& limits)
    : Http2Codec(owner, limits, false) {}

Http2ClientCodec::~Http2ClientCodec() = default;

uint32_t Http2ClientCodec::max_concurrent_streams() const {
  uint32_t remote =
      nghttp2_session_get_remote_settings(session_, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
  return std::min(remote, limits_.max_concurrent_streams);
}

bool Http2ClientCodec::CanOpenStream() const {
  return Reusable() && streams_.size() + unsubmitted_.size() < max_concurrent_streams();
}

RequestEncoder& Http2ClientCodec::NewStream(ResponseDecoder& decoder) {
  std::erase_if(unsubmitted_, [](const auto& s) { return s->reset; });
  unsubmitted_.push_back(std::make_unique<Http2Stream>(*this, nullptr, &decoder));
  return *unsubmitted_.back();
}

void Http2ClientCodec::Submitted(Http2Stream* stream) {
  for (auto it = unsubmitted_.begin(); it != unsubmitted_.end(); ++it) {
    if (it->get() != stream) continue;
    streams_[stream->id] = std::move(*it);
    unsubmitted_.erase(it);
    return;
  }
}

}  // namespace mesh::dataplane
