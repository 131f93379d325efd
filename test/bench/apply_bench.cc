// Apply throughput and latency of a real meshpilot (embedded store, fsync before every answer),
// each figure next to a peer measured in the same run on the same disk and CPU:
//  - single applies from 8 concurrent clients, against the disk's own rate of durable appends
//    (one writer doing write + fdatasync in a loop: the ceiling of a store without group commit);
//  - 1,000-document /apply batches, against yaml-cpp alone decoding the same body in-process.
//
// Usage: apply_bench [--clients 8] [--requests 20000] [--batches 10] [--batch-size 1000] [--etcd N]
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/yaml_json.h"
#include "controlplane/store/etcd_store.h"
#include "nlohmann/json.hpp"
#include "test/bench/bench_util.h"
#include "test/support/meshpilot.h"
#include "test/support/temp_dir.h"

namespace {

using mesh::bench::Arg;
using mesh::bench::Clock;
using mesh::bench::Ms;
using mesh::bench::Percentile;

std::string ServiceDoc(const std::string& name, int port) {
  return absl::StrCat("---\napiVersion: v1\nkind: Service\nmetadata:\n  name: ", name,
                      "\n  labels: {app: ", name,
                      ", version: \"1.0\"}\nspec:\n  selector: {app: ", name,
                      "}\n  ports:\n  - {name: http, port: ", port, ", targetPort: 9080}\n");
}

// The peer for single applies: durable appends of one record each, one writer.
double RawFsyncRate(const std::string& dir, int count) {
  std::string path = dir + "/fsync-peer.log";
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
  std::string record(400, 'x');
  auto start = Clock::now();
  for (int i = 0; i < count; ++i) {
    if (::write(fd, record.data(), record.size()) < 0 || ::fdatasync(fd) != 0) break;
  }
  double secs = std::chrono::duration<double>(Clock::now() - start).count();
  ::close(fd);
  return count / secs;
}

// The peer for single applies on etcd: `clients` threads each doing a read and a
// compare-and-swap Txn straight on etcd (EtcdStore, no meshpilot), `count` in all: what one
// apply costs the store at the least.
double RawEtcdRate(const mesh::testing::EtcdCluster& etcd, int clients, int count) {
  mesh::store::EtcdStore::Options options;
  options.endpoints = etcd.Endpoints();
  auto store = mesh::store::EtcdStore::Open(options);
  if (!store.ok()) return 0;
  auto start = Clock::now();
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      for (int i = c; i < count; i += clients) {
        std::string key = absl::StrCat("/bench-peer/", i);
        auto cur = (*store)->GetMany({key});
        if (cur.ok()) (*store)->Commit({mesh::store::Op::Put(key, std::string(400, 'x'), 0)});
      }
    });
  }
  for (auto& t : threads) t.join();
  return count / std::chrono::duration<double>(Clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  const int clients = Arg(argc, argv, "--clients", 8);
  const int requests = Arg(argc, argv, "--requests", 20000);
  const int batches = Arg(argc, argv, "--batches", 10);
  const int batch_size = Arg(argc, argv, "--batch-size", 1000);

  mesh::testing::TempDir dir;
  mesh::bench::BenchStore store = mesh::bench::ChooseStore(argc, argv, dir.path());
  if (!store.ok) return 1;
  mesh::testing::MeshpilotProcess pilot(MESHPILOT_BIN, dir.path() + "/data", store.flags);
  if (!pilot.Start()) {
    std::fprintf(stderr, "meshpilot did not start:\n%s\n", pilot.Log().c_str());
    return 1;
  }

  // Single-resource applies from concurrent clients.
  std::vector<std::vector<double>> latencies(clients);
  std::atomic<int> failures{0};
  auto start = Clock::now();
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      auto client = pilot.Client();
      client.set_keep_alive(true);
      for (int i = c; i < requests; i += clients) {
        std::string body = ServiceDoc(absl::StrCat("svc-", i), 1000 + i % 60000);
        auto t0 = Clock::now();
        auto res = client.Post("/apply?namespace=bench", body, "application/yaml");
        latencies[c].push_back(Ms(Clock::now() - t0));
        if (!res || res->status != 200) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  double single_secs = std::chrono::duration<double>(Clock::now() - start).count();
  std::vector<double> all;
  for (auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
  double single_rate = requests / single_secs;
  double fsync_rate = RawFsyncRate(dir.path(), 500);

  // Large batches.
  std::vector<double> batch_ms, parse_ms;
  auto client = pilot.Client();
  client.set_read_timeout(120, 0);
  for (int b = 0; b < batches; ++b) {
    std::string body;
    for (int d = 0; d < batch_size; ++d)
      body += ServiceDoc(absl::StrCat("batch", b, "-", d), 1000 + d);
    auto t0 = Clock::now();
    auto res = client.Post("/apply?namespace=bench", body, "application/yaml");
    batch_ms.push_back(Ms(Clock::now() - t0));
    if (!res || res->status != 200) ++failures;
    t0 = Clock::now();
    mesh::YamlLimits limits;
    auto parsed = mesh::ParseYamlDocuments(body, limits);
    parse_ms.push_back(Ms(Clock::now() - t0));
    if (!parsed.ok()) ++failures;
  }
  double batch_p50 = Percentile(batch_ms, 50), parse_p50 = Percentile(parse_ms, 50);

  std::printf(
      "single applies: %d requests from %d clients in %.2fs: %.0f applies/s, p50 %.2f ms, p99 %.2f "
      "ms\n",
      requests, clients, single_secs, single_rate, Percentile(all, 50), Percentile(all, 99));
  std::printf("  peer (same disk, same run): %.0f durable appends/s from one writer; ratio %.2fx\n",
              fsync_rate, single_rate / fsync_rate);
  if (store.etcd) {
    double etcd_rate = RawEtcdRate(*store.etcd, clients, requests);
    std::printf(
        "  peer (etcd alone, same run): %.0f read + compare-and-swap pairs/s from %d clients; "
        "ratio %.2fx\n",
        etcd_rate, clients, single_rate / etcd_rate);
  }
  std::printf(
      "batches: %d x %d documents: p50 %.1f ms, p99 %.1f ms, max %.1f ms (%.0f resources/s)\n",
      batches, batch_size, batch_p50, Percentile(batch_ms, 99),
      *std::max_element(batch_ms.begin(), batch_ms.end()), batch_size / (batch_p50 / 1000));
  std::printf("  peer (same body, in-process yaml-cpp decode only): p50 %.1f ms; ratio %.2fx\n",
              parse_p50, batch_p50 / parse_p50);
  std::printf("failures: %d\n", failures.load());
  pilot.Terminate();
  return failures == 0 ? 0 : 1;
}
