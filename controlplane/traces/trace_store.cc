#include "controlplane/traces/trace_store.h"

#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb.h"

namespace mesh::traces {
namespace {

namespace otlp = ::opentelemetry::proto;
using nlohmann::json;

std::string Hex(const std::string& bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 0xf]);
  }
  return out;
}

// A trace id as Jaeger's API takes it: up to 32 hex digits, left-padded with zeros.
std::optional<std::string> TraceIdBytes(std::string hex) {
  hex = absl::AsciiStrToLower(hex);
  if (hex.empty() || hex.size() > 32) return std::nullopt;
  hex.insert(0, 32 - hex.size(), '0');
  std::string out;
  for (size_t i = 0; i < 32; i += 2) {
    int v = 0;
    for (size_t j = i; j < i + 2; ++j) {
      char c = hex[j];
      int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
      if (d < 0) return std::nullopt;
      v = v * 16 + d;
    }
    out.push_back(static_cast<char>(v));
  }
  return out;
}

std::string AnyValueString(const otlp::common::v1::AnyValue& v) {
  switch (v.value_case()) {
    case otlp::common::v1::AnyValue::kStringValue: return v.string_value();
    case otlp::common::v1::AnyValue::kBoolValue: return v.bool_value() ? "true" : "false";
    case otlp::common::v1::AnyValue::kIntValue: return absl::StrCat(v.int_value());
    case otlp::common::v1::AnyValue::kDoubleValue: return absl::StrCat(v.double_value());
    case otlp::common::v1::AnyValue::kBytesValue: return Hex(v.bytes_value());
    default: return "";
  }
}

const char* KindName(int kind) {
  switch (kind) {
    case otlp::trace::v1::Span::SPAN_KIND_SERVER: return "server";
    case otlp::trace::v1::Span::SPAN_KIND_CLIENT: return "client";
    case otlp::trace::v1::Span::SPAN_KIND_PRODUCER: return "producer";
    case otlp::trace::v1::Span::SPAN_KIND_CONSUMER: return "consumer";
    case otlp::trace::v1::Span::SPAN_KIND_INTERNAL: return "internal";
    default: return nullptr;
  }
}

json Envelope(json data, size_t total) {
  return json{{"data", std::move(data)},
              {"total", total},
              {"limit", 0},
              {"offset", 0},
              {"errors", nullptr}};
}

// "1h", "30m", "2d": Jaeger's lookback values (a Go duration, or days).
std::optional<absl::Duration> ParseLookback(const std::string& s) {
  if (!s.empty() && s.back() == 'd') {
    int64_t days = 0;
    if (!absl::SimpleAtoi(s.substr(0, s.size() - 1), &days) || days < 0) return std::nullopt;
    return absl::Hours(24 * days);
  }
  absl::Duration d;
  if (!absl::ParseDuration(s, &d) || d < absl::ZeroDuration()) return std::nullopt;
  return d;
}

}  // namespace

TraceStore::AddResult TraceStore::Add(
    const otlp::collector::trace::v1::ExportTraceServiceRequest& request) {
  AddResult result;
  std::lock_guard lock(mu_);
  for (const auto& rs : request.resource_spans()) {
    std::string service = "unknown_service";
    for (const auto& kv : rs.resource().attributes()) {
      if (kv.key() == "service.name") service = AnyValueString(kv.value());
    }
    for (const auto& ss : rs.scope_spans()) {
      for (const auto& in : ss.spans()) {
        ++received_;
        auto refuse = [&](const char* why) {
          ++result.rejected;
          ++rejected_;
          if (result.error.empty()) result.error = why;
        };
        if (in.trace_id().size() != 16 || in.trace_id() == std::string(16, '\0')) {
          refuse("a span has no valid trace_id (16 bytes, not all zero)");
          continue;
        }
        if (in.span_id().size() != 8 || in.span_id() == std::string(8, '\0')) {
          refuse("a span has no valid span_id (8 bytes, not all zero)");
          continue;
        }
        auto [it, fresh] = traces_.try_emplace(in.trace_id());
        Trace& t = it->second;
        if (fresh) {
          t.id = in.trace_id();
          age_.push_back(t.id);
          t.age = std::prev(age_.end());
        }
        if (t.spans.size() >= options_.max_spans_per_trace) {
          refuse("the trace has reached meshpilot's span cap");
          continue;
        }
        Span s;
        s.span_id = in.span_id();
        if (in.parent_span_id().size() == 8) s.parent_span_id = in.parent_span_id();
        s.service = service;
        s.name = in.name();
        s.kind = in.kind();
        s.start_ns = in.start_time_unix_nano();
        s.end_ns = std::max(in.end_time_unix_nano(), s.start_ns);
        s.error = in.status().code() == otlp::trace::v1::Status::STATUS_CODE_ERROR;
        s.bytes = sizeof(Span) + s.service.size() + s.name.size();
        for (const auto& kv : in.attributes()) {
          s.tags.emplace_back(kv.key(), AnyValueString(kv.value()));
          s.bytes += kv.key().size() + s.tags.back().second.size() + 64;
        }
        t.start_ns = std::min(t.start_ns, s.start_ns);
        t.end_ns = std::max(t.end_ns, s.end_ns);
        t.bytes += s.bytes;
        bytes_ += s.bytes;
        ++spans_;
        t.spans.push_back(std::move(s));
        ++result.accepted;
      }
    }
  }
  EvictLocked();
  return result;
}

