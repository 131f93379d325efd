#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "dataplane/stream/header_map.h"
#include "dataplane/telemetry/trace_context.h"

namespace envoy::extensions::filters::network::http_connection_manager::v3 {
class HttpConnectionManager_Tracing;
}

// Distributed tracing as Envoy's HTTP connection manager does it with the OpenTelemetry tracer:
// a span per request on every hop (a server span on a sidecar's inbound listener, a client span
// on its outbound listeners and on gateways), the trace context continued from the request's
// headers or started afresh, the caller's sampling decision honoured, and Istio's tags. No I/O
// and no clock of its own: unit-tested by feeding heads.
namespace mesh::dataplane::telemetry {

// An HTTP connection manager's `tracing`, with its OpenTelemetry provider.
struct TracingConfig {
  double sampling_percent = 100;  // random_sampling; Envoy's default when absent
  bool server = false;            // the listener's spans are SERVER spans (inbound), else CLIENT
  std::string service_name;       // the OTLP resource's service.name; empty: the proxy's own
  std::string collector_uri;      // OTLP/HTTP: where batches are POSTed
  std::vector<std::pair<std::string, std::string>> collector_headers;
  struct CustomTag {
    enum class Kind { kLiteral, kEnvironment, kRequestHeader };
    std::string tag;
    Kind kind = Kind::kLiteral;
    std::string name;   // the literal value, the environment variable, or the header
    std::string value;  // the default (environment and header)
  };
  std::vector<CustomTag> custom_tags;  // environment tags already read at config time
};
using TracingConfigPtr = std::shared_ptr<const TracingConfig>;

// An HCM's `tracing` on a listener (`server`: inbound). Null when it names no provider (no
// spans, no trace headers, as Envoy without a tracer); InvalidArgument, naming the field under
// `path`, for a provider other than envoy.tracers.opentelemetry over HTTP.
absl::StatusOr<TracingConfigPtr> TracingFromProto(
    const envoy::extensions::filters::network::http_connection_manager::v3::
        HttpConnectionManager_Tracing& tracing,
    bool server, const std::string& path);

// A finished span, ready for export.
struct SpanRecord {
  std::string service;  // the OTLP resource's service.name
  TraceId trace_id;
  uint64_t span_id = 0, parent_span_id = 0;
  std::string tracestate;
  bool server = false;
  std::string name;
  absl::Time start, end;
  // Keys are literals or the config's custom tag names (the config travels with the record to
  // the exporter), so only values are allocated.
  std::vector<std::pair<absl::string_view, std::string>> attributes;
  bool error = false;
};

// What a finished request adds to its span.
struct SpanOutcome {
  int status = 0;
  absl::string_view flags;  // Envoy's response flags, "" for none
  absl::string_view upstream_cluster;
  absl::string_view peer_address;
  uint64_t request_bytes = 0, response_bytes = 0;
  bool reset = false;
};

// The proxy's facts that every span carries (Envoy's node_id, Istio's custom tags).
struct SpanIdentity {
  std::string service_name;  // Istio's: "<canonical service>.<namespace>"
  std::string node_id;
  std::string canonical_service, canonical_revision, ns, cluster_id;
  std::string mesh_id = "cluster.local";
};

// Where finished spans go (the exporter). Thread-safe; Export never blocks on I/O.
class SpanSink {
 public:
  virtual ~SpanSink() = default;
  virtual void Export(TracingConfigPtr config, SpanRecord span) = 0;
};

// One request's span, from the request head to the end of the stream.
class RequestSpan {
 public:
  // Continues the trace the head carries, or starts one; decides sampling (the caller's decision,
  // else `x-envoy-force-trace`, else config.sampling_percent) and writes the context for the next
  // hop into `headers`. `request_id` is the head's x-request-id.
  RequestSpan(const TracingConfig& config, HeaderMap& headers, absl::string_view method,
              absl::string_view authority, absl::string_view path, absl::string_view protocol,
              absl::Time start, absl::FunctionRef<uint64_t()> random);

  bool sampled() const { return sampled_; }
  // The span's name: the route's decorator, else "<authority><path without the query>".
  void SetOperation(std::string operation) { record_.name = std::move(operation); }

  // The record to export; call once, and only when sampled().
  SpanRecord Finish(const SpanOutcome& outcome, const SpanIdentity& identity, absl::Time end);

  const TraceId& trace_id() const { return record_.trace_id; }
  uint64_t span_id() const { return record_.span_id; }
  uint64_t parent_span_id() const { return record_.parent_span_id; }

 private:
  bool sampled_ = false;
  SpanRecord record_;
};

}  // namespace mesh::dataplane::telemetry
