#include "dataplane/telemetry/access_log.h"

#include <catch2/catch.hpp>

#include "google/protobuf/struct.pb.h"
#include "nlohmann/json.hpp"

namespace mesh::dataplane::telemetry {
namespace {

AccessLogEntry Entry(HeaderMap* request, HeaderMap* response) {
  request->Add(":method", "GET");
  request->Add(":path", "/ping?x=1");
  request->Add(":authority", "httpbin:8000");
  request->Add("user-agent", "curl/7.88");
  request->Add("x-request-id", "0b5e8a1c-7d1e-4a53-9b2f-6a0c3f2b1e44");
  response->Add("content-type", "text/plain");
  AccessLogEntry e;
  e.start = absl::FromUnixMillis(1764763200123);  // 2025-12-03T12:00:00.123Z
  e.duration = absl::Milliseconds(42);
  e.protocol = "HTTP/1.1";
  e.request = request;
  e.response = response;
  e.response_code = 503;
  e.response_flags = "UF";
  e.response_code_details = "upstream_reset_before_response_started{connection_failure}";
  e.bytes_received = 5;
  e.bytes_sent = 91;
  e.upstream_cluster = "outbound|8000||httpbin.default.svc.cluster.local";
  e.downstream_remote_address = "10.0.0.7:51234";
  return e;
}

TEST_CASE("Access log: Envoy's default format, operator by operator") {
  HeaderMap req, resp;
  AccessLogEntry e = Entry(&req, &resp);
  auto format = AccessLogFormat::Text(AccessLogFormat::kEnvoyDefault);
  REQUIRE(format.ok());
  CHECK(format->Format(e) ==
        "[2025-12-03T12:00:00.123Z] \"GET /ping?x=1 HTTP/1.1\" 503 UF 5 91 42 - \"-\" "
        "\"curl/7.88\" \"0b5e8a1c-7d1e-4a53-9b2f-6a0c3f2b1e44\" \"httpbin:8000\" \"-\"\n");
  // Only what the format reads is kept by a stream.
  CHECK(format->request_headers() ==
        std::vector<std::string>{":method", "x-envoy-original-path", ":path", "x-forwarded-for",
                                 "user-agent", "x-request-id", ":authority"});
  CHECK(format->response_headers() == std::vector<std::string>{"x-envoy-upstream-service-time"});
}

TEST_CASE("Access log: operators with arguments, lengths, and refusals") {
  HeaderMap req, resp;
  AccessLogEntry e = Entry(&req, &resp);
  auto f = AccessLogFormat::Text(
      "%START_TIME(%Y)% %REQ(USER-AGENT):4% %RESP(CONTENT-TYPE)% "
      "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_"
      "PORT% %UPSTREAM_CLUSTER% 100%% %ROUTE_NAME%");
  REQUIRE(f.ok());
  CHECK(f->Format(e) ==
        "2025 curl text/plain 10.0.0.7 outbound|8000||httpbin.default.svc.cluster.local 100% -");
  CHECK(AccessLogFormat::Text("%NOT_AN_OPERATOR%").status().message() ==
        "%NOT_AN_OPERATOR%: unknown operator");
  CHECK_FALSE(AccessLogFormat::Text("%REQ()%").ok());
  CHECK_FALSE(AccessLogFormat::Text("50% off").ok());
  // A TCP connection: no request, no headers.
  AccessLogEntry tcp;
  tcp.start = e.start;
  CHECK(AccessLogFormat::Text("%REQ(:METHOD)% %PROTOCOL% %BYTES_SENT%")->Format(tcp) == "- - 0");
}

TEST_CASE("Access log: JSON with typed numbers and null for unset values") {
  HeaderMap req, resp;
  AccessLogEntry e = Entry(&req, &resp);
  google::protobuf::Struct fields;
  auto set = [&](const char* k, const char* v) {
    (*fields.mutable_fields())[k].set_string_value(v);
  };
  set("code", "%RESPONSE_CODE%");
  set("flags", "%RESPONSE_FLAGS%");
  set("path", "%REQ(:PATH)%");
  set("host", "%UPSTREAM_HOST%");
  set("line", "%REQ(:METHOD)% %REQ(:PATH)%");
  auto f = AccessLogFormat::Json(fields);
  REQUIRE(f.ok());
  std::string line = f->Format(e);
  CHECK(line.back() == '\n');
  nlohmann::json j = nlohmann::json::parse(line);
  CHECK(j["code"] == 503);
  CHECK(j["flags"] == "UF");
  CHECK(j["path"] == "/ping?x=1");
  CHECK(j["host"].is_null());
  CHECK(j["line"] == "GET /ping?x=1");
  e.response_flags = "";
  CHECK(nlohmann::json::parse(f->Format(e))["flags"].is_null());
  set("bad", "%BOGUS%");
  CHECK(AccessLogFormat::Json(fields).status().message() ==
        "json_format.bad: %BOGUS%: unknown operator");
}

TEST_CASE("Access log: a sink writes lines in order, and drops past its buffer") {
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  {
    AccessLogSink sink(fds[1], false, 64);
    const uint64_t dropped = AccessLogSink::TotalDropped();
    sink.Write("one\n");
    sink.Write("two\n");
    sink.Write(std::string(100, 'x') + "\n");  // over the 64-byte buffer: dropped
    CHECK(AccessLogSink::TotalDropped() == dropped + 1);
  }  // the destructor writes what is left
  close(fds[1]);
  std::string got;
  char buf[256];
  for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) > 0;) got.append(buf, n);
  close(fds[0]);
  CHECK(got == "one\ntwo\n");
}

}  // namespace
}  // namespace mesh::dataplane::telemetry
