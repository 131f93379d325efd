#pragma once

// Small helpers shared by the benchmarks.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "test/support/etcd.h"

namespace mesh::bench {

using Clock = std::chrono::steady_clock;

inline double Ms(Clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

// The p-th percentile (0..100) of `v`, nearest rank; 0 for an empty set.
inline double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = std::min(v.size() - 1, static_cast<size_t>(p / 100.0 * static_cast<double>(v.size())));
  return v[i];
}

// The integer after `--name` on the command line, or `def`.
inline int Arg(int argc, char** argv, const char* name, int def) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], name) == 0) return std::atoi(argv[i + 1]);
  }
  return def;
}

// The store a benchmark's meshpilot runs on: with `--etcd N` on the command line, an etcd
// cluster of N members started under `dir`; else the embedded one. `flags` are meshpilot's.
struct BenchStore {
  std::unique_ptr<testing::EtcdCluster> etcd;
  std::vector<std::string> flags = {"--log-level", "warn"};
  bool ok = true;
};
inline BenchStore ChooseStore(int argc, char** argv, const std::string& dir) {
  BenchStore out;
  if (int members = Arg(argc, argv, "--etcd", 0); members > 0) {
    out.etcd = std::make_unique<testing::EtcdCluster>(dir + "/etcd", members);
    out.ok = out.etcd->Start();
    if (!out.ok) std::fprintf(stderr, "etcd did not start\n");
    for (const std::string& f : out.etcd->MeshpilotFlags("bench")) out.flags.push_back(f);
  }
  std::printf("store: %s\n", out.etcd ? out.etcd->Url().c_str() : "embedded");
  return out;
}

}  // namespace mesh::bench
