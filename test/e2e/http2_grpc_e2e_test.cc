// HTTP/2 and gRPC through meshproxy, driven by peers nobody here wrote: gRPC's C++ client and
// server (the Echo service in mesh-demo-app --mode grpc), curl and h2load.
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "dataplane/codec/http2_codec.h"
#include "meshpilot/testing/v1/echo.grpc.pb.h"
#include "test/support/mesh.h"
#include "test/support/process.h"

namespace mesh::testing {
namespace {

using namespace std::chrono_literals;
using meshpilot::testing::v1::Echo;
using meshpilot::testing::v1::EchoRequest;
using meshpilot::testing::v1::EchoResponse;

// A channel to `target` (IP:PORT) over h2c, naming `authority` as the service it calls.
std::unique_ptr<Echo::Stub> Stub(const std::string& target, const std::string& authority) {
  grpc::ChannelArguments args;
  args.SetString(GRPC_ARG_DEFAULT_AUTHORITY, authority);
  args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);  // the mesh retries, not the client
  return Echo::NewStub(grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args));
}

grpc::Status Say(Echo::Stub& stub, EchoResponse* res,
                 const std::map<std::string, std::string>& metadata = {}, int delay_ms = 0,
                 std::chrono::milliseconds deadline = 5s) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + deadline);
  for (const auto& [k, v] : metadata) context.AddMetadata(k, v);
  EchoRequest req;
  req.set_message("hello");
  req.set_delay_ms(delay_ms);
  return stub.Say(&context, req, res);
}

// Every RPC shape once through `stub`; returns what went wrong, or "".
std::string AllFourKinds(Echo::Stub& stub) {
  EchoResponse res;
  grpc::Status s = Say(stub, &res);
  if (!s.ok() || res.message() != "hello") return "unary: " + s.error_message();
  {
    grpc::ClientContext context;
    EchoRequest req;
    req.set_message("tick");
    req.set_repeat(5);
    auto reader = stub.Repeat(&context, req);
    int got = 0;
    while (reader->Read(&res)) ++got;
    s = reader->Finish();
    if (!s.ok() || got != 5) return absl::StrCat("server streaming: ", got, " ", s.error_message());
  }
  {
    grpc::ClientContext context;
    auto writer = stub.Collect(&context, &res);
    EchoRequest req;
    req.set_payload(std::string(1000, 'x'));
    for (int i = 0; i < 10; ++i) writer->Write(req);
    writer->WritesDone();
    s = writer->Finish();
    if (!s.ok() || res.bytes() != 10000) return "client streaming: " + s.error_message();
  }
  {
    grpc::ClientContext context;
    auto stream = stub.Chat(&context);
    for (int i = 0; i < 5; ++i) {
      EchoRequest req;
      req.set_message(absl::StrCat("m", i));
      if (!stream->Write(req) || !stream->Read(&res) || res.message() != req.message())
        return absl::StrCat("bidirectional: message ", i);
    }
    stream->WritesDone();
    s = stream->Finish();
    if (!s.ok()) return "bidirectional: " + s.error_message();
  }
  return "";
}

std::string EchoEntries(const std::vector<std::pair<std::string, int>>& versions,
                        const std::string& service = "echo") {
  std::string out;
  for (const auto& [version, port] : versions) {
    absl::StrAppend(&out, "---\napiVersion: networking.istio.io/v1alpha3\nkind: WorkloadEntry\n",
                    "metadata: {name: ", service, "-", version, "}\nspec: {address: 127.0.0.1, ",
                    "labels: {app: ", service, ", version: ", version, "}, ports: {grpc: ", port,
                    "}}\n");
  }
  return out;
}

