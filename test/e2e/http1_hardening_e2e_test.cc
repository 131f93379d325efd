// meshproxy's HTTP/1.1 edge under attack: request smuggling, response splitting and queue
// poisoning, against a real gateway and a backend that records every request it parses.
#include <catch2/catch.hpp>
#include <chrono>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "test/support/mesh.h"
#include "test/support/recording_backend.h"

namespace mesh::testing {
namespace {

using namespace std::chrono_literals;

// The smuggled request every vector tries to sneak past the gateway inside another's body.
const std::string kSmuggled = "GET /smuggled HTTP/1.1\r\nHost: internal.admin\r\n\r\n";

RecordingBackend::Answer Scripted(const std::string& target) {
  if (target == "/early-hints") {
    return {
        "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
        "HTTP/1.1 100 Continue\r\n\r\n"
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal"};
  }
  if (target == "/nominated-length") {
    return {"HTTP/1.1 200 OK\r\nConnection: Content-Length\r\nContent-Length: 5\r\n\r\nhello"};
  }
  if (target == "/switch") return {"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n"};
  if (target == "/then-stray") {
    // A server that answers, then sends a second response nobody asked for.
    return {"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst",
            "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\npoisoned", 50};
  }
  return {};
}

// A gateway (one worker, so every request shares one upstream pool) in front of service "web",
// whose one endpoint is the recording backend; outlier detection ejects after 2 errors.
struct EdgeMesh {
  EdgeMesh() : backend(Scripted) {
    mesh.Apply(absl::StrCat(
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n"
        "  ports: [{name: http, port: 8080}]\n---\n"
        "apiVersion: networking.istio.io/v1alpha3\nkind: WorkloadEntry\nmetadata: {name: web}\n"
        "spec: {address: 127.0.0.1, labels: {app: web}, ports: {http: ",
        backend.port(),
        "}}\n---\n"
        "apiVersion: networking.istio.io/v1alpha3\nkind: Gateway\nmetadata: {name: gw}\nspec:\n"
        "  selector: {istio: ingressgateway}\n"
        "  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]\n---\n"
        "apiVersion: networking.istio.io/v1alpha3\nkind: VirtualService\nmetadata: {name: web}\n"
        "spec:\n  hosts: ['*']\n  gateways: [gw]\n  http: [{route: [{destination: {host: web}}]}]\n"
        "---\napiVersion: networking.istio.io/v1alpha3\nkind: DestinationRule\n"
        "metadata: {name: web}\nspec:\n  host: web\n  trafficPolicy:\n    outlierDetection:\n"
        "      consecutive5xxErrors: 2\n      baseEjectionTime: 60s\n"
        "      maxEjectionPercent: 100\n"));
    gateway = &mesh.Gateway("ingressgateway", {"--concurrency", "1"});
    REQUIRE(mesh.WaitReady());
    REQUIRE(WaitFor([&] { return HttpGet(gateway->port, "/warm").status == 200; }, 10s));
  }
  std::string Send(const std::string& bytes, std::chrono::milliseconds timeout = 700ms) {
    return RawTcp("127.0.0.1", gateway->port, bytes, false, timeout);
  }
  static std::string StatusLine(const std::string& out) { return out.substr(0, out.find("\r\n")); }

  Mesh mesh;
  RecordingBackend backend;
  Mesh::Proxy* gateway = nullptr;
};

TEST_CASE(
    "No request is smuggled past the gateway by any framing vector of RFC 9112 or the "
    "smuggling literature") {
  EdgeMesh m;
  // Each vector carries kSmuggled where a proxy and a lenient server could disagree on framing.
  const std::string body = kSmuggled;
  const std::string len = std::to_string(body.size());
  const std::string chunked = absl::StrCat(absl::Hex(body.size()), "\r\n", body, "\r\n0\r\n\r\n");
  std::string nul = "GET /public HTTP/1.1\r\nHost: a\r\nX-A: b";
  nul += '\0';
  nul += "c\r\nContent-Length: " + len + "\r\n\r\n" + body;
  struct Vector {
    std::string name, bytes, answer;  // answer: the status line's code, "" for any
  };
  const std::vector<Vector> vectors = {
      {"Connection nominates Content-Length",
       "POST /public HTTP/1.1\r\nHost: a\r\nConnection: Content-Length\r\nContent-Length: " + len +
           "\r\n\r\n" + body,
       "400"},
      {"Connection nominates Transfer-Encoding",
       "POST /public HTTP/1.1\r\nHost: a\r\nConnection: Transfer-Encoding\r\nTransfer-Encoding: "
       "chunked\r\n\r\n" +
           chunked,
       "400"},
      {"Connection nominates Host", "GET /public HTTP/1.1\r\nHost: a\r\nConnection: Host\r\n\r\n",
       "400"},
      {"CL.TE",
       "POST /public HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: "
       "chunked\r\n\r\n0\r\n\r\n" +
           body,
       "400"},
      {"TE.CL",
       "POST /public HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: "
       "4\r\n\r\n" +
           chunked,
       "400"},
      {"TE xchunked",
       "POST /public HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n"
       "Content-Length: " +
           len + "\r\n\r\n" + body,
       ""},
      {"TE with a space before the colon",
       "POST /public HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\nContent-Length: " + len +
           "\r\n\r\n" + body,
       "400"},
      {"TE twice, the second unknown",
       "POST /public HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
       "x\r\n\r\n" +
           chunked,
       ""},
      {"TE chunked, identity",
       "POST /public HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, "
       "identity\r\n\r\n" +
           chunked,
       ""},
      {"TE identity, chunked",
       "POST /public HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity, "
       "chunked\r\n\r\n" +
           chunked,
       "501"},
      {"TE with a tab",
       "POST /public HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\tchunked\r\n\r\n" + chunked, ""},
      {"TE folded (obs-fold)",
       "POST /public HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n "
       "chunked\r\nContent-Length: " +
           len + "\r\n\r\n" + body,
       ""},
      {"TE with a bare LF",
       "POST /public HTTP/1.1\r\nHost: a\nTransfer-Encoding: chunked\r\n"
       "Content-Length: " +
           len + "\r\n\r\n" + body,
       ""},
      {"TE in an HTTP/1.0 request",
       "POST /public HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked, "400"},
      {"Content-Length twice, differing",
       "POST /public HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: " + len +
           "\r\n\r\n" + body,
       "400"},
      {"Content-Length as a list, differing",
       "POST /public HTTP/1.1\r\nHost: a\r\nContent-Length: 0, " + len + "\r\n\r\n" + body, "400"},
      {"Content-Length with a sign",
       "POST /public HTTP/1.1\r\nHost: a\r\nContent-Length: +" + len + "\r\n\r\n" + body, "400"},
      {"chunk size overflow",
       "POST /public HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
       "10000000000000005\r\n" +
           body + "\r\n0\r\n\r\n",
       "400"},
      {"chunk data without its CRLF",
       "POST /public HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: "
       "chunked\r\n\r\n2\r\nabcd\r\n0\r\n\r\n" +
           body,
       "400"},
      {"a trailer carrying Content-Length",
       "POST /public HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" +
           chunked.substr(0, chunked.size() - 2) + "Content-Length: 0\r\n\r\n",
       ""},
      {"a NUL in a header value", nul, "400"},
      {"two Host headers", "GET /public HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "400"},
      {"a Host with a space", "GET /public HTTP/1.1\r\nHost: a b\r\n\r\n", "400"},
  };
  for (const Vector& v : vectors) {
    INFO(v.name);
    std::string out = m.Send(v.bytes);
    std::string status = EdgeMesh::StatusLine(out);
    INFO(status);
    if (!v.answer.empty()) CHECK(absl::StartsWith(status, "HTTP/1.1 " + v.answer));
    // Whatever the answer, only one response came back and the connection was not reused for
    // the smuggled part.
    CHECK(absl::StrContains(out.substr(1), "HTTP/1.1 ") == false);
  }
  std::this_thread::sleep_for(300ms);
  INFO(absl::StrJoin(m.backend.Requests(), "\n"));
  CHECK(m.backend.Count("/smuggled") == 0);
  // "Content-Length: 5, 5" is forwarded as one normalized value.
  std::string out = m.Send("POST /listed HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello");
  CHECK(EdgeMesh::StatusLine(out) == "HTTP/1.1 200 OK");
  CHECK(m.backend.Count("/listed") == 1);
}

TEST_CASE("A client's broken body is its own 400 and never ejects a healthy backend") {
  EdgeMesh m;
  for (int i = 0; i < 4; ++i) {
    std::string out = m.Send(
        "POST /bad-chunk HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        "10000000000000005\r\nabc\r\n0\r\n\r\n");
    CHECK(EdgeMesh::StatusLine(out) == "HTTP/1.1 400 Bad Request");
  }
  Reply ok = HttpGet(m.gateway->port, "/after");
  CHECK(ok.status == 200);
  CHECK(ok.body == "ok /after");
  CHECK_FALSE(absl::StrContains(m.gateway->Admin("/clusters"), "failed_outlier_check"));
}

TEST_CASE(
    "Upstream interim responses are dropped, broken framing answers 502, and a stray "
    "response never reaches another request") {
  EdgeMesh m;
  Reply early = HttpGet(m.gateway->port, "/early-hints");
  CHECK(early.status == 200);
  CHECK(early.body == "final");

  std::string out = m.Send("GET /nominated-length HTTP/1.1\r\nHost: a\r\n\r\n");
  CHECK(EdgeMesh::StatusLine(out) == "HTTP/1.1 502 Bad Gateway");
  out = m.Send("GET /switch HTTP/1.1\r\nHost: a\r\n\r\n");
  CHECK(EdgeMesh::StatusLine(out) == "HTTP/1.1 502 Bad Gateway");

  // The stray response arrives while the connection idles in the pool; the next request, from
  // another client, must get its own answer.
  for (int i = 0; i < 5; ++i) {
    Reply first = HttpGet(m.gateway->port, "/then-stray");
    CHECK(first.body == "first");
    std::this_thread::sleep_for(100ms);
    Reply next = HttpGet(m.gateway->port, absl::StrCat("/next", i));
    CHECK(next.body == absl::StrCat("ok /next", i));
  }
}

}  // namespace
}  // namespace mesh::testing
