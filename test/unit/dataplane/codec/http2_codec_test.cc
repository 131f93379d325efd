#include "dataplane/codec/http2_codec.h"

#include <catch2/catch.hpp>

#include "absl/strings/match.h"
#include "test/unit/dataplane/codec/codec_recorder.h"

namespace mesh::dataplane {
namespace {

using Log = std::vector<std::string>;

// A client codec and a server codec joined in memory: Pump moves bytes both ways until neither
// has anything to say, in pieces of `piece` bytes (1: byte by byte).
struct Pair {
  explicit Pair(CodecLimits limits = {}) : limits(limits) {}
  CodecLimits limits;
  testing::RecordingOwner client_owner, server_owner;
  testing::RecordingServer server_streams;
  Http2ServerCodec server{server_owner, server_streams, limits, false};
  Http2ClientCodec client{client_owner, limits};
  Log client_log;
  testing::RecordingResponseDecoder response{client_log};
  testing::RecordingCallbacks client_callbacks{client_log};
  std::string server_error;

  void Pump(size_t piece = 1 << 20) {
    for (int rounds = 0; rounds < 100000; ++rounds) {
      bool moved = Move(client, server, piece, &server_error);
      moved = Move(server, client, piece, nullptr) || moved;
      if (!moved) return;
    }
  }
  static bool Move(Codec& from, Codec& to, size_t piece, std::string* error) {
    std::string bytes = testing::Drain(from);
    for (size_t at = 0; at < bytes.size(); at += piece) {
      absl::StatusOr<size_t> used = to.Dispatch(absl::string_view(bytes).substr(at, piece));
      if (!used.ok()) {
        if (error) *error = std::string(used.status().message());
        return false;
      }
    }
    return !bytes.empty();
  }
  RequestEncoder& Open() {
    RequestEncoder& encoder = client.NewStream(response);
    encoder.stream().SetCallbacks(&client_callbacks);
    return encoder;
  }
};

RequestHead Grpc() {
  RequestHead head;
  head.method = "POST";
  head.scheme = "http";
  head.authority = "echo:9000";
  head.path = "/echo.Echo/Say";
  head.headers.Add("content-type", "application/grpc");
  head.headers.Add("te", "trailers");
  head.headers.Add("connection", "keep-alive");  // never sent over HTTP/2
  return head;
}

TEST_CASE("HTTP/2 codecs: a gRPC exchange with trailers, whole or byte by byte") {
  const size_t piece = GENERATE(size_t{1}, size_t{1} << 20);
  Pair p;
  RequestEncoder& request = p.Open();
  request.EncodeHeaders(Grpc(), false);
  request.EncodeData(std::string("\0\0\0\0\3abc", 8), false);
  HeaderMap request_trailers;
  request_trailers.Add("x-checksum", "1");
  request.EncodeTrailers(request_trailers);
  p.Pump(piece);
  REQUIRE(!p.server_streams.log.empty());
  CHECK(p.server_streams.log.front() ==
        "headers POST http://echo:9000/echo.Echo/Say HTTP/2 content-type=application/grpc "
        "te=trailers");
  CHECK(p.server_streams.log.back() == "trailers x-checksum=1");
  ResponseEncoder& response = p.server_streams.last().encoder();
  ResponseHead head;
  head.headers.Add("content-type", "application/grpc");
  response.EncodeHeaders(head, false);
  response.EncodeData("hello", false);
  HeaderMap trailers;
  trailers.Add("grpc-status", "0");
  response.EncodeTrailers(trailers);
  p.Pump(piece);
  CHECK(p.client_log.front() == "headers 200 content-type=application/grpc");
  CHECK(p.client_log.back() == "trailers grpc-status=0");
  CHECK(p.client.ActiveStreams() == 0);
  CHECK(p.server.ActiveStreams() == 0);
  CHECK(p.client.Reusable());
}

TEST_CASE("HTTP/2 codecs: a trailers-only response is one header block that ends the stream") {
  Pair p;
  p.Open().EncodeHeaders(Grpc(), true);
  p.Pump();
  ResponseHead head;
  head.headers.Add("content-type", "application/grpc");
  head.headers.Add("grpc-status", "14");
  p.server_streams.last().encoder().EncodeHeaders(head, true);
  p.Pump();
  CHECK(p.client_log == Log{"headers 200 content-type=application/grpc grpc-status=14 END"});
}

TEST_CASE("HTTP/2 server codec: split cookies are joined into one field") {
  Pair p;
  RequestHead head;
  head.method = "GET";
  head.scheme = "https";
  head.authority = "a";
  head.path = "/";
  head.headers.Add("cookie", "a=1");
  head.headers.Add("cookie", "b=2");
  p.Open().EncodeHeaders(head, true);
  p.Pump();
  REQUIRE(p.server_streams.streams.size() == 1);
  CHECK(p.server_streams.last().head->headers.Join("cookie") == "a=1; b=2");
  CHECK(p.server_streams.last().head->headers.Count("cookie") == 1);
}

TEST_CASE("HTTP/2 server codec: a header list over the limit is answered 431 here") {
  CodecLimits limits;
  limits.max_header_bytes = 200;
  Pair p(limits);
  RequestHead head = Grpc();
  head.headers.Add("x-big", std::string(300, 'x'));
  p.Open().EncodeHeaders(head, true);
  p.Pump();
  CHECK(p.server_streams.streams.empty());
  CHECK(p.client_log == Log{"headers 431 END"});
}

TEST_CASE("HTTP/2 flow control: a read-disabled stream holds the sender at its window") {
  CodecLimits limits;
  limits.initial_stream_window = 65535;
  Pair p(limits);
  RequestEncoder& request = p.Open();
  request.EncodeHeaders(Grpc(), false);
  p.Pump();
  p.server_streams.last().encoder().stream().ReadDisable(true);
  const std::string mib(1 << 20, 'x');
  request.EncodeData(mib, true);
  p.Pump();
  auto received = [&] {
    size_t n = 0;
    for (const std::string& line : p.server_streams.log) {
      if (absl::StartsWith(line, "data "))
        n += line.size() - 5 - (absl::EndsWith(line, " END") ? 4 : 0);
    }
    return n;
  };
  CHECK(received() <= 65535);
  CHECK(request.stream().BufferedBytes() >= mib.size() - 65535);
  p.server_streams.last().encoder().stream().ReadDisable(false);
  p.Pump();
  CHECK(received() == mib.size());
  CHECK(absl::EndsWith(p.server_streams.log.back(), " END"));
}

TEST_CASE("HTTP/2 codecs: a reset travels to the other side") {
  Pair p;
  RequestEncoder& request = p.Open();
  request.EncodeHeaders(Grpc(), false);
  p.Pump();
  request.stream().Reset(ResetReason::kLocal);
  p.Pump();
  CHECK(p.server_streams.log.back() == "reset remote reset: CANCEL");
  CHECK(p.server.ActiveStreams() == 0);
}

TEST_CASE("HTTP/2 server codec: bad bytes and floods end the connection") {
  Pair p;
  absl::StatusOr<size_t> http1 = p.server.Dispatch("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  CHECK_FALSE(http1.ok());
  CHECK(p.server.WantsClose() == p.server.PendingOutput().empty());

  // Rapid reset (CVE-2023-44487): streams opened and cancelled at once, thousands of times.
  Pair attacked;
  int sent = 0;
  for (; sent < 3000 && attacked.client.Reusable(); ++sent) {
    RequestEncoder& request = attacked.Open();
    request.EncodeHeaders(Grpc(), false);
    attacked.Pump();  // (a stream reset before its HEADERS left is never sent at all)
    if (!attacked.client_log.empty()) break;  // refused: the stream is gone
    request.stream().Reset(ResetReason::kLocal);
    attacked.Pump();
  }
  CHECK(sent > 900);  // nghttp2's burst: 1000 resets
  CHECK(sent < 1100);
  CHECK(attacked.server.WantsClose());
  CHECK_FALSE(attacked.client.Reusable());  // it got the GOAWAY
}

TEST_CASE("HTTP/2 codecs: GOAWAY lets the stream in flight finish and refuses new ones") {
  Pair p;
  RequestEncoder& request = p.Open();
  request.EncodeHeaders(Grpc(), true);
  p.Pump();
  p.server.GoAway();
  p.Pump();
  CHECK_FALSE(p.client.CanOpenStream());
  ResponseHead head;
  p.server_streams.last().encoder().EncodeHeaders(head, true);
  p.Pump();
  CHECK(p.client_log == Log{"headers 200 END"});
  CHECK(p.server.WantsClose());
}

TEST_CASE("HTTP/2 client codec: opens no more streams than the server allows") {
  CodecLimits limits;
  limits.max_concurrent_streams = 2;
  Pair p(limits);
  p.Pump();  // SETTINGS exchanged
  CHECK(p.client.max_concurrent_streams() == 2);
  p.Open().EncodeHeaders(Grpc(), true);
  CHECK(p.client.CanOpenStream());
  p.Open().EncodeHeaders(Grpc(), true);
  CHECK_FALSE(p.client.CanOpenStream());
}

}  // namespace
}  // namespace mesh::dataplane
