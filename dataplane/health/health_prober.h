#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"

namespace mesh::dataplane {

// Decides whether a sidecar's workload can serve, as Istio's health checking of auto-registered
// workloads does: it holds its mesh identity (when it needs one) and every app port accepts a TCP
// connection on 127.0.0.1. Reports each change of that state (and the first) to `report`, which
// meshproxy sends to the control plane over its ADS stream. Thread-safe.
class HealthProber {
 public:
  struct Options {
    std::vector<uint32_t> app_ports;
    absl::Duration interval = absl::Seconds(2);  // while healthy; 200 ms at most until then
    absl::Duration connect_timeout = absl::Seconds(1);
    // Whether the workload certificate is there; unset when the proxy needs none.
    std::function<bool()> has_identity;
  };
  // `healthy`, and when not, why (one line).
  using Report = std::function<void(bool healthy, const std::string& reason)>;

  HealthProber(Options options, Report report);
  ~HealthProber();

  // Probes now; reports if the state changed since the last report (or none was made). Returns
  // the reason the workload is unhealthy, "" when healthy.
  std::string CheckOnce();
  // Probes every interval on a thread of its own until Stop (or destruction).
  void Start();
  void Stop();

 private:
  const Options options_;
  const Report report_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<std::string> last_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

// Whether 127.0.0.1:port accepts a TCP connection within `timeout`.
bool AcceptsConnections(uint32_t port, absl::Duration timeout);

}  // namespace mesh::dataplane