struct GrpcGateway {
  GrpcGateway() {
    const int v1 = mesh.App("echo-v1", {"--mode", "grpc", "--version", "v1"});
    const int v2 = mesh.App("echo-v2", {"--mode", "grpc", "--version", "v2"});
    const int bad =
        mesh.App("flaky-bad", {"--mode", "grpc", "--version", "bad", "--grpc-fail", "14"});
    const int good = mesh.App("flaky-good", {"--mode", "grpc", "--version", "good"});
    pong = mesh.App("pong", {"--version", "v1"});
    mesh.Apply(absl::StrCat(R"(
apiVersion: v1
kind: Service
metadata: {name: echo}
spec: {selector: {app: echo}, ports: [{name: grpc, port: 9000}]}
---
apiVersion: v1
kind: Service
metadata: {name: flaky}
spec: {selector: {app: flaky}, ports: [{name: grpc, port: 9000}]}
---
apiVersion: v1
kind: Service
metadata: {name: pong}
spec: {selector: {app: pong}, ports: [{name: http, port: 80}]}
---
apiVersion: networking.istio.io/v1alpha3
kind: WorkloadEntry
metadata: {name: pong}
spec: {address: 127.0.0.1, labels: {app: pong}, ports: {http: )",
                            pong, R"(}}
)",
                            EchoEntries({{"v1", v1}, {"v2", v2}}),
                            EchoEntries({{"bad", bad}, {"good", good}}, "flaky"), R"(
---
apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata: {name: gw}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: echo}
spec:
  host: echo
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: edge}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - match: [{uri: {prefix: /ping}}]
    route: [{destination: {host: pong}}]
  - match: [{headers: {x-fault: {exact: abort}}}]
    fault: {abort: {grpcStatus: UNAVAILABLE, percentage: {value: 100}}}
    route: [{destination: {host: echo, subset: v1}}]
  - match: [{headers: {x-target: {exact: flaky}}}]
    route: [{destination: {host: flaky}}]
    retries: {attempts: 3, retryOn: unavailable}
  - match: [{headers: {x-canary: {exact: "yes"}}}]
    route: [{destination: {host: echo, subset: v2}}]
  - match: [{uri: {prefix: /meshpilot.testing.v1.Echo/}}]
    route:
    - {destination: {host: echo, subset: v1}, weight: 80}
    - {destination: {host: echo, subset: v2}, weight: 20}
)"));
    gateway = &mesh.Gateway();
    REQUIRE(mesh.WaitReady());
    target = absl::StrCat("127.0.0.1:", gateway->port);
    stub = Stub(target, "echo.example.com");
    REQUIRE(WaitFor(
        [&] {
          EchoResponse res;
          return Say(*stub, &res).ok();
        },
        10s));
  }
  Mesh mesh;
  Mesh::Proxy* gateway = nullptr;
  int pong = 0;
  std::string target;
  std::unique_ptr<Echo::Stub> stub;
};

TEST_CASE("gRPC through the gateway: all four RPC kinds, an 80/20 split and a metadata match") {
  GrpcGateway g;
  INFO(g.mesh.Logs());
  CHECK(AllFourKinds(*g.stub) == "");
  std::map<std::string, int> versions;
  int failed = 0;
  for (int i = 0; i < 1000; ++i) {
    EchoResponse res;
    if (Say(*g.stub, &res).ok()) {
      ++versions[res.version()];
    } else {
      ++failed;
    }
  }
  CHECK(failed == 0);
  CHECK(versions["v1"] >= 750);
  CHECK(versions["v1"] <= 850);
  CHECK(versions["v1"] + versions["v2"] == 1000);
  for (int i = 0; i < 50; ++i) {
    EchoResponse res;
    REQUIRE(Say(*g.stub, &res, {{"x-canary", "yes"}}).ok());
    CHECK(res.version() == "v2");
  }
}

TEST_CASE("gRPC faults, deadlines and retries as a gRPC client sees them") {
  GrpcGateway g;
  INFO(g.mesh.Logs());
  EchoResponse res;
  grpc::Status aborted = Say(*g.stub, &res, {{"x-fault", "abort"}});
  CHECK(aborted.error_code() == grpc::StatusCode::UNAVAILABLE);
  CHECK(aborted.error_message() == "fault filter abort");

  grpc::Status late = Say(*g.stub, &res, {}, 1000, 200ms);
  CHECK(late.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED);

  // One of flaky's two endpoints fails every call with UNAVAILABLE; retries hide it.
  int failed = 0;
  for (int i = 0; i < 200; ++i) {
    if (!Say(*g.stub, &res, {{"x-target", "flaky"}}).ok()) ++failed;
  }
  CHECK(failed == 0);
}

TEST_CASE(
    "HTTP/2 clients through the gateway (curl with prior knowledge, h2load's 10,000 "
    "requests), and HTTP/1.1 clients to an HTTP/2 upstream") {
  GrpcGateway g;
  INFO(g.mesh.Logs());
  const std::string url = absl::StrCat("http://127.0.0.1:", g.gateway->port, "/ping");
  CommandResult curl = RunCommand({"curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null",
                                   "-w", "%{http_version} %{http_code}", url});
  CHECK(curl.out == "2 200");

  CommandResult h2load =
      RunCommand({"h2load", "-n", "10000", "-c", "10", "-m", "10", "-t", "1", url});
  INFO(h2load.out);
  CHECK(absl::StrContains(h2load.out,
                          "requests: 10000 total, 10000 started, 10000 done, 10000 succeeded, 0 "
                          "failed, 0 errored"));

  // A gRPC call made by hand over HTTP/1.1 (length-prefixed message, te: trailers): meshproxy
  // speaks HTTP/2 to the gRPC server and brings the answer, trailers and all, back in HTTP/1.1.
  const std::string message("\x0a\x05hello", 7);  // EchoRequest{message: "hello"}
  std::string frame("\0\0\0\0", 4);
  frame.push_back(static_cast<char>(message.size()));
  frame += message;
  const std::string body_file = g.mesh.dir() / "say.bin";
  { std::ofstream(body_file, std::ios::binary) << frame; }
  CommandResult h1 = RunCommand(
      {"curl", "-sS", "--http1.1", "-D", "-", "-o", "/dev/null", "-H",
       "content-type: application/grpc", "-H", "te: trailers", "--data-binary", "@" + body_file,
       absl::StrCat("http://127.0.0.1:", g.gateway->port, "/meshpilot.testing.v1.Echo/Say")});
  INFO(h1.out);
  CHECK(absl::StartsWith(h1.out, "HTTP/1.1 200"));
  CHECK(absl::StrContains(h1.out, "transfer-encoding: chunked"));
  CHECK(absl::StrContains(h1.out, "grpc-status: 0"));
}

