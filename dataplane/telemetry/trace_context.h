#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "dataplane/stream/header_map.h"

// The trace context that crosses hops in request headers: W3C Trace Context (`traceparent`,
// `tracestate`) and Zipkin's B3 (`x-b3-traceid`, `x-b3-spanid`, `x-b3-parentspanid`,
// `x-b3-sampled`, `x-b3-flags`, and the single `b3` header). Read with the rules of each spec; a
// malformed header is ignored as if absent. Pure functions over a header map.
namespace mesh::dataplane::telemetry {

struct TraceId {
  uint64_t high = 0, low = 0;  // a 64-bit B3 id has high = 0
  bool valid() const { return high != 0 || low != 0; }
  bool operator==(const TraceId&) const = default;
};

// The caller's span, as its headers describe it.
struct SpanContext {
  TraceId trace_id;
  uint64_t span_id = 0;
  std::optional<bool> sampled;  // the caller's decision, when it made one
  std::string tracestate;       // W3C only; kept as received (at most kMaxTraceStateBytes)
};

// A `tracestate` longer than this loses its trailing list members (W3C's minimum to propagate).
inline constexpr size_t kMaxTraceStateBytes = 512;

// `traceparent` ("00-<32 hex>-<16 hex>-<2 hex>", or a later version with the same prefix).
std::optional<SpanContext> ParseTraceparent(absl::string_view value);
// The single `b3` header ("<trace>-<span>[-<sampled>[-<parent>]]", or only "0", "1" or "d").
// A sampling-only value gives a context with no ids.
std::optional<SpanContext> ParseB3Single(absl::string_view value);

// The context a request carries: `traceparent` (with `tracestate`) first, then `b3`, then the
// `x-b3-*` headers. A sampling decision without ids (`b3: 0`, `x-b3-sampled` alone) comes back
// with invalid ids: no parent, but the decision stands.
std::optional<SpanContext> ExtractTraceContext(const HeaderMap& headers);

// Writes the context for the next hop: the proxy's own span `span_id` in `trace_id`, child of
// `parent_span_id` (0: none). Sets `traceparent` (and `tracestate` when there is one) and the B3
// headers (`x-b3-*`; the single `b3` only where the request had one), replacing what was there.
void InjectTraceContext(const TraceId& trace_id, uint64_t span_id, uint64_t parent_span_id,
                        bool sampled, const std::string& tracestate, HeaderMap& headers);

// Lower-case hex of an id: 32 digits for a trace (16 when `high` is 0 and `short64`), 16 for a
// span.
std::string TraceIdHex(const TraceId& id, bool short64 = false);
std::string SpanIdHex(uint64_t id);

}  // namespace mesh::dataplane::telemetry
