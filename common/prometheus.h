#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

// Pieces of the Prometheus text exposition format shared by meshpilot's metrics.
namespace mesh::prometheus {

// A label value escaped for the text format (backslash, double quote, newline).
std::string Escape(absl::string_view value);

// "# TYPE name type\n".
std::string Type(absl::string_view name, absl::string_view type);

// A histogram with fixed upper bounds (the `le` of its buckets; +Inf is added). Not
// thread-safe: its owner locks.
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void Observe(double value);
  // name_bucket{labels,le="..."} (cumulative), name_sum{labels} and name_count{labels};
  // `labels` is `k="v",...` or empty.
  void Render(std::string* out, absl::string_view name, absl::string_view labels) const;
  uint64_t count() const { return count_; }

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> buckets_;  // one per bound, then +Inf
  uint64_t count_ = 0;
  double sum_ = 0;
};

// The process_* metrics Prometheus client libraries export (CPU seconds, resident and virtual
// memory, open and maximum file descriptors, start time), read from /proc/self.
std::string ProcessMetrics();

}  // namespace mesh::prometheus