TEST_CASE("gRPC between two sidecars over mutual TLS (STRICT): all four RPC kinds") {
  Mesh mesh;
  const int server_app = mesh.App("echo-app", {"--mode", "grpc", "--version", "v1"});
  mesh.Apply(absl::StrCat(R"(
apiVersion: v1
kind: Service
metadata: {name: echo}
spec: {selector: {app: echo}, ports: [{name: grpc, port: 9000}]}
)",
                          kStrictMtlsYaml));
  Mesh::Proxy& server = mesh.Sidecar("echo", "default", "app=echo", 9000, server_app);
  Mesh::Proxy& client = mesh.Sidecar("client", "default", "app=client", 9001, FreePort());
  REQUIRE(mesh.WaitReady());
  INFO(mesh.Logs());
  auto stub = Stub(client.outbound, "echo:9000");
  REQUIRE(WaitFor(
      [&] {
        EchoResponse res;
        return Say(*stub, &res).ok();
      },
      10s));
  CHECK(AllFourKinds(*stub) == "");
  EchoResponse res;
  REQUIRE(Say(*stub, &res).ok());
  // The server's sidecar passes on who called, as the mTLS handshake proved it.
  CHECK(absl::StrContains(res.metadata().at("x-forwarded-client-cert"),
                          "URI=spiffe://cluster.local/ns/default/sa/default"));
  // A plaintext client to the server's sidecar is refused under STRICT.
  auto direct = Stub(absl::StrCat(server.ip, ":", server.inbound_port), "echo:9000");
  CHECK_FALSE(Say(*direct, &res, {}, 0, 2s).ok());
}

// The process's peak resident memory (VmHWM), in KiB.
int64_t PeakRssKb(pid_t pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (!absl::StartsWith(line, "VmHWM:")) continue;
    int64_t kb = 0;
    std::string digits;
    for (char c : line) {
      if (c >= '0' && c <= '9') digits += c;
    }
    if (absl::SimpleAtoi(digits, &kb)) return kb;
  }
  return -1;
}

TEST_CASE("A 64 MiB gRPC client stream to a slow reader keeps meshproxy's memory bounded") {
  GrpcGateway g;
  INFO(g.mesh.Logs());
  grpc::ClientContext context;
  EchoResponse res;
  auto writer = g.stub->Collect(&context, &res);
  EchoRequest req;
  req.set_payload(std::string(256 * 1024, 'x'));
  req.set_delay_ms(4);  // the server takes each message slowly: about 1 s for all of them
  for (int i = 0; i < 256; ++i) REQUIRE(writer->Write(req));
  writer->WritesDone();
  grpc::Status s = writer->Finish();
  REQUIRE(s.ok());
  CHECK(res.bytes() == 64 * 1024 * 1024);
  const int64_t peak = PeakRssKb(g.gateway->process->pid());
  WARN("gateway meshproxy peak RSS after a 64 MiB stream: " << peak / 1024 << " MiB");
  CHECK(peak > 0);
  CHECK(peak < 48 * 1024);  // far below the stream: flow control held it back
}

