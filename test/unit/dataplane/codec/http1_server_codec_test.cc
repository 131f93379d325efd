#include "dataplane/codec/http1_server_codec.h"

#include <catch2/catch.hpp>

#include "absl/strings/match.h"
#include "test/unit/dataplane/codec/codec_recorder.h"

namespace mesh::dataplane {
namespace {

using testing::Drain;
using testing::Feed;
using Log = std::vector<std::string>;

struct Server {
  testing::RecordingOwner owner;
  testing::RecordingServer streams;
  CodecLimits limits;
  Http1ServerCodec codec{owner, streams, limits, false};
};

ResponseHead Head(int status, std::initializer_list<std::pair<const char*, const char*>> fields) {
  ResponseHead head;
  head.status = status;
  for (const auto& [name, value] : fields) head.headers.Add(name, value);
  return head;
}

TEST_CASE("HTTP/1.1 server codec: a request arrives as one stream, fed whole or byte by byte") {
  const bool byte_by_byte = GENERATE(false, true);
  Server s;
  CHECK(Feed(s.codec,
             "POST /orders?x=1 HTTP/1.1\r\nHost: shop:8080\r\nUser-Agent: t\r\n"
             "Content-Length: 5\r\n\r\nhello",
             byte_by_byte) == "");
  REQUIRE(s.streams.log.size() >= 2);
  CHECK(s.streams.log[0] ==
        "headers POST http://shop:8080/orders?x=1 HTTP/1.1 user-agent=t content-length=5");
  std::string body;
  for (size_t i = 1; i < s.streams.log.size(); ++i) body += s.streams.log[i] + "|";
  if (byte_by_byte) {
    CHECK(body == "data h|data e|data l|data l|data o END|");
  } else {
    CHECK(body == "data hello END|");
  }
  CHECK(s.codec.ActiveStreams() == 1);
  ResponseEncoder& encoder = s.streams.last().encoder();
  encoder.EncodeHeaders(Head(201, {{"content-length", "2"}, {"x-id", "7"}}), false);
  encoder.EncodeData("ok", true);
  CHECK(Drain(s.codec) == "HTTP/1.1 201 Created\r\nx-id: 7\r\ncontent-length: 2\r\n\r\nok");
  CHECK(s.codec.ActiveStreams() == 0);
  CHECK_FALSE(s.codec.WantsClose());
}

TEST_CASE("HTTP/1.1 server codec: chunked bodies and trailers, in and out") {
  const bool byte_by_byte = GENERATE(false, true);
  Server s;
  CHECK(Feed(s.codec,
             "PUT /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
             "3\r\nabc\r\n0\r\nx-sum: 9\r\n\r\n",
             byte_by_byte) == "");
  CHECK(s.streams.log.front() == "headers PUT http://a/u HTTP/1.1 transfer-encoding=chunked");
  CHECK(s.streams.log.back() == "trailers x-sum=9");
  ResponseEncoder& encoder = s.streams.last().encoder();
  encoder.EncodeHeaders(Head(200, {{"content-type", "text/plain"}}), false);
  encoder.EncodeData("hello", false);
  HeaderMap trailers;
  trailers.Add("grpc-status", "0");
  encoder.EncodeTrailers(trailers);
  CHECK(Drain(s.codec) ==
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n"
        "5\r\nhello\r\n0\r\ngrpc-status: 0\r\n\r\n");
  CHECK(s.codec.ActiveStreams() == 0);
}

TEST_CASE("HTTP/1.1 server codec: a pipelined request waits until the response before it ends") {
  Server s;
  const std::string two = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n";
  absl::StatusOr<size_t> used = s.codec.Dispatch(two);
  REQUIRE(used.ok());
  CHECK(*used == two.size() / 2);  // the second request is not parsed yet
  CHECK(s.streams.log == Log{"headers GET http://a/1 HTTP/1.1 END"});
  s.streams.last().encoder().EncodeHeaders(Head(204, {}), true);
  CHECK(s.owner.resumed == 1);  // the owner offers the held bytes again
  used = s.codec.Dispatch(absl::string_view(two).substr(*used));
  REQUIRE(used.ok());
  CHECK(s.streams.log.back() == "headers GET http://a/2 HTTP/1.1 END");
  CHECK(Drain(s.codec) == "HTTP/1.1 204 No Content\r\n\r\n");
}

TEST_CASE("HTTP/1.1 server codec: requests it refuses are answered and the connection closes") {
  struct Case {
    std::string request, answer;
  };
  const Case cases[] = {
      {"POST / HTTP/1.1\r\nHost: a\r\nConnection: Content-Length\r\nContent-Length: 3\r\n\r\nabc",
       "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: 56\r\nconnection: "
       "close\r\n\r\nbad request: Connection may not nominate Content-Length\n"},
      {"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
       "HTTP/1.1 501 Not Implemented\r\ncontent-type: text/plain\r\ncontent-length: 57\r\n"
       "connection: close\r\n\r\nnot implemented: transfer coding \"gzip\" is not supported\n"},
      {"GET / HTTP/1.1\r\n\r\n",
       "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: 26\r\nconnection: "
       "close\r\n\r\nbad request: missing Host\n"},
      {"CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n",
       "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: 40\r\nconnection: "
       "close\r\n\r\nbad request: unsupported request target\n"},
  };
  for (const Case& c : cases) {
    INFO(c.request);
    Server s;
    CHECK(Feed(s.codec, c.request, false) != "");
    CHECK(s.streams.log.empty());
    CHECK(Drain(s.codec) == c.answer);
    CHECK(s.codec.WantsClose());
  }
  Server big;
  big.limits.max_header_bytes = 64;
  Http1ServerCodec small(big.owner, big.streams, big.limits, false);
  CHECK(Feed(small, "GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + std::string(100, 'x') + "\r\n\r\n",
             false) != "");
  CHECK(absl::StartsWith(Drain(small), "HTTP/1.1 431 Request Header Fields Too Large\r\n"));
}

TEST_CASE("HTTP/1.1 server codec: a broken chunked body resets the stream and answers 400") {
  Server s;
  CHECK(Feed(s.codec, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
             false) != "");
  CHECK(s.streams.log.back() == "reset protocol error: bad chunk");
  CHECK(absl::StartsWith(Drain(s.codec), "HTTP/1.1 400 Bad Request\r\n"));
  CHECK(s.codec.WantsClose());
}

TEST_CASE("HTTP/1.1 server codec: Expect 100-continue is answered at once") {
  Server s;
  CHECK(Feed(s.codec,
             "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
             false) == "");
  CHECK(s.streams.log == Log{"headers POST http://a/ HTTP/1.1 content-length=2"});
  CHECK(Drain(s.codec) == "HTTP/1.1 100 Continue\r\n\r\n");
}

TEST_CASE("HTTP/1.1 server codec: framing for HTTP/1.0 clients, HEAD and absolute targets") {
  Server s;
  CHECK(Feed(s.codec, "GET http://b:81/x HTTP/1.0\r\n\r\n", false) == "");
  CHECK(s.streams.log == Log{"headers GET http://b:81/x HTTP/1.0 END"});
  ResponseEncoder& encoder = s.streams.last().encoder();
  encoder.EncodeHeaders(Head(200, {}), false);
  encoder.EncodeData("body", true);
  CHECK(Drain(s.codec) == "HTTP/1.0 200 OK\r\nconnection: close\r\n\r\nbody");
  CHECK(s.codec.WantsClose());

  Server head;
  CHECK(Feed(head.codec, "HEAD / HTTP/1.1\r\nHost: a\r\n\r\n", false) == "");
  head.streams.last().encoder().EncodeHeaders(Head(200, {{"content-length", "10"}}), true);
  CHECK(Drain(head.codec) == "HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n");
  CHECK_FALSE(head.codec.WantsClose());
}

TEST_CASE("HTTP/1.1 server codec: a WebSocket upgrade becomes a tunnel after the 101") {
  Server s;
  CHECK(Feed(s.codec,
             "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
             "Sec-WebSocket-Key: k\r\n\r\n",
             false) == "");
  CHECK(s.streams.log.front() ==
        "headers GET http://a/ws HTTP/1.1 upgrade=websocket connection=Upgrade "
        "upgrade=websocket sec-websocket-key=k");
  ResponseEncoder& encoder = s.streams.last().encoder();
  encoder.EncodeHeaders(Head(101, {{"upgrade", "websocket"}, {"sec-websocket-accept", "x"}}),
                        false);
  CHECK(Drain(s.codec) ==
        "HTTP/1.1 101 Switching Protocols\r\nsec-websocket-accept: x\r\nconnection: upgrade\r\n"
        "upgrade: websocket\r\n\r\n");
  CHECK(Feed(s.codec, "\x81\x02hi", false) == "");
  CHECK(s.streams.log.back() == "data \x81\x02hi");
  encoder.EncodeData("\x81\x02yo", false);
  CHECK(Drain(s.codec) == "\x81\x02yo");
}

TEST_CASE("HTTP/1.1 server codec: a client that leaves mid-request resets its stream") {
  Server s;
  CHECK(Feed(s.codec, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9\r\n\r\nabc", false) == "");
  s.codec.OnConnectionClosed(ResetReason::kRemote);
  CHECK(s.streams.log.back() == "reset remote reset: downstream connection closed");
  CHECK(s.codec.ActiveStreams() == 0);
}

}  // namespace
}  // namespace mesh::dataplane
