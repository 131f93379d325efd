// libFuzzer: frames from a client into meshproxy's HTTP/2 server codec (after a valid preface),
// each request answered at once, then the same bytes as a server's frames into the client codec.
// Nothing may crash, and a broken connection must end up wanting to close.
#include <cstdlib>

#include "dataplane/codec/http2_codec.h"

namespace dp = mesh::dataplane;

namespace {

constexpr absl::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

struct Owner : dp::CodecOwner {
  void OnCodecOutput() override {}
};

struct Answering : dp::ServerCodecCallbacks {
  struct Stream : dp::RequestDecoder {
    dp::ResponseEncoder* encoder = nullptr;
    void DecodeHeaders(dp::RequestHeadPtr head, bool) override {
      if (head->protocol != dp::HttpProtocol::kHttp2) std::abort();
      dp::ResponseHead response;
      encoder->EncodeHeaders(response, false);
      encoder->EncodeData("ok", true);
    }
    void DecodeData(absl::string_view, bool) override {}
    void DecodeTrailers(dp::HeaderMap) override {}
  };
  std::vector<std::unique_ptr<Stream>> streams;
  dp::RequestDecoder& NewStream(dp::ResponseEncoder& encoder) override {
    streams.push_back(std::make_unique<Stream>());
    streams.back()->encoder = &encoder;
    return *streams.back();
  }
};

struct Ignoring : dp::ResponseDecoder {
  void DecodeHeaders(dp::ResponseHeadPtr, bool) override {}
  void DecodeData(absl::string_view, bool) override {}
  void DecodeTrailers(dp::HeaderMap) override {}
};

void Drain(dp::Codec& codec) {
  for (absl::string_view next = codec.PendingOutput(); !next.empty(); next = codec.PendingOutput())
    codec.ConsumeOutput(next.size());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  dp::CodecLimits limits;
  limits.max_header_bytes = 4096;
  {
    Owner owner;
    Answering answering;
    dp::Http2ServerCodec server(owner, answering, limits, false);
    bool ok = server.Dispatch(kPreface).ok();
    ok = ok && server.Dispatch(bytes).ok();
    Drain(server);
    if (!ok && !server.WantsClose()) std::abort();
    server.OnConnectionClosed(dp::ResetReason::kRemote);
  }
  {
    Owner owner;
    dp::Http2ClientCodec client(owner, limits);
    Ignoring ignoring;
    dp::RequestHead request;
    request.method = "GET";
    request.scheme = "http";
    request.authority = "a";
    request.path = "/";
    client.NewStream(ignoring).EncodeHeaders(request, true);
    Drain(client);
    bool ok = client.Dispatch(bytes).ok();
    Drain(client);
    if (!ok && client.Reusable()) std::abort();
    client.OnConnectionClosed(dp::ResetReason::kRemote);
  }
  return 0;
}