TEST_CASE("A rapid-reset attack closes that connection while other clients keep being served") {
  GrpcGateway g;
  INFO(g.mesh.Logs());
  // The attacker: HEADERS then RST_STREAM, over and over, on one connection (CVE-2023-44487).
  // Its frames are made by an HTTP/2 client codec; the bytes go out on a plain socket.
  struct Quiet : dataplane::CodecOwner {
    void OnCodecOutput() override {}
  } owner;
  struct Ignore : dataplane::ResponseDecoder {
    void DecodeHeaders(dataplane::ResponseHeadPtr, bool) override {}
    void DecodeData(absl::string_view, bool) override {}
    void DecodeTrailers(dataplane::HeaderMap) override {}
  } ignore;
  dataplane::Http2ClientCodec attacker(owner, dataplane::CodecLimits{});
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(g.gateway->port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  auto flush = [&] {
    for (absl::string_view out = attacker.PendingOutput(); !out.empty();
         out = attacker.PendingOutput()) {
      if (::send(fd, out.data(), out.size(), MSG_NOSIGNAL) <= 0) return false;
      attacker.ConsumeOutput(out.size());
    }
    return true;
  };
  dataplane::RequestHead head;
  head.method = "POST";
  head.scheme = "http";
  head.authority = "echo.example.com";
  head.path = "/meshpilot.testing.v1.Echo/Say";
  head.headers.Add("content-type", "application/grpc");
  bool sent_all = true;
  for (int i = 0; i < 5000 && sent_all; ++i) {
    if (!attacker.CanOpenStream()) break;
    dataplane::RequestEncoder& stream = attacker.NewStream(ignore);
    stream.EncodeHeaders(head, false);
    sent_all = flush();  // HEADERS first: a stream reset before they left is never sent
    stream.stream().Reset(dataplane::ResetReason::kLocal);
    sent_all = sent_all && flush();
  }
  // Meanwhile and after, a well-behaved client is served.
  EchoResponse res;
  CHECK(Say(*g.stub, &res).ok());
  // The attacker's connection is told to go away and closed.
  timeval timeout{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  std::string received;
  char buf[16384];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) {
      CHECK(n == 0);  // closed by meshproxy, not timed out
      break;
    }
    received.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  // A GOAWAY frame (type 7) came back among the frames.
  bool goaway = false;
  for (size_t at = 0; at + 9 <= received.size();) {
    const size_t length = (static_cast<unsigned char>(received[at]) << 16) |
                          (static_cast<unsigned char>(received[at + 1]) << 8) |
                          static_cast<unsigned char>(received[at + 2]);
    if (received[at + 3] == 7) goaway = true;
    at += 9 + length;
  }
  CHECK(goaway);
  CHECK(Say(*g.stub, &res).ok());
}

TEST_CASE("100 config changes during a gRPC load, unary and streaming, fail no call") {
  GrpcGateway g;
  INFO(g.mesh.Logs());
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, failed{0};
  std::string first_error;
  std::mutex mu;
  auto fail = [&](const std::string& what) {
    ++failed;
    std::lock_guard lock(mu);
    if (first_error.empty()) first_error = what;
  };
  std::vector<std::thread> clients;
  for (int c = 0; c < 3; ++c) {
    clients.emplace_back([&] {
      auto stub = Stub(g.target, "echo.example.com");
      while (!stop) {
        EchoResponse res;
        grpc::Status s = Say(*stub, &res);
        s.ok() ? ++ok : (fail("unary: " + s.error_message()), 0);
      }
    });
  }
  clients.emplace_back([&] {
    auto stub = Stub(g.target, "echo.example.com");
    while (!stop) {
      grpc::ClientContext context;
      auto stream = stub->Chat(&context);
      for (int i = 0; i < 20; ++i) {
        EchoRequest req;
        req.set_message(absl::StrCat(i));
        EchoResponse res;
        if (!stream->Write(req) || !stream->Read(&res)) break;
      }
      stream->WritesDone();
      grpc::Status s = stream->Finish();
      s.ok() ? ++ok : (fail("stream: " + s.error_message()), 0);
    }
  });
  for (int change = 0; change < 100; ++change) {
    const int v1 = change % 2 ? 50 : 80;
    g.mesh.Apply(absl::StrCat(R"(
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: edge}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - match: [{uri: {prefix: /meshpilot.testing.v1.Echo/}}]
    route:
    - {destination: {host: echo, subset: v1}, weight: )",
                              v1, R"(}
    - {destination: {host: echo, subset: v2}, weight: )",
                              100 - v1, "}\n"));
    std::this_thread::sleep_for(20ms);
  }
  std::this_thread::sleep_for(200ms);
  stop = true;
  for (auto& t : clients) t.join();
  INFO(first_error);
  CHECK(failed == 0);
  CHECK(ok > 100);
}

TEST_CASE("SIGTERM drains the gateway: a call in flight finishes with GOAWAY, then it exits") {
  GrpcGateway g;
  INFO(g.mesh.Logs());
  grpc::Status slow_status;
  std::thread slow([&] {
    EchoResponse res;
    slow_status = Say(*g.stub, &res, {}, 1500, 10s);
  });
  std::this_thread::sleep_for(300ms);  // the call is in flight
  const auto start = std::chrono::steady_clock::now();
  const int status = g.gateway->process->Stop(SIGTERM);
  slow.join();
  CHECK(slow_status.ok());
  INFO("wait status " << status << " signal " << (WIFSIGNALED(status) ? WTERMSIG(status) : 0));
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  // It left once the call was done, not at the end of the 5 s drain time.
  CHECK(std::chrono::steady_clock::now() - start < 4s);
  CHECK(absl::StrContains(g.gateway->process->Log(), "draining for up to 5s"));
}

}  // namespace
}  // namespace mesh::testing
