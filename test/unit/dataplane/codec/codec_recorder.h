#pragma once

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "dataplane/codec/codec.h"

// Test doubles for the codec tests: an owner that counts notifications, and decoders that write
// every event they receive as one line, so a test asserts the exact sequence.
namespace mesh::dataplane::testing {

inline std::string Describe(const HeaderMap& headers) {
  std::string out;
  for (const auto& f : headers) absl::StrAppend(&out, " ", f.name, "=", f.value);
  return out;
}

class RecordingOwner : public CodecOwner {
 public:
  void OnCodecOutput() override { ++outputs; }
  void OnCodecReadResumed() override { ++resumed; }
  int outputs = 0, resumed = 0;
};

class RecordingCallbacks : public StreamCallbacks {
 public:
  explicit RecordingCallbacks(std::vector<std::string>& log) : log_(log) {}
  void OnReset(ResetReason reason, absl::string_view detail) override {
    log_.push_back(absl::StrCat("reset ", ResetReasonName(reason), ": ", detail));
  }

 private:
  std::vector<std::string>& log_;
};

// Records a request stream's events; `on_headers` runs after the head is recorded (a test's
// chance to answer at once, as a local reply does).
class RecordingRequestDecoder : public RequestDecoder {
 public:
  RecordingRequestDecoder(std::vector<std::string>& log, ResponseEncoder& encoder)
      : log_(log), encoder_(encoder), callbacks_(log) {
    encoder_.stream().SetCallbacks(&callbacks_);
  }
  void DecodeHeaders(RequestHeadPtr head, bool end_stream) override {
    log_.push_back(absl::StrCat("headers ", head->method, " ", head->scheme, "://", head->authority,
                                head->path, " ", ProtocolName(head->protocol),
                                head->upgrade.empty() ? "" : " upgrade=" + head->upgrade,
                                Describe(head->headers), end_stream ? " END" : ""));
    this->head = std::move(head);
  }
  void DecodeData(absl::string_view data, bool end_stream) override {
    log_.push_back(absl::StrCat("data ", data, end_stream ? " END" : ""));
  }
  void DecodeTrailers(HeaderMap trailers) override {
    log_.push_back(absl::StrCat("trailers", Describe(trailers)));
  }
  ResponseEncoder& encoder() { return encoder_; }
  RequestHeadPtr head;

 private:
  std::vector<std::string>& log_;
  ResponseEncoder& encoder_;
  RecordingCallbacks callbacks_;
};

class RecordingServer : public ServerCodecCallbacks {
 public:
  RequestDecoder& NewStream(ResponseEncoder& encoder) override {
    streams.push_back(std::make_unique<RecordingRequestDecoder>(log, encoder));
    return *streams.back();
  }
  RecordingRequestDecoder& last() { return *streams.back(); }
  std::vector<std::string> log;
  std::vector<std::unique_ptr<RecordingRequestDecoder>> streams;
};

class RecordingResponseDecoder : public ResponseDecoder {
 public:
  explicit RecordingResponseDecoder(std::vector<std::string>& log) : log_(log) {}
  void DecodeHeaders(ResponseHeadPtr head, bool end_stream) override {
    log_.push_back(
        absl::StrCat("headers ", head->status, Describe(head->headers), end_stream ? " END" : ""));
  }
  void DecodeData(absl::string_view data, bool end_stream) override {
    log_.push_back(absl::StrCat("data ", data, end_stream ? " END" : ""));
  }
  void DecodeTrailers(HeaderMap trailers) override {
    log_.push_back(absl::StrCat("trailers", Describe(trailers)));
  }

 private:
  std::vector<std::string>& log_;
};

// Feeds `bytes` to `codec` as a connection would: all at once, or one byte at a time (keeping
// what the codec did not consume for the next read). Returns the first error, or "".
inline std::string Feed(Codec& codec, absl::string_view bytes, bool byte_by_byte) {
  std::string held;
  size_t next = 0;
  while (next < bytes.size()) {
    size_t take = byte_by_byte ? 1 : bytes.size() - next;
    absl::StrAppend(&held, bytes.substr(next, take));
    next += take;
    absl::StatusOr<size_t> used = codec.Dispatch(held);
    if (!used.ok()) return std::string(used.status().message());
    held.erase(0, *used);
  }
  return held.empty() ? "" : absl::StrCat("unconsumed: ", held);
}

// Everything the codec wants written, taken.
inline std::string Drain(Codec& codec) {
  std::string out;
  for (absl::string_view next = codec.PendingOutput(); !next.empty();
       next = codec.PendingOutput()) {
    absl::StrAppend(&out, next);
    codec.ConsumeOutput(next.size());
  }
  return out;
}

}  // namespace mesh::dataplane::testing
