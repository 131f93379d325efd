// ADS load benchmark: a real meshpilot, N ADS streams over a few connections, spread over a few
// proxy classes (namespaces). Every stream subscribes to all clusters and to one route config,
// and ACKs each response at once, as a proxy would. Then a VirtualService apply (answered 2xx)
// changes that route config for every class, and the time until each stream has ACKed the new
// version is measured. Also meshpilot's RSS and CPU seconds.
//
// The peer, in the same run: the same apply-to-ACK time with a single stream connected.
//
// Usage: xds_load_bench [--streams 1000] [--classes 4] [--connections 20] [--rounds 3] [--etcd N]
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "envoy/service/discovery/v3/discovery.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "test/bench/bench_util.h"
#include "test/support/meshpilot.h"
#include "test/support/temp_dir.h"

namespace {

using mesh::bench::Arg;
using mesh::bench::Clock;
using mesh::bench::Ms;
using mesh::bench::Percentile;

using envoy::service::discovery::v3::AggregatedDiscoveryService;
using envoy::service::discovery::v3::DiscoveryRequest;
using envoy::service::discovery::v3::DiscoveryResponse;

constexpr char kCds[] = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
constexpr char kRds[] = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";

// One simulated proxy: subscribes, ACKs everything, remembers when each route version arrived.
class Stream : public grpc::ClientBidiReactor<DiscoveryRequest, DiscoveryResponse> {
 public:
  Stream(AggregatedDiscoveryService::Stub* stub, const std::string& id, const std::string& ns)
      : ns_(ns) {
    DiscoveryRequest cds;
    cds.mutable_node()->set_id(id);
    auto& fields = *cds.mutable_node()->mutable_metadata()->mutable_fields();
    fields["NAMESPACE"].set_string_value(ns);
    cds.set_type_url(kCds);
    DiscoveryRequest rds;
    rds.set_type_url(kRds);
    rds.add_resource_names(absl::StrCat("svc0.", ns, ".svc.cluster.local:8080"));
    pending_.push_back(std::move(cds));
    pending_.push_back(std::move(rds));
    stub->async()->StreamAggregatedResources(&ctx_, this);
    StartRead(&response_);
    WriteNext();
    StartCall();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;
    {
      std::lock_guard lock(mu_);
      if (response_.type_url() == kRds) {
        rds_version_ = response_.version_info();
        rds_at_ = Clock::now();
      }
      DiscoveryRequest ack;
      ack.set_type_url(response_.type_url());
      ack.set_version_info(response_.version_info());
      ack.set_response_nonce(response_.nonce());
      if (response_.type_url() == kRds)
        ack.add_resource_names(absl::StrCat("svc0.", ns_, ".svc.cluster.local:8080"));
      pending_.push_back(std::move(ack));
    }
    WriteNext();
    StartRead(&response_);
  }
  void OnWriteDone(bool ok) override {
    {
      std::lock_guard lock(mu_);
      writing_ = false;
      if (!ok) pending_.clear();
    }
    WriteNext();
  }
  void OnDone(const grpc::Status&) override {
    std::lock_guard lock(mu_);
    done_ = true;
    done_cv_.notify_all();
  }
  void Cancel() { ctx_.TryCancel(); }
  void WaitDone() {
    std::unique_lock lock(mu_);
    done_cv_.wait(lock, [&] { return done_; });
  }
  std::pair<std::string, Clock::time_point> Rds() {
    std::lock_guard lock(mu_);
    return {rds_version_, rds_at_};
  }

 private:
  void WriteNext() {
    std::lock_guard lock(mu_);
    if (writing_ || pending_.empty()) return;
    writing_ = true;
    current_ = std::move(pending_.front());
    pending_.erase(pending_.begin());
    StartWrite(&current_);
  }

