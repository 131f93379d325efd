#include "dataplane/telemetry/trace_context.h"

#include "absl/strings/ascii.h"

namespace mesh::dataplane::telemetry {
namespace {

// Lower-case hex digits only, as both specs write ids.
bool ParseHex(absl::string_view s, uint64_t* out) {
  if (s.empty() || s.size() > 16) return false;
  uint64_t v = 0;
  for (char c : s) {
    int d;
    if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      d = c - 'a' + 10;
    } else {
      return false;
    }
    v = (v << 4) | static_cast<uint64_t>(d);
  }
  *out = v;
  return true;
}

// A 16- or 32-digit trace id.
bool ParseTraceId(absl::string_view s, TraceId* out) {
  TraceId id;
  if (s.size() == 32) {
    if (!ParseHex(s.substr(0, 16), &id.high) || !ParseHex(s.substr(16), &id.low)) return false;
  } else if (s.size() != 16 || !ParseHex(s, &id.low)) {
    return false;
  }
  *out = id;
  return id.valid();
}

bool ParseSpanId(absl::string_view s, uint64_t* out) {
  return s.size() == 16 && ParseHex(s, out) && *out != 0;
}

void AppendHex(uint64_t v, int digits, std::string* out) {
  static constexpr char kDigits[] = "0123456789abcdef";
  for (int shift = (digits - 1) * 4; shift >= 0; shift -= 4)
    out->push_back(kDigits[(v >> shift) & 0xf]);
}

// The leading list members of `state` that fit in kMaxTraceStateBytes.
std::string TrimTraceState(absl::string_view state) {
  if (state.size() <= kMaxTraceStateBytes) return std::string(state);
  absl::string_view kept = state.substr(0, kMaxTraceStateBytes + 1);
  size_t comma = kept.rfind(',');
  return comma == absl::string_view::npos
             ? std::string()
             : std::string(absl::StripAsciiWhitespace(kept.substr(0, comma)));
}

std::optional<bool> B3Sampled(absl::string_view v) {
  if (v == "1" || v == "true" || v == "d") return true;
  if (v == "0" || v == "false") return false;
  return std::nullopt;
}

}  // namespace

std::string TraceIdHex(const TraceId& id, bool short64) {
  std::string out;
  if (!(short64 && id.high == 0)) AppendHex(id.high, 16, &out);
  AppendHex(id.low, 16, &out);
  return out;
}

std::string SpanIdHex(uint64_t id) {
  std::string out;
  AppendHex(id, 16, &out);
  return out;
}

std::optional<SpanContext> ParseTraceparent(absl::string_view v) {
  v = absl::StripAsciiWhitespace(v);
  // version "-" trace-id "-" parent-id "-" flags: 2 + 1 + 32 + 1 + 16 + 1 + 2 = 55.
  if (v.size() < 55 || v[2] != '-' || v[35] != '-' || v[52] != '-') return std::nullopt;
  uint64_t version = 0, flags = 0;
  if (!ParseHex(v.substr(0, 2), &version) || version == 0xff) return std::nullopt;
  // Version 00 is exactly 55 characters; a later one may add fields after a '-'.
  if (version == 0 ? v.size() != 55 : (v.size() > 55 && v[55] != '-')) return std::nullopt;
  SpanContext c;
  if (v.substr(3, 32).size() != 32 || !ParseTraceId(v.substr(3, 32), &c.trace_id) ||
      !ParseSpanId(v.substr(36, 16), &c.span_id) || !ParseHex(v.substr(53, 2), &flags))
    return std::nullopt;
  c.sampled = (flags & 1) != 0;
  return c;
}

std::optional<SpanContext> ParseB3Single(absl::string_view v) {
  v = absl::StripAsciiWhitespace(v);
  SpanContext c;
  if (v.size() == 1) {
    c.sampled = B3Sampled(v);
    return c.sampled ? std::optional(c) : std::nullopt;
  }
  size_t dash = v.find('-');
  if (dash == absl::string_view::npos || !ParseTraceId(v.substr(0, dash), &c.trace_id))
    return std::nullopt;
  absl::string_view rest = v.substr(dash + 1);
  dash = rest.find('-');
  if (!ParseSpanId(rest.substr(0, dash), &c.span_id)) return std::nullopt;
  if (dash == absl::string_view::npos) return c;
  rest = rest.substr(dash + 1);
  dash = rest.find('-');
  c.sampled = B3Sampled(rest.substr(0, dash));
  if (!c.sampled) return std::nullopt;
  uint64_t parent = 0;
  if (dash != absl::string_view::npos && !ParseSpanId(rest.substr(dash + 1), &parent))
    return std::nullopt;
  return c;
}

std::optional<SpanContext> ExtractTraceContext(const HeaderMap& headers) {
  if (const std::string* tp = headers.Get("traceparent")) {
    if (std::optional<SpanContext> c = ParseTraceparent(*tp)) {
      if (headers.Count("tracestate") > 0)
        c->tracestate = TrimTraceState(headers.Join("tracestate"));
      return c;
    }
  }
  if (const std::string* b3 = headers.Get("b3")) {
    if (std::optional<SpanContext> c = ParseB3Single(*b3)) return c;
  }
  SpanContext c;
  if (const std::string* s = headers.Get("x-b3-sampled")) c.sampled = B3Sampled(*s);
  if (const std::string* f = headers.Get("x-b3-flags"); f && *f == "1") c.sampled = true;
  const std::string* trace = headers.Get("x-b3-traceid");
  const std::string* span = headers.Get("x-b3-spanid");
  if (trace && span && ParseTraceId(*trace, &c.trace_id) && ParseSpanId(*span, &c.span_id))
    return c;
  c.trace_id = {};
  c.span_id = 0;
  if (c.sampled) return c;
  return std::nullopt;
}

void InjectTraceContext(const TraceId& trace_id, uint64_t span_id, uint64_t parent_span_id,
                        bool sampled, const std::string& tracestate, HeaderMap& headers) {
  const std::string trace = TraceIdHex(trace_id), span = SpanIdHex(span_id);
  std::string traceparent;
  traceparent.reserve(55);
  traceparent.append("00-").append(trace).append("-").append(span).append(sampled ? "-01" : "-00");
  headers.Set("traceparent", traceparent);
  if (tracestate.empty()) {
    headers.Remove("tracestate");
  } else {
    headers.Set("tracestate", tracestate);
  }
  headers.Set("x-b3-traceid", trace);
  headers.Set("x-b3-spanid", span);
  if (parent_span_id != 0) {
    headers.Set("x-b3-parentspanid", SpanIdHex(parent_span_id));
  } else {
    headers.Remove("x-b3-parentspanid");
  }
  headers.Set("x-b3-sampled", sampled ? "1" : "0");
  headers.Remove("x-b3-flags");
  if (headers.Get("b3")) {
    std::string b3 = trace;
    b3.append("-").append(span).append(sampled ? "-1" : "-0");
    if (parent_span_id != 0) b3.append("-").append(SpanIdHex(parent_span_id));
    headers.Set("b3", b3);
  }
}

}  // namespace mesh::dataplane::telemetry
