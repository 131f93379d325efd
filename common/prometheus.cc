#include "common/prometheus.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace mesh::prometheus {

std::string Escape(absl::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\' || c == '"') {
      out.push_back('\\');
      out.push_back(c);
    } else if (c == '\n') {
      out.append("\\n");
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string Type(absl::string_view name, absl::string_view type) {
  return absl::StrCat("# TYPE ", name, " ", type, "\n");
}

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), buckets_(bounds_.size() + 1, 0) {}

void Histogram::Observe(double value) {
  size_t i = std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
  ++buckets_[i];
  ++count_;
  sum_ += value;
}

void Histogram::Render(std::string* out, absl::string_view name, absl::string_view labels) const {
  const std::string sep = labels.empty() ? "" : ",";
  uint64_t cumulative = 0;
  for (size_t i = 0; i < buckets_.size(); ++i) {
    cumulative += buckets_[i];
    const std::string le = i < bounds_.size() ? absl::StrCat(bounds_[i]) : "+Inf";
    absl::StrAppend(out, name, "_bucket{", labels, sep, "le=\"", le, "\"} ", cumulative, "\n");
  }
  const std::string braces = labels.empty() ? "" : absl::StrCat("{", labels, "}");
  absl::StrAppend(out, name, "_sum", braces, " ", sum_, "\n", name, "_count", braces, " ", count_,
                  "\n");
}

std::string ProcessMetrics() {
  std::string out;
  // /proc/self/stat: utime and stime (fields 14 and 15, in clock ticks), starttime (22, ticks
  // since boot), vsize (23, bytes) and rss (24, pages), after the parenthesised command name.
  std::ifstream stat_file("/proc/self/stat");
  std::string stat((std::istreambuf_iterator<char>(stat_file)), std::istreambuf_iterator<char>());
  size_t close = stat.rfind(')');
  if (close != std::string::npos) {
    std::vector<std::string> f = absl::StrSplit(stat.substr(close + 2), ' ');
    // f[0] is field 3 (state).
    auto field = [&](size_t n) -> double {
      return n - 3 < f.size() ? std::atof(f[n - 3].c_str()) : 0;
    };
    const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
    const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
    double boot_time = 0;
    std::ifstream stat_all("/proc/stat");
    for (std::string line; std::getline(stat_all, line);) {
      if (line.rfind("btime ", 0) == 0) boot_time = std::atof(line.c_str() + 6);
    }
    absl::StrAppend(&out, Type("process_cpu_seconds_total", "counter"),
                    "process_cpu_seconds_total ", (field(14) + field(15)) / ticks, "\n",
                    Type("process_resident_memory_bytes", "gauge"),
                    "process_resident_memory_bytes ", field(24) * page, "\n",
                    Type("process_virtual_memory_bytes", "gauge"), "process_virtual_memory_bytes ",
                    field(23), "\n", Type("process_start_time_seconds", "gauge"),
                    "process_start_time_seconds ", boot_time + field(22) / ticks, "\n");
  }
  std::error_code ec;
  size_t fds = 0;
  for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++fds;
  }
  rlimit limit{};
  getrlimit(RLIMIT_NOFILE, &limit);
  absl::StrAppend(&out, Type("process_open_fds", "gauge"), "process_open_fds ", fds, "\n",
                  Type("process_max_fds", "gauge"), "process_max_fds ", limit.rlim_cur, "\n");
  return out;
}

}  // namespace mesh::prometheus
