#include "dataplane/codec/http1_client_codec.h"

#include <catch2/catch.hpp>

#include "absl/strings/match.h"
#include "test/unit/dataplane/codec/codec_recorder.h"

namespace mesh::dataplane {
namespace {

using testing::Drain;
using testing::Feed;
using Log = std::vector<std::string>;

struct Client {
  testing::RecordingOwner owner;
  CodecLimits limits;
  Http1ClientCodec codec{owner, limits};
  Log log;
  testing::RecordingResponseDecoder decoder{log};
  testing::RecordingCallbacks callbacks{log};

  RequestEncoder& Open() {
    RequestEncoder& encoder = codec.NewStream(decoder);
    encoder.stream().SetCallbacks(&callbacks);
    return encoder;
  }
};

RequestHead Request(std::string method, std::string path,
                    std::initializer_list<std::pair<const char*, const char*>> fields = {}) {
  RequestHead head;
  head.method = std::move(method);
  head.scheme = "http";
  head.authority = "backend:8080";
  head.path = std::move(path);
  for (const auto& [name, value] : fields) head.headers.Add(name, value);
  return head;
}

TEST_CASE("HTTP/1.1 client codec: request heads carry Host and the framing the body needs") {
  Client known;
  RequestEncoder& a = known.Open();
  a.EncodeHeaders(Request("POST", "/a", {{"content-length", "3"}, {"x-b3", "1"}}), false);
  a.EncodeData("abc", true);
  CHECK(Drain(known.codec) ==
        "POST /a HTTP/1.1\r\nhost: backend:8080\r\nx-b3: 1\r\ncontent-length: 3\r\n\r\nabc");

  Client streamed;  // from HTTP/2, where a body need not announce its length
  RequestEncoder& b = streamed.Open();
  b.EncodeHeaders(Request("POST", "/b", {{"te", "trailers"}}), false);
  b.EncodeData("xy", false);
  b.EncodeData("", true);
  CHECK(Drain(streamed.codec) ==
        "POST /b HTTP/1.1\r\nhost: backend:8080\r\ntransfer-encoding: chunked\r\n\r\n"
        "2\r\nxy\r\n0\r\n\r\n");

  Client empty;
  empty.Open().EncodeHeaders(Request("PUT", "/c"), true);
  CHECK(Drain(empty.codec) == "PUT /c HTTP/1.1\r\nhost: backend:8080\r\ncontent-length: 0\r\n\r\n");
}

TEST_CASE("HTTP/1.1 client codec: interim answers are dropped, the final response delivered") {
  const bool byte_by_byte = GENERATE(false, true);
  Client c;
  c.Open().EncodeHeaders(Request("GET", "/"), true);
  CHECK(Feed(c.codec,
             "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n"
             "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: 1\r\n\r\nok",
             byte_by_byte) == "");
  REQUIRE(c.log.size() >= 2);
  CHECK(c.log[0] == "headers 200 content-length=2 x-a=1");
  std::string body;
  for (size_t i = 1; i < c.log.size(); ++i) body += c.log[i].substr(5);
  CHECK(body == "ok END");
  CHECK(absl::EndsWith(c.log.back(), " END"));
  CHECK(c.codec.ActiveStreams() == 0);
  CHECK(c.codec.Reusable());
}

TEST_CASE("HTTP/1.1 client codec: chunked responses with trailers, and HEAD without a body") {
  Client c;
  c.Open().EncodeHeaders(Request("GET", "/"), true);
  CHECK(Feed(c.codec,
             "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
             "2\r\nhi\r\n0\r\ngrpc-status: 0\r\n\r\n",
             false) == "");
  CHECK(c.log == Log{"headers 200 transfer-encoding=chunked", "data hi", "trailers grpc-status=0"});
  CHECK(c.codec.Reusable());

  Client head;
  head.Open().EncodeHeaders(Request("HEAD", "/"), true);
  CHECK(Feed(head.codec, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", false) == "");
  CHECK(head.log == Log{"headers 200 content-length=10 END"});
  CHECK(head.codec.ActiveStreams() == 0);
}

TEST_CASE("HTTP/1.1 client codec: responses that break the rules reset the stream") {
  struct Case {
    std::string response, reset;
  };
  const Case cases[] = {
      {"HTTP/1.1 200 OK\r\nConnection: Content-Length\r\nContent-Length: 2\r\n\r\nok",
       "reset protocol error: Connection may not nominate Content-Length"},
      {"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n",
       "reset protocol error: upstream switched protocols without being asked"},
      {"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
       "reset protocol error: transfer coding \"gzip\" is not supported"},
      {std::string(9 * 30, ' '), "reset protocol error: bad version"},
      // Found by fuzz_http1: three digits that are no status.
      {"HTTP/1.0 000 OK\r\nConnection: close\r\n\r\n",
       "reset protocol error: invalid status code 0"},
  };
  for (const Case& k : cases) {
    INFO(k.response);
    Client c;
    c.Open().EncodeHeaders(Request("GET", "/"), true);
    CHECK(Feed(c.codec, k.response, false) != "");
    CHECK(c.log == Log{k.reset});
    CHECK_FALSE(c.codec.Reusable());
  }
}

TEST_CASE("HTTP/1.1 client codec: a connection with bytes beyond its response is never reused") {
  Client c;
  c.Open().EncodeHeaders(Request("GET", "/"), true);
  CHECK(Feed(c.codec, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n", false) ==
        "upstream sent bytes outside a response");
  CHECK_FALSE(c.codec.Reusable());

  Client idle;
  CHECK(Feed(idle.codec, "x", false) == "upstream sent bytes outside a response");
  CHECK_FALSE(idle.codec.Reusable());

  Client closing;
  closing.Open().EncodeHeaders(Request("GET", "/"), true);
  CHECK(Feed(closing.codec, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
             false) == "");
  CHECK_FALSE(closing.codec.Reusable());
}

TEST_CASE("HTTP/1.1 client codec: the connection closing ends a close-delimited body, or resets") {
  Client c;
  c.Open().EncodeHeaders(Request("GET", "/"), true);
  CHECK(Feed(c.codec, "HTTP/1.0 200 OK\r\n\r\nall of it", false) == "");
  c.codec.OnConnectionClosed(ResetReason::kRemote);
  CHECK(c.log == Log{"headers 200", "data all of it", "data  END"});

  Client cut;
  cut.Open().EncodeHeaders(Request("GET", "/"), true);
  CHECK(Feed(cut.codec, "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc", false) == "");
  cut.codec.OnConnectionClosed(ResetReason::kRemote);
  CHECK(cut.log.back() == "reset remote reset: upstream connection closed");
}

TEST_CASE("HTTP/1.1 client codec: an upgrade's 101 turns the connection into a tunnel") {
  Client c;
  RequestEncoder& encoder = c.Open();
  RequestHead head = Request("GET", "/ws", {{"sec-websocket-key", "k"}});
  head.upgrade = "websocket";
  encoder.EncodeHeaders(head, false);
  CHECK(Drain(c.codec) ==
        "GET /ws HTTP/1.1\r\nhost: backend:8080\r\nsec-websocket-key: k\r\n"
        "connection: upgrade\r\nupgrade: websocket\r\n\r\n");
  CHECK(Feed(c.codec,
             "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n"
             "\r\n\x81\x01z",
             false) == "");
  CHECK(c.log == Log{"headers 101 connection=upgrade upgrade=websocket", "data \x81\x01z"});
  encoder.EncodeData("\x81\x01q", false);
  CHECK(Drain(c.codec) == "\x81\x01q");
  CHECK_FALSE(c.codec.Reusable());
}

}  // namespace
}  // namespace mesh::dataplane