void TraceStore::EvictLocked() {
  while (!age_.empty() && (traces_.size() > options_.max_traces || bytes_ > options_.max_bytes)) {
    auto it = traces_.find(age_.front());
    bytes_ -= it->second.bytes;
    spans_ -= it->second.spans.size();
    traces_.erase(it);
    age_.pop_front();
    ++evicted_;
  }
}

absl::StatusOr<TraceStore::Query> TraceStore::ParseQuery(
    const std::map<std::string, std::string>& params, absl::Time now) {
  Query q;
  auto get = [&](const char* name) {
    auto it = params.find(name);
    return it == params.end() ? std::string() : it->second;
  };
  q.service = get("service");
  if (q.service.empty()) return absl::InvalidArgumentError("parameter 'service' is required");
  q.operation = get("operation");
  auto micros = [&](const char* name, absl::Time* out) -> absl::Status {
    std::string v = get(name);
    if (v.empty()) return absl::OkStatus();
    int64_t us = 0;
    if (!absl::SimpleAtoi(v, &us)) {
      return absl::InvalidArgumentError(
          absl::StrCat("parameter '", name, "': microseconds since the epoch expected"));
    }
    *out = absl::FromUnixMicros(us);
    return absl::OkStatus();
  };
  if (absl::Status s = micros("start", &q.start); !s.ok()) return s;
  if (absl::Status s = micros("end", &q.end); !s.ok()) return s;
  if (std::string lb = get("lookback"); !lb.empty() && lb != "custom") {
    std::optional<absl::Duration> d = ParseLookback(lb);
    if (!d) return absl::InvalidArgumentError("parameter 'lookback': a duration such as 1h or 2d");
    q.start = now - *d;
  }
  for (auto [name, out] :
       {std::pair{"minDuration", &q.min_duration}, std::pair{"maxDuration", &q.max_duration}}) {
    std::string v = get(name);
    if (!v.empty() && !absl::ParseDuration(v, out))
      return absl::InvalidArgumentError(absl::StrCat("parameter '", name, "': a duration"));
  }
  if (std::string v = get("limit"); !v.empty()) {
    int limit = 0;
    if (!absl::SimpleAtoi(v, &limit) || limit < 0)
      return absl::InvalidArgumentError("parameter 'limit': a number");
    if (limit > 0) q.limit = static_cast<size_t>(limit);
  }
  if (std::string v = get("tags"); !v.empty()) {
    json tags = json::parse(v, nullptr, false);
    if (!tags.is_object())
      return absl::InvalidArgumentError("parameter 'tags': a JSON object of strings expected");
    for (const auto& [k, val] : tags.items()) {
      if (!val.is_string())
        return absl::InvalidArgumentError("parameter 'tags': a JSON object of strings expected");
      q.tags[k] = val.get<std::string>();
    }
  }
  return q;
}

bool TraceStore::Matches(const Trace& t, const Query& q) const {
  const absl::Time start = absl::FromUnixNanos(static_cast<int64_t>(t.start_ns));
  if (start < q.start || start > q.end) return false;
  const absl::Duration length = absl::Nanoseconds(static_cast<int64_t>(t.end_ns - t.start_ns));
  if (length < q.min_duration || length > q.max_duration) return false;
  for (const Span& s : t.spans) {
    if (s.service != q.service) continue;
    if (!q.operation.empty() && s.name != q.operation) continue;
    size_t found = 0;
    for (const auto& [key, value] : s.tags) {
      auto it = q.tags.find(key);
      if (it != q.tags.end() && it->second == value) ++found;
    }
    if (found == q.tags.size()) return true;
  }
  return false;
}

