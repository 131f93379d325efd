#pragma once

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "dataplane/upstream/connection_source.h"

namespace mesh::dataplane::testing {

using Log = std::vector<std::string>;

// An upstream stream that writes what it is sent to the test's log.
class FakeEncoder : public RequestEncoder, public Stream {
 public:
  FakeEncoder(Log& log, int attempt) : log_(log), attempt_(attempt) {}
  Stream& stream() override { return *this; }
  void EncodeHeaders(const RequestHead& head, bool end) override {
    log_.push_back(
        absl::StrCat(attempt_, ": headers ", head.method, " ", head.path, end ? " END" : ""));
  }
  void EncodeData(absl::string_view data, bool end) override {
    log_.push_back(absl::StrCat(attempt_, ": data ", data, end ? " END" : ""));
  }
  void EncodeTrailers(const HeaderMap&) override {
    log_.push_back(absl::StrCat(attempt_, ": trailers"));
  }
  void SetCallbacks(StreamCallbacks* c) override { callbacks = c; }
  void Reset(ResetReason) override { log_.push_back(absl::StrCat(attempt_, ": reset")); }
  void ReadDisable(bool) override {}
  size_t BufferedBytes() const override { return 0; }
  StreamCallbacks* callbacks = nullptr;

 private:
  Log& log_;
  int attempt_;
};

// Pools that hand out streams when the test says so.
class FakePools : public ConnectionSource {
 public:
  struct Request {
    const Host* host;
    ResponseDecoder* decoder;
    PoolCallbacks* callbacks;
    bool cancelled = false;
  };
  class Pending : public PendingStream {
   public:
    explicit Pending(Request& r) : r_(r) {}
    ~Pending() override { r_.cancelled = true; }
    Request& r_;
  };
  PendingStreamPtr NewStream(const Cluster&, const Host& host, HttpProtocol, absl::Time,
                             ResponseDecoder& decoder, PoolCallbacks& callbacks) override {
    requests.push_back({&host, &decoder, &callbacks});
    return std::make_unique<Pending>(requests.back());
  }
  // Completes the latest request with a stream (on a connection used before, if `reused`);
  // returns its encoder.
  FakeEncoder& Ready(Log& log, bool reused = false) {
    encoders.push_back(std::make_unique<FakeEncoder>(log, static_cast<int>(requests.size())));
    requests.back().callbacks->OnPoolReady(*encoders.back(), HttpProtocol::kHttp11, reused);
    return *encoders.back();
  }
  std::deque<Request> requests;
  std::vector<std::unique_ptr<FakeEncoder>> encoders;
};

}  // namespace mesh::dataplane::testing