  std::string ns_;
  grpc::ClientContext ctx_;
  DiscoveryResponse response_;
  DiscoveryRequest current_;
  std::recursive_mutex mu_;
  std::condition_variable_any done_cv_;
  std::vector<DiscoveryRequest> pending_;
  bool writing_ = false, done_ = false;
  std::string rds_version_;
  Clock::time_point rds_at_;
};

std::string Config(int classes, int weight) {
  std::string out;
  for (int c = 0; c < classes; ++c) {
    std::string ns = absl::StrCat("ns", c);
    out += absl::StrCat(
        "---\napiVersion: v1\nkind: Service\nmetadata: {name: svc0, namespace: ", ns,
        "}\nspec: {ports: [{name: http, port: 8080}]}\n"
        "---\napiVersion: networking.istio.io/v1beta1\nkind: DestinationRule\nmetadata: {name: "
        "svc0, namespace: ",
        ns,
        "}\nspec: {host: svc0, subsets: [{name: v1, labels: {v: '1'}}, {name: v2, labels: {v: "
        "'2'}}]}\n",
        "---\napiVersion: networking.istio.io/v1beta1\nkind: VirtualService\nmetadata: {name: "
        "svc0, namespace: ",
        ns,
        "}\nspec:\n  hosts: [svc0]\n  http:\n  - route:\n    - {destination: {host: svc0, subset: "
        "v1}, weight: ",
        weight, "}\n    - {destination: {host: svc0, subset: v2}, weight: ", 100 - weight, "}\n");
  }
  return out;
}

// RSS in MiB and CPU seconds (user + system) of a process.
std::pair<double, double> Usage(pid_t pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  double rss = 0;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) rss = std::stod(line.substr(6)) / 1024;
  }
  std::ifstream stat(absl::StrCat("/proc/", pid, "/stat"));
  std::string all((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  std::istringstream fields(all.substr(all.rfind(')') + 2));
  std::vector<std::string> f((std::istream_iterator<std::string>(fields)),
                             std::istream_iterator<std::string>());
  double cpu = (std::stod(f[11]) + std::stod(f[12])) / static_cast<double>(sysconf(_SC_CLK_TCK));
  return {rss, cpu};
}

struct Result {
  std::vector<double> ms;  // per stream, apply answered -> new route version received
  int missing = 0;
};

// Applies a change and waits for every stream to receive the new route version.
Result Push(mesh::testing::MeshpilotProcess& pilot, std::vector<std::unique_ptr<Stream>>& streams,
            int classes, int weight) {
  auto res = pilot.Client().Post("/apply", Config(classes, weight), "application/yaml");
  Clock::time_point applied = Clock::now();
  std::string version = nlohmann::json::parse(res->body)["revision"];
  Result r;
  auto deadline = applied + std::chrono::seconds(30);
  for (auto& s : streams) {
    while (true) {
      auto [v, at] = s->Rds();
      // A version is the store revision, with ".N" once sidecar workloads changed.
      if (v == version || absl::StartsWith(v, version + ".")) {
        r.ms.push_back(Ms(at - applied));
        break;
      }
      if (Clock::now() > deadline) {
        ++r.missing;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  const int n = Arg(argc, argv, "--streams", 1000);
  const int classes = Arg(argc, argv, "--classes", 4);
  const int connections = std::max(1, Arg(argc, argv, "--connections", 20));
  const int rounds = Arg(argc, argv, "--rounds", 3);

  mesh::testing::TempDir dir;
  mesh::bench::BenchStore store = mesh::bench::ChooseStore(argc, argv, dir.path());
  if (!store.ok) return 1;
  mesh::testing::MeshpilotProcess pilot(MESHPILOT_BIN, dir.path() + "/data", store.flags);
  if (!pilot.Start()) {
    std::fprintf(stderr, "meshpilot did not start\n%s", pilot.Log().c_str());
    return 1;
  }
  pilot.Client().Post("/apply", Config(classes, 90), "application/yaml");

  std::vector<std::unique_ptr<AggregatedDiscoveryService::Stub>> stubs;
  for (int c = 0; c < connections; ++c) {
    grpc::ChannelArguments args;
    args.SetInt("meshpilot.bench.connection", c);  // distinct args: a connection per channel
    args.SetInt(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, -1);
    stubs.push_back(AggregatedDiscoveryService::NewStub(grpc::CreateCustomChannel(
        absl::StrCat("127.0.0.1:", pilot.xds_port()), grpc::InsecureChannelCredentials(), args)));
  }

  // The peer: one stream alone.
  std::vector<double> single;
  {
    std::vector<std::unique_ptr<Stream>> one;
    one.push_back(std::make_unique<Stream>(stubs[0].get(), "single", "ns0"));
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    for (int r = 0; r < rounds; ++r) {
      Result res = Push(pilot, one, classes, 50 + r);
      single.insert(single.end(), res.ms.begin(), res.ms.end());
    }
    one[0]->Cancel();
    one[0]->WaitDone();
  }

  auto [rss0, cpu0] = Usage(pilot.pid());
  auto start = Clock::now();
  std::vector<std::unique_ptr<Stream>> streams;
  for (int i = 0; i < n; ++i) {
    streams.push_back(std::make_unique<Stream>(
        stubs[i % connections].get(), absl::StrCat("proxy-", i), absl::StrCat("ns", i % classes)));
  }
  // Wait until every stream has its first route config.
  for (auto& s : streams) {
    while (s->Rds().first.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  double connect_s = Ms(Clock::now() - start) / 1000;

  std::vector<double> all;
  int missing = 0;
  for (int r = 0; r < rounds; ++r) {
    Result res = Push(pilot, streams, classes, 10 + r);
    all.insert(all.end(), res.ms.begin(), res.ms.end());
    missing += res.missing;
  }
  auto [rss, cpu] = Usage(pilot.pid());
  std::printf("%d streams over %d connections, %d proxy classes: all subscribed in %.2fs\n", n,
              connections, classes, connect_s);
  std::printf(
      "apply -> every stream has the new route: p50 %.1f ms, p99 %.1f ms, max %.1f ms (%d rounds, "
      "%d missing)\n",
      Percentile(all, 50), Percentile(all, 99), *std::max_element(all.begin(), all.end()), rounds,
      missing);
  std::printf("  peer (one stream alone, same run): p50 %.1f ms; ratio of max to it %.1fx\n",
              Percentile(single, 50),
              *std::max_element(all.begin(), all.end()) / Percentile(single, 50));
  std::printf(
      "meshpilot: RSS %.1f MiB (%.1f MiB before the streams), CPU %.2f s for connecting and %d "
      "pushes\n",
      rss, rss0, cpu - cpu0, rounds);
  for (auto& s : streams) s->Cancel();
  for (auto& s : streams) s->WaitDone();
  pilot.Terminate();
  return missing == 0 ? 0 : 1;
}