std::string TraceStore::RenderTrace(const Trace& t) {
  const std::string trace_id = Hex(t.id);
  std::map<std::string, std::string> process_of;  // service -> "p1", ...
  json processes = json::object();
  json spans = json::array();
  for (const Span& s : t.spans) {
    std::string& pid = process_of[s.service];
    if (pid.empty()) {
      pid = absl::StrCat("p", process_of.size());
      processes[pid] = {{"serviceName", s.service}, {"tags", json::array()}};
    }
    json tags = json::array();
    for (const auto& [key, value] : s.tags) {
      if (key == "error") continue;  // written once below, as Jaeger types it
      tags.push_back({{"key", key}, {"type", "string"}, {"value", value}});
    }
    if (const char* kind = KindName(s.kind))
      tags.push_back({{"key", "span.kind"}, {"type", "string"}, {"value", kind}});
    if (s.error) tags.push_back({{"key", "error"}, {"type", "bool"}, {"value", true}});
    json refs = json::array();
    if (!s.parent_span_id.empty()) {
      refs.push_back(
          {{"refType", "CHILD_OF"}, {"traceID", trace_id}, {"spanID", Hex(s.parent_span_id)}});
    }
    spans.push_back({{"traceID", trace_id},
                     {"spanID", Hex(s.span_id)},
                     {"flags", 1},
                     {"operationName", s.name},
                     {"references", std::move(refs)},
                     {"startTime", s.start_ns / 1000},
                     {"duration", (s.end_ns - s.start_ns) / 1000},
                     {"tags", std::move(tags)},
                     {"logs", json::array()},
                     {"processID", pid},
                     {"warnings", nullptr}});
  }
  return json{{"traceID", trace_id},
              {"spans", std::move(spans)},
              {"processes", std::move(processes)},
              {"warnings", nullptr}}
      .dump();
}

std::string TraceStore::ServicesJson() const {
  std::set<std::string> services;
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, t] : traces_) {
      for (const Span& s : t.spans) services.insert(s.service);
    }
  }
  return Envelope(json(services), services.size()).dump();
}

std::string TraceStore::OperationsJson(const std::string& service) const {
  std::set<std::string> operations;
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, t] : traces_) {
      for (const Span& s : t.spans) {
        if (s.service == service) operations.insert(s.name);
      }
    }
  }
  return Envelope(json(operations), operations.size()).dump();
}

std::string TraceStore::TracesJson(const Query& q) const {
  std::string data = "[";
  size_t n = 0;
  {
    std::lock_guard lock(mu_);
    for (auto it = age_.rbegin(); it != age_.rend() && n < q.limit; ++it) {
      const Trace& t = traces_.at(*it);
      if (!Matches(t, q)) continue;
      if (n++) data += ",";
      data += RenderTrace(t);
    }
  }
  data += "]";
  return absl::StrCat("{\"data\":", data, ",\"total\":", n,
                      ",\"limit\":0,\"offset\":0,\"errors\":null}");
}

absl::StatusOr<std::string> TraceStore::TraceJson(const std::string& id) const {
  std::optional<std::string> key = TraceIdBytes(id);
  if (!key) return absl::InvalidArgumentError("a trace id is up to 32 hex digits");
  std::lock_guard lock(mu_);
  auto it = traces_.find(*key);
  if (it == traces_.end()) return absl::NotFoundError(absl::StrCat("trace ", id, " not found"));
  return absl::StrCat("{\"data\":[", RenderTrace(it->second),
                      "],\"total\":1,\"limit\":0,\"offset\":0,\"errors\":null}");
}

TraceStore::Stats TraceStore::stats() const {
  std::lock_guard lock(mu_);
  return Stats{traces_.size(), spans_, bytes_, received_, rejected_, evicted_};
}

std::string TraceStore::MetricsText() const {
  const Stats s = stats();
  return absl::StrCat(
      "# TYPE meshpilot_trace_store_traces gauge\nmeshpilot_trace_store_traces ", s.traces, "\n",
      "# TYPE meshpilot_trace_store_spans gauge\nmeshpilot_trace_store_spans ", s.spans, "\n",
      "# TYPE meshpilot_trace_store_bytes gauge\nmeshpilot_trace_store_bytes ", s.bytes, "\n",
      "# TYPE meshpilot_trace_store_spans_received_total counter\n"
      "meshpilot_trace_store_spans_received_total ",
      s.spans_received, "\n",
      "# TYPE meshpilot_trace_store_spans_rejected_total counter\n"
      "meshpilot_trace_store_spans_rejected_total ",
      s.spans_rejected, "\n",
      "# TYPE meshpilot_trace_store_traces_evicted_total counter\n"
      "meshpilot_trace_store_traces_evicted_total ",
      s.traces_evicted, "\n");
}

}  // namespace mesh::traces
