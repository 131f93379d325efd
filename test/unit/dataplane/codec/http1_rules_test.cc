#include "dataplane/codec/http1_rules.h"

#include <catch2/catch.hpp>

namespace mesh::dataplane {
namespace {

HeaderMap Fields(std::initializer_list<std::pair<std::string, std::string>> lines) {
  HeaderMap f;
  for (const auto& [name, value] : lines) f.Add(name, value);
  return f;
}

// As the codec calls it: the Host lines apart from the other fields.
std::optional<MessageRefusal> CheckRequest(HeaderMap& f, unsigned version, Framing* framing) {
  const int hosts = static_cast<int>(f.Count("host"));
  const std::string host = hosts ? *f.Get("host") : "";
  f.Remove("host");
  return CheckRequestHeader(f, hosts, host, version, framing);
}

// The refusal's status and reason, or "ok".
std::string Request(HeaderMap f, unsigned version = 11, Framing* framing = nullptr) {
  Framing ignored;
  auto refusal = CheckRequest(f, version, framing ? framing : &ignored);
  return refusal ? std::to_string(refusal->status) + " " + refusal->reason : "ok";
}

TEST_CASE("Connection may nominate hop-by-hop headers, never framing or routing ones") {
  CHECK(Request(Fields({{"Host", "a"}, {"Connection", "keep-alive, x-trace, te"}})) == "ok");
  CHECK(Request(
            Fields({{"Host", "a"}, {"Connection", "Content-Length"}, {"Content-Length", "64"}})) ==
        "400 Connection may not nominate Content-Length");
  CHECK(Request(Fields({{"Host", "a"},
                        {"Connection", "close, transfer-encoding"},
                        {"Transfer-Encoding", "chunked"}})) ==
        "400 Connection may not nominate transfer-encoding");
  CHECK(Request(Fields({{"Host", "a"}, {"Connection", "Host"}})) ==
        "400 Connection may not nominate Host");
  CHECK(Request(Fields({{"Host", "a"}, {"Connection", "a b"}})) ==
        "400 invalid Connection token \"a b\"");
  CHECK(NominationAllowed("x-custom"));
  CHECK_FALSE(NominationAllowed("CONTENT-LENGTH"));
}

TEST_CASE("An HTTP/1.1 request needs exactly one valid Host") {
  CHECK(Request(Fields({})) == "400 missing Host");
  CHECK(Request(Fields({{"Host", "a"}, {"Host", "b"}})) == "400 more than one Host");
  CHECK(Request(Fields({{"Host", "a b"}})) == "400 invalid Host \"a b\"");
  CHECK(Request(Fields({{"Host", "pong.default.svc.cluster.local:8080"}})) == "ok");
  CHECK(Request(Fields({{"Host", "[::1]:80"}})) == "ok");
  CHECK(Request(Fields({}), 10) == "ok");  // HTTP/1.0 may go without
  CHECK(ValidHost("a-b.c_d~e:1"));
  CHECK_FALSE(ValidHost("a/b"));
  CHECK_FALSE(ValidHost("a:123456"));
  CHECK_FALSE(ValidHost("a:b"));
  CHECK_FALSE(ValidHost("[::1"));
  CHECK_FALSE(ValidHost(":80"));
}

TEST_CASE("Content-Length is one decimal value, normalized to one line") {
  Framing framing;
  HeaderMap f = Fields({{"Host", "a"}, {"Content-Length", "5, 5"}});
  CHECK(CheckRequest(f, 11, &framing) == std::nullopt);
  CHECK(framing.content_length == 5u);
  CHECK(f.Count("content-length") == 1);
  CHECK(*f.Get("content-length") == "5");
  CHECK(Request(Fields({{"Host", "a"}, {"Content-Length", "5, 6"}})) ==
        "400 Content-Length with differing values");
  CHECK(Request(Fields({{"Host", "a"}, {"Content-Length", "+5"}})) ==
        "400 invalid Content-Length \"+5\"");
  CHECK(Request(Fields({{"Host", "a"}, {"Content-Length", "0x10"}})) ==
        "400 invalid Content-Length \"0x10\"");
  CHECK(Request(Fields({{"Host", "a"}, {"Content-Length", "99999999999999999999999"}})) ==
        "400 invalid Content-Length \"99999999999999999999999\"");
}

TEST_CASE("Transfer-Encoding is chunked alone, and other codings and CL.TE are refused") {
  Framing framing;
  CHECK(Request(Fields({{"Host", "a"}, {"Transfer-Encoding", " Chunked "}}), 11, &framing) == "ok");
  CHECK(framing.chunked);
  CHECK(
      Request(Fields({{"Host", "a"}, {"Transfer-Encoding", "chunked"}, {"Content-Length", "3"}})) ==
      "400 both Content-Length and Transfer-Encoding");
  CHECK(Request(Fields({{"Host", "a"}, {"Transfer-Encoding", "gzip, chunked"}})) ==
        "501 transfer coding \"gzip\" is not supported");
  CHECK(Request(Fields({{"Host", "a"}, {"Transfer-Encoding", "xchunked"}})) ==
        "501 transfer coding \"xchunked\" is not supported");
  CHECK(Request(Fields(
            {{"Host", "a"}, {"Transfer-Encoding", "chunked"}, {"Transfer-Encoding", "x"}})) ==
        "501 transfer coding \"x\" is not supported");
  CHECK(Request(Fields({{"Host", "a"}, {"Transfer-Encoding", "chunked, chunked"}})) ==
        "400 Transfer-Encoding must be chunked, applied once");
  CHECK(Request(Fields({{"Transfer-Encoding", "chunked"}}), 10) ==
        "400 Transfer-Encoding in an HTTP/1.0 request");
}

TEST_CASE("Upstream responses: framing headers stay, TE wins over CL, 101 is refused") {
  Framing framing;
  HeaderMap nominated = Fields({{"Connection", "Content-Length"}, {"Content-Length", "5"}});
  auto refusal = CheckResponseHeader(nominated, 200, false, &framing);
  REQUIRE(refusal);
  CHECK(refusal->status == 502);
  CHECK(refusal->reason == "Connection may not nominate Content-Length");

  HeaderMap both = Fields({{"Transfer-Encoding", "chunked"}, {"Content-Length", "5"}});
  CHECK(CheckResponseHeader(both, 200, false, &framing) == std::nullopt);
  CHECK(framing.chunked);
  CHECK(both.Count("content-length") == 0);

  HeaderMap upgrade = Fields({});
  refusal = CheckResponseHeader(upgrade, 101, false, &framing);
  REQUIRE(refusal);
  CHECK(refusal->reason == "upstream switched protocols without being asked");
  CHECK(CheckResponseHeader(upgrade, 101, true, &framing) == std::nullopt);  // a WebSocket

  HeaderMap listed = Fields({{"Content-Length", "7,7"}});
  CHECK(CheckResponseHeader(listed, 200, false, &framing) == std::nullopt);
  CHECK(framing.content_length == 7u);
  CHECK(*listed.Get("content-length") == "7");
}

TEST_CASE("Request targets: origin and absolute forms, OPTIONS *, and nothing else") {
  std::string authority, path;
  REQUIRE(SplitRequestTarget("GET", "/p?q", &authority, &path));
  CHECK(authority.empty());
  CHECK(path == "/p?q");
  REQUIRE(SplitRequestTarget("GET", "http://reviews:9080/p?q", &authority, &path));
  CHECK(authority == "reviews:9080");
  CHECK(path == "/p?q");
  authority.clear();
  REQUIRE(SplitRequestTarget("GET", "HTTP://reviews", &authority, &path));
  CHECK(path == "/");
  REQUIRE(SplitRequestTarget("GET", "http://reviews?x=1", &authority, &path));
  CHECK(path == "/?x=1");
  REQUIRE(SplitRequestTarget("OPTIONS", "*", &authority, &path));
  CHECK_FALSE(SplitRequestTarget("GET", "*", &authority, &path));
  CHECK_FALSE(SplitRequestTarget("CONNECT", "reviews:9080", &authority, &path));
  CHECK_FALSE(SplitRequestTarget("GET", "ftp://x/", &authority, &path));
  CHECK_FALSE(SplitRequestTarget("GET", "http:///nohost", &authority, &path));
}

}  // namespace
}  // namespace mesh::dataplane
