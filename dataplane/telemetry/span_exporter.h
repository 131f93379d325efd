#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"
#include "dataplane/telemetry/tracing.h"

// Sends finished spans to their collectors over OTLP/HTTP (protobuf), in batches, from a thread
// of its own. Workers only queue: a full queue drops the span and counts it, and a collector that
// is slow or down costs the export thread time, never a request. Thread-safe.
namespace mesh::dataplane::telemetry {

// The body of one POST /v1/traces: an ExportTraceServiceRequest with a ResourceSpans per
// service name. Exposed for tests.
std::string EncodeOtlp(const std::vector<std::pair<TracingConfigPtr, SpanRecord>>& spans);

class SpanExporter : public SpanSink {
 public:
  struct Options {
    size_t max_queue = 8192;  // spans waiting; more are dropped (span floods)
    size_t max_batch = 512;   // spans per POST
    absl::Duration flush_interval = absl::Seconds(1);
    absl::Duration timeout = absl::Seconds(2);  // connect, write and read, per POST
  };
  // One POST: true when the collector answered 2xx. The default speaks HTTP(S) with
  // cpp-httplib; tests inject their own.
  using Post = std::function<bool(const std::string& uri,
                                  const std::vector<std::pair<std::string, std::string>>& headers,
                                  const std::string& body)>;
  static Post HttpPost(absl::Duration timeout);

  explicit SpanExporter(Options options, Post post = nullptr);
  // Sends what is queued (one last try), then stops.
  ~SpanExporter() override;
  SpanExporter(const SpanExporter&) = delete;
  SpanExporter& operator=(const SpanExporter&) = delete;

  // Queues a sampled span for `config`'s collector; never blocks on I/O.
  void Export(TracingConfigPtr config, SpanRecord span) override;

  // Envoy's tracing.opentelemetry.* counters, and the spans dropped.
  struct Stats {
    std::atomic<uint64_t> spans_sent{0};         // in POSTs the collector accepted
    std::atomic<uint64_t> http_reports_sent{0};  // POSTs made
    std::atomic<uint64_t> http_reports_success{0};
    std::atomic<uint64_t> http_reports_failed{0};
    std::atomic<uint64_t> dropped_queue_full{0};     // spans
    std::atomic<uint64_t> dropped_export_failed{0};  // spans
  };
  const Stats& stats() const { return stats_; }
  // Prometheus text of stats(), under Envoy's names and meshproxy's for drops.
  std::string PrometheusText() const;

 private:
  void Run();
  void Send(std::vector<std::pair<TracingConfigPtr, SpanRecord>> batch);

  const Options options_;
  const Post post_;
  Stats stats_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<TracingConfigPtr, SpanRecord>> queue_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace mesh::dataplane::telemetry
