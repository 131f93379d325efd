// libFuzzer: bytes from a client into meshproxy's HTTP/1.1 server codec, and the same bytes from
// an upstream into its client codec, as the proxy reads them. Nothing may crash; every request
// the server codec passes up is unambiguous (an authority, a path), and every refusal is a
// complete 4xx/5xx answer that closes the connection.
#include <cstdlib>
#include <memory>
#include <vector>

#include "dataplane/codec/http1_client_codec.h"
#include "dataplane/codec/http1_server_codec.h"

namespace dp = mesh::dataplane;

namespace {

struct Owner : dp::CodecOwner {
  void OnCodecOutput() override {}
};

// Answers every request as soon as it has its head, so pipelined requests keep parsing.
struct Answering : dp::ServerCodecCallbacks, dp::RequestDecoder {
  dp::ResponseEncoder* encoder = nullptr;
  int answered = 0;
  dp::RequestDecoder& NewStream(dp::ResponseEncoder& e) override {
    encoder = &e;
    return *this;
  }
  void DecodeHeaders(dp::RequestHeadPtr head, bool) override {
    if (head->path.empty() ||
        (head->protocol != dp::HttpProtocol::kHttp10 && head->authority.empty()))
      std::abort();
    dp::ResponseHead response;
    response.headers.Add("content-length", "0");
    encoder->EncodeHeaders(response, true);
    ++answered;
  }
  void DecodeData(absl::string_view, bool) override {}
  void DecodeTrailers(dp::HeaderMap) override {}
};

struct Ignoring : dp::ResponseDecoder {
  void DecodeHeaders(dp::ResponseHeadPtr head, bool) override {
    if (head->status < 100 || head->status > 999) std::abort();
  }
  void DecodeData(absl::string_view, bool) override {}
  void DecodeTrailers(dp::HeaderMap) override {}
};

// Feeds `bytes` in two reads split at `split`, keeping what the codec left for the next read.
template <class Codec>
bool Feed(Codec& codec, absl::string_view bytes, size_t split) {
  std::string held;
  for (absl::string_view piece : {bytes.substr(0, split), bytes.substr(split)}) {
    held.append(piece.data(), piece.size());
    absl::StatusOr<size_t> used = codec.Dispatch(held);
    if (!used.ok()) return false;
    held.erase(0, *used);
  }
  return true;
}

std::string Drain(dp::Codec& codec) {
  std::string out;
  for (absl::string_view next = codec.PendingOutput(); !next.empty();
       next = codec.PendingOutput()) {
    out.append(next.data(), next.size());
    codec.ConsumeOutput(next.size());
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  const size_t split = size ? data[0] % (size + 1) : 0;
  dp::CodecLimits limits;
  limits.max_header_bytes = 4096;
  {
    Owner owner;
    Answering answering;
    dp::Http1ServerCodec server(owner, answering, limits, false);
    if (!Feed(server, bytes, split)) {
      std::string out = Drain(server);
      if (!server.WantsClose()) std::abort();
      // Refused before any answer went out: the refusal is the answer. (A body that breaks after
      // its request was answered just ends the connection.)
      size_t last = out.find("HTTP/1.1 ");
      if (answering.answered == 0 &&
          (last == std::string::npos || (out[last + 9] != '4' && out[last + 9] != '5')))
        std::abort();
    }
    server.OnConnectionClosed(dp::ResetReason::kRemote);
  }
  {
    Owner owner;
    dp::Http1ClientCodec client(owner, limits);
    Ignoring ignoring;
    dp::RequestHead request;
    request.method = "GET";
    request.authority = "a";
    request.path = "/";
    client.NewStream(ignoring).EncodeHeaders(request, true);
    if (!Feed(client, bytes, split) && client.Reusable()) std::abort();
    client.OnConnectionClosed(dp::ResetReason::kRemote);
  }
  return 0;
}
