// WebSocket through meshproxy, as Istio allows it by default: an HTTP/1.1 Upgrade through a
// gateway, and through two sidecars over mutual TLS. Client and server are Boost.Beast's.
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <catch2/catch.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "test/support/mesh.h"
#include "test/support/process.h"

namespace mesh::testing {
namespace {

using namespace std::chrono_literals;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;

// Opens a WebSocket to `address` (IP:PORT) for `host`/`path`, sends each message and returns
// the answers joined by "|", or "error: ..." at the first failure.
std::string Chat(const std::string& address, const std::string& host,
                 const std::vector<std::string>& messages) {
  try {
    asio::io_context io;
    size_t colon = address.rfind(':');
    int port = 0;
    if (!absl::SimpleAtoi(address.substr(colon + 1), &port)) return "error: bad address";
    websocket::stream<tcp::socket> ws(io);
    ws.next_layer().connect(tcp::endpoint(asio::ip::make_address(address.substr(0, colon)),
                                          static_cast<uint16_t>(port)));
    ws.handshake(host, "/chat");
    std::string out;
    for (const std::string& m : messages) {
      ws.write(asio::buffer(m));
      beast::flat_buffer answer;
      ws.read(answer);
      if (!out.empty()) out += "|";
      out += beast::buffers_to_string(answer.data());
    }
    ws.close(websocket::close_code::normal);
    return out;
  } catch (const std::exception& e) {
    return absl::StrCat("error: ", e.what());
  }
}

TEST_CASE("WebSocket echo through the gateway") {
  Mesh mesh;
  const int app = mesh.App("ws", {"--mode", "ws-echo", "--version", "v1"});
  mesh.Apply(absl::StrCat(R"(
apiVersion: v1
kind: Service
metadata: {name: ws}
spec: {selector: {app: ws}, ports: [{name: http, port: 8080}]}
---
apiVersion: networking.istio.io/v1alpha3
kind: WorkloadEntry
metadata: {name: ws}
spec: {address: 127.0.0.1, labels: {app: ws}, ports: {http: )",
                          app, R"(}}
---
apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata: {name: gw}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: ws}
spec:
  hosts: ["*"]
  gateways: [gw]
  http: [{route: [{destination: {host: ws}}]}]
)"));
  Mesh::Proxy& gateway = mesh.Gateway();
  REQUIRE(mesh.WaitReady());
  INFO(mesh.Logs());
  const std::string address = absl::StrCat("127.0.0.1:", gateway.port);
  REQUIRE(WaitFor([&] { return HttpGet(gateway.port, "/ping").status == 200; }, 10s));
  CHECK(Chat(address, "chat.example.com", {"hello", "again", std::string(5000, 'x')}) ==
        "ws v1: hello|ws v1: again|ws v1: " + std::string(5000, 'x'));
}

TEST_CASE("WebSocket echo through two sidecars over mutual TLS") {
  Mesh mesh;
  const int app = mesh.App("ws", {"--mode", "ws-echo", "--version", "v1"});
  mesh.Apply(absl::StrCat(R"(
apiVersion: v1
kind: Service
metadata: {name: ws}
spec: {selector: {app: ws}, ports: [{name: http, port: 8080}]}
)",
                          kStrictMtlsYaml));
  mesh.Sidecar("ws", "default", "app=ws", 8080, app);
  Mesh::Proxy& client = mesh.Sidecar("client", "default", "app=client", 9001, FreePort());
  REQUIRE(mesh.WaitReady());
  INFO(mesh.Logs());
  std::string answer;
  REQUIRE(WaitFor(
      [&] {
        answer = Chat(client.outbound, "ws:8080", {"hello", "over mtls"});
        return answer == "ws v1: hello|ws v1: over mtls";
      },
      10s));
}

}  // namespace
}  // namespace mesh::testing
