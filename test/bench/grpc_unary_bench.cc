// gRPC unary latency through the mesh: a gRPC C++ client calls mesh-demo-app's Echo.Say through
// its own sidecar and the server's sidecar (mutual TLS, STRICT), and, in the same run, straight
// to the server. Calls are sequential (one in flight), so each one's time is its latency. The
// two paths alternate, round by round, on the same processes.
//
// Prints, per path, p50 and p99 per call (median over the rounds), and what the mesh adds.
//
// Usage: grpc_unary_bench [--calls 5000] [--rounds 3] [--plaintext 1]
//   --plaintext 1: the sidecars talk without TLS (PERMISSIVE, DestinationRule DISABLE), to see
//   what mutual TLS itself adds.
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "meshpilot/testing/v1/echo.grpc.pb.h"
#include "test/bench/bench_util.h"
#include "test/support/mesh.h"

namespace {

using mesh::bench::Arg;
using mesh::bench::Clock;
using mesh::bench::Percentile;
using meshpilot::testing::v1::Echo;
using meshpilot::testing::v1::EchoRequest;
using meshpilot::testing::v1::EchoResponse;

std::unique_ptr<Echo::Stub> Stub(const std::string& target, const std::string& authority) {
  grpc::ChannelArguments args;
  args.SetString(GRPC_ARG_DEFAULT_AUTHORITY, authority);
  args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
  return Echo::NewStub(grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args));
}

// `calls` sequential Say calls; the latency of each in microseconds, or empty on a failed call.
std::vector<double> Run(Echo::Stub& stub, int calls) {
  std::vector<double> us;
  us.reserve(calls);
  EchoRequest req;
  req.set_message("hello");
  for (int i = 0; i < calls; ++i) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    EchoResponse res;
    const auto start = Clock::now();
    grpc::Status status = stub.Say(&context, req, &res);
    const auto end = Clock::now();
    if (!status.ok()) {
      std::fprintf(stderr, "call %d failed: %s\n", i, status.error_message().c_str());
      return {};
    }
    us.push_back(std::chrono::duration<double, std::micro>(end - start).count());
  }
  return us;
}

double Median(std::vector<double> v) {
  return Percentile(std::move(v), 50);
}

}  // namespace

int main(int argc, char** argv) {
  const int calls = Arg(argc, argv, "--calls", 5000);
  const int rounds = Arg(argc, argv, "--rounds", 3);
  const bool plaintext = Arg(argc, argv, "--plaintext", 0) != 0;

  mesh::testing::Mesh mesh;
  const int app = mesh.App("echo-app", {"--mode", "grpc", "--version", "v1"});
  mesh.Apply(absl::StrCat(R"(
apiVersion: v1
kind: Service
metadata: {name: echo}
spec: {selector: {app: echo}, ports: [{name: grpc, port: 9000}]}
---
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: )",
                          plaintext ? "PERMISSIVE" : "STRICT", R"(}}
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: echo}
spec: {host: echo, trafficPolicy: {tls: {mode: )",
                          plaintext ? "DISABLE" : "ISTIO_MUTUAL", R"(}}}
)"));
  mesh.Sidecar("echo", "default", "app=echo", 9000, app);
  mesh::testing::Mesh::Proxy& client =
      mesh.Sidecar("client", "default", "app=client", 9001, mesh::testing::FreePort());
  if (!mesh.WaitReady()) {
    std::fprintf(stderr, "the sidecars did not become ready\n%s\n", mesh.Logs().c_str());
    return 1;
  }
  auto direct = Stub(absl::StrCat("127.0.0.1:", app), "echo:9000");
  auto meshed = Stub(client.outbound, "echo:9000");
  // Warm-up: connections made, TLS sessions up, the route served.
  for (int i = 0; i < 100; ++i) {
    if (Run(*meshed, 10).empty()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (Run(*direct, 200).empty() || Run(*meshed, 200).empty()) {
    std::fprintf(stderr, "warm-up calls fail\n%s\n", mesh.Logs().c_str());
    return 1;
  }

  std::vector<double> p50[2], p99[2];
  for (int r = 1; r <= rounds; ++r) {
    for (int path = 0; path < 2; ++path) {
      std::vector<double> us = Run(path == 0 ? *direct : *meshed, calls);
      if (us.empty()) return 1;
      p50[path].push_back(Percentile(us, 50));
      p99[path].push_back(Percentile(us, 99));
      std::printf("round %d %-7s p50 %7.1f us  p99 %7.1f us\n", r, path == 0 ? "direct" : "mesh",
                  p50[path].back(), p99[path].back());
    }
  }
  const double d50 = Median(p50[0]), d99 = Median(p99[0]);
  const double m50 = Median(p50[1]), m99 = Median(p99[1]);
  std::printf(
      "\n-- gRPC unary (Echo.Say), %d sequential calls per round, median of %d rounds --\n"
      "path                                   p50(us)   p99(us)\n"
      "direct                                 %7.1f   %7.1f\n"
      "client sidecar -> %-9s -> sidecar %7.1f   %7.1f\n"
      "added by the mesh                      %7.1f   %7.1f\n",
      calls, rounds, d50, d99, plaintext ? "plaintext" : "mTLS", m50, m99, m50 - d50, m99 - d99);
  return 0;
}
