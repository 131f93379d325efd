#pragma once

#include <cstdint>
#include <list>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace opentelemetry::proto::collector::trace::v1 {
class ExportTraceServiceRequest;
}

// meshpilot as a trace collector: the spans proxies export over OTLP/HTTP, grouped into traces
// and kept in memory (the most recent, bounded by count and bytes), answered in the shape of
// Jaeger's query API so that a mesh has traces with no other component. Thread-safe.
namespace mesh::traces {

class TraceStore {
 public:
  struct Options {
    size_t max_traces = 10000;
    size_t max_bytes = 64 << 20;         // the spans' approximate size; oldest traces go first
    size_t max_spans_per_trace = 10000;  // more are refused (a runaway trace)
  };
  explicit TraceStore(Options options) : options_(options) {}

  // Keeps the spans of one export. Spans without a valid trace or span id,
  // or past a trace's cap, are refused and counted; the rest are kept.
  struct AddResult {
    size_t accepted = 0, rejected = 0;
    std::string error;  // why some were refused (the first reason)
  };
  AddResult Add(const opentelemetry::proto::collector::trace::v1::ExportTraceServiceRequest& r);

  // Jaeger's GET /api/traces: the newest traces with a span of `service` (and `operation`),
  // started within [start, end], lasting within [min_duration, max_duration], with a span that
  // has every tag in `tags`; at most `limit`.
  struct Query {
    std::string service, operation;
    absl::Time start = absl::InfinitePast(), end = absl::InfiniteFuture();
    absl::Duration min_duration = absl::ZeroDuration(), max_duration = absl::InfiniteDuration();
    std::map<std::string, std::string> tags;
    size_t limit = 20;
  };
  // Reads Jaeger's query parameters (service, operation, lookback, start, end, limit,
  // minDuration, maxDuration, tags); InvalidArgument names a bad one.
  static absl::StatusOr<Query> ParseQuery(const std::map<std::string, std::string>& params,
                                          absl::Time now);

  // The answers, as Jaeger's query service writes them ({"data": ..., "total": ...}).
  std::string ServicesJson() const;
  std::string OperationsJson(const std::string& service) const;
  std::string TracesJson(const Query& query) const;
  // NotFound when the store does not hold the trace (or `id` is not a trace id).
  absl::StatusOr<std::string> TraceJson(const std::string& id) const;

  struct Stats {
    size_t traces = 0, spans = 0, bytes = 0;
    uint64_t spans_received = 0, spans_rejected = 0, traces_evicted = 0;
  };
  Stats stats() const;
  // Prometheus text of stats() (meshpilot_trace_store_*).
  std::string MetricsText() const;

 private:
  struct Span {
    std::string span_id, parent_span_id;  // 8 bytes each (parent empty for a root)
    std::string service, name;
    int kind = 0;  // OTLP SpanKind
    uint64_t start_ns = 0, end_ns = 0;
    std::vector<std::pair<std::string, std::string>> tags;
    bool error = false;
    size_t bytes = 0;
  };
  struct Trace {
    std::string id;  // 16 bytes
    std::vector<Span> spans;
    size_t bytes = 0;
    uint64_t start_ns = UINT64_MAX, end_ns = 0;
    std::list<std::string>::iterator age;  // in age_, oldest first
  };
  static std::string RenderTrace(const Trace& t);
  bool Matches(const Trace& t, const Query& q) const;
  void EvictLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  mutable std::mutex mu_;
  std::map<std::string, Trace> traces_ ABSL_GUARDED_BY(mu_);
  std::list<std::string> age_ ABSL_GUARDED_BY(mu_);  // trace ids by first arrival
  size_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  size_t spans_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t received_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t rejected_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t evicted_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace mesh::traces
