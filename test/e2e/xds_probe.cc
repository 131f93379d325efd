// xds_probe: a proxyless gRPC client built on gRPC's own xDS support (Debian's libgrpc++),
// used by the end-to-end tests as a peer nobody here wrote. It reads its bootstrap from
// GRPC_XDS_BOOTSTRAP_CONFIG, dials an xds:/// target, and calls Echo/Whoami.
//
//   xds_probe TARGET count N [HEADER=VALUE]
//       makes N calls and prints "VERSION COUNT" per backend version, then "errors E". One call
//       and a short pause come first, so that every backend's connection is up when counting
//       starts (a new client sends its first calls to whichever backend it reached first).
//   xds_probe TARGET until VERSION SECONDS [HEADER=VALUE]
//       prints "ready" after a first successful call, then calls until 20 answers in a row come
//       from VERSION, and prints "switched MICROS" (system clock, microseconds since the epoch of
//       the first of those 20), or "timeout" after SECONDS.
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <iostream>
#include <map>
#include <string>
#include <thread>

#include "meshpilot/testing/v1/echo.grpc.pb.h"

namespace {

using meshpilot::testing::v1::Echo;
using meshpilot::testing::v1::WhoamiRequest;
using meshpilot::testing::v1::WhoamiResponse;

bool Call(Echo::Stub& stub, const std::string& header, std::string* version) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  ctx.set_wait_for_ready(true);
  if (size_t eq = header.find('='); eq != std::string::npos) {
    ctx.AddMetadata(header.substr(0, eq), header.substr(eq + 1));
  }
  WhoamiResponse res;
  grpc::Status s = stub.Whoami(&ctx, WhoamiRequest(), &res);
  if (!s.ok()) {
    std::cerr << "call failed: " << s.error_code() << " " << s.error_message() << "\n";
    return false;
  }
  *version = res.version();
  return true;
}

int64_t NowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::cerr << "usage: xds_probe TARGET count N [H=V] | TARGET until VERSION SECONDS [H=V]\n";
    return 2;
  }
  std::string target = argv[1], mode = argv[2];
  auto channel = grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
  Echo::Stub stub(channel);
  if (mode == "count") {
    int n = std::stoi(argv[3]);
    std::string header = argc > 4 ? argv[4] : "";
    std::map<std::string, int> counts;
    int errors = 0;
    std::string warmup;
    Call(stub, header, &warmup);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    for (int i = 0; i < n; ++i) {
      std::string v;
      if (Call(stub, header, &v))
        ++counts[v];
      else
        ++errors;
    }
    for (const auto& [v, c] : counts) std::cout << v << " " << c << "\n";
    std::cout << "errors " << errors << "\n";
    return 0;
  }
  if (mode == "until" && argc >= 5) {
    std::string want = argv[3];
    int seconds = std::stoi(argv[4]);
    std::string header = argc > 5 ? argv[5] : "";
    std::string v;
    if (!Call(stub, header, &v)) return 1;
    std::cout << "ready " << v << std::endl;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
    int streak = 0;
    int64_t streak_start = 0;
    while (std::chrono::steady_clock::now() < deadline) {
      int64_t t = NowMicros();
      if (!Call(stub, header, &v)) return 1;
      if (v == want) {
        if (streak++ == 0) streak_start = t;
        if (streak == 20) {
          std::cout << "switched " << streak_start << std::endl;
          return 0;
        }
      } else {
        streak = 0;
      }
    }
    std::cout << "timeout" << std::endl;
    return 0;
  }
  std::cerr << "unknown mode " << mode << "\n";
  return 2;
}
