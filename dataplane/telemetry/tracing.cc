#include "dataplane/telemetry/tracing.h"

#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "envoy/config/trace/v3/http_tracer.pb.h"
#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb.h"

namespace mesh::dataplane::telemetry {
namespace {

// Envoy's default max_path_tag_length: longer URLs are cut in the http.url tag.
constexpr size_t kMaxUrlTagLength = 256;

uint64_t NonZero(absl::FunctionRef<uint64_t()> random) {
  uint64_t v = random();
  return v != 0 ? v : 1;
}

std::string ValueOr(const HeaderMap& headers, absl::string_view name, absl::string_view dflt) {
  const std::string* v = headers.Get(name);
  return v ? *v : std::string(dflt);
}

}  // namespace

absl::StatusOr<TracingConfigPtr> TracingFromProto(
    const envoy::extensions::filters::network::http_connection_manager::v3::
        HttpConnectionManager_Tracing& in,
    bool server, const std::string& path) {
  if (!in.has_provider()) return TracingConfigPtr();
  const auto& provider = in.provider();
  envoy::config::trace::v3::OpenTelemetryConfig otel;
  if (provider.name() != "envoy.tracers.opentelemetry" ||
      !provider.typed_config().UnpackTo(&otel)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path,
                     ".provider: only envoy.tracers.opentelemetry (OTLP/HTTP) is supported, "
                     "not \"",
                     provider.name(), "\""));
  }
  const std::string& uri = otel.http_service().http_uri().uri();
  if (!absl::StartsWith(uri, "http://") && !absl::StartsWith(uri, "https://")) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ".provider.typed_config.http_service.http_uri.uri: an http(s) URL is required"));
  }
  auto out = std::make_shared<TracingConfig>();
  out->sampling_percent = in.has_random_sampling() ? in.random_sampling().value() : 100;
  out->server = server;
  out->service_name = otel.service_name();
  out->collector_uri = uri;
  for (const auto& h : otel.http_service().request_headers_to_add())
    out->collector_headers.emplace_back(h.header().key(), h.header().value());
  for (const auto& t : in.custom_tags()) {
    TracingConfig::CustomTag tag;
    tag.tag = t.tag();
    switch (t.type_case()) {
      case envoy::type::tracing::v3::CustomTag::kLiteral: tag.name = t.literal().value(); break;
      case envoy::type::tracing::v3::CustomTag::kEnvironment: {
        const char* env = std::getenv(t.environment().name().c_str());
        tag.name = env ? env : t.environment().default_value();
        break;
      }
      case envoy::type::tracing::v3::CustomTag::kRequestHeader:
        tag.kind = TracingConfig::CustomTag::Kind::kRequestHeader;
        tag.name = absl::AsciiStrToLower(t.request_header().name());
        tag.value = t.request_header().default_value();
        break;
      default: continue;  // a tag of a kind meshproxy does not read is left out
    }
    out->custom_tags.push_back(std::move(tag));
  }
  return TracingConfigPtr(std::move(out));
}

RequestSpan::RequestSpan(const TracingConfig& config, HeaderMap& headers, absl::string_view method,
                         absl::string_view authority, absl::string_view path,
                         absl::string_view protocol, absl::Time start,
                         absl::FunctionRef<uint64_t()> random) {
  std::optional<SpanContext> parent = ExtractTraceContext(headers);
  if (parent && parent->trace_id.valid()) {
    record_.trace_id = parent->trace_id;
    record_.parent_span_id = parent->span_id;
    record_.tracestate = std::move(parent->tracestate);
  } else {
    record_.trace_id = {NonZero(random), NonZero(random)};
  }
  record_.span_id = NonZero(random);
  if (parent && parent->sampled) {
    sampled_ = *parent->sampled;
  } else if (headers.Get("x-envoy-force-trace")) {
    sampled_ = true;
  } else {
    // Per million, as Envoy's runtime fractions are.
    sampled_ = static_cast<double>(random() % 1000000) < config.sampling_percent * 10000;
  }
  InjectTraceContext(record_.trace_id, record_.span_id, record_.parent_span_id, sampled_,
                     record_.tracestate, headers);
  if (!sampled_) return;

  record_.service = config.service_name;
  record_.server = config.server;
  record_.start = start;
  const absl::string_view path_only = path.substr(0, path.find('?'));
  record_.name = absl::StrCat(authority, path_only);
  std::string url =
      absl::StrCat(ValueOr(headers, "x-forwarded-proto", "http"), "://", authority, path);
  if (url.size() > kMaxUrlTagLength) url.resize(kMaxUrlTagLength);
  auto& tags = record_.attributes;
  tags.reserve(24 + config.custom_tags.size());
  tags.emplace_back("http.method", std::string(method));
  tags.emplace_back("http.url", std::move(url));
  tags.emplace_back("http.protocol", std::string(protocol));
  tags.emplace_back("user_agent", ValueOr(headers, "user-agent", "-"));
  tags.emplace_back("guid:x-request-id", ValueOr(headers, "x-request-id", ""));
  tags.emplace_back("downstream_cluster",
                    ValueOr(headers, "x-envoy-downstream-service-cluster", "-"));
  for (const TracingConfig::CustomTag& t : config.custom_tags) {
    switch (t.kind) {
      case TracingConfig::CustomTag::Kind::kRequestHeader:
        tags.emplace_back(t.tag, ValueOr(headers, t.name, t.value));
        break;
      case TracingConfig::CustomTag::Kind::kLiteral:
      case TracingConfig::CustomTag::Kind::kEnvironment: tags.emplace_back(t.tag, t.name); break;
    }
  }
}

SpanRecord RequestSpan::Finish(const SpanOutcome& outcome, const SpanIdentity& identity,
                               absl::Time end) {
  record_.end = end;
  if (record_.service.empty()) record_.service = identity.service_name;
  record_.error = outcome.reset || outcome.status >= 500 || outcome.status == 0;
  auto& tags = record_.attributes;
  tags.emplace_back("component", "proxy");
  tags.emplace_back("node_id", identity.node_id);
  tags.emplace_back("http.status_code", absl::StrCat(outcome.status));
  tags.emplace_back("response_flags", outcome.flags.empty() ? "-" : std::string(outcome.flags));
  tags.emplace_back("upstream_cluster", std::string(outcome.upstream_cluster));
  tags.emplace_back("upstream_cluster.name", std::string(outcome.upstream_cluster));
  tags.emplace_back("peer.address", std::string(outcome.peer_address));
  tags.emplace_back("request_size", absl::StrCat(outcome.request_bytes));
  tags.emplace_back("response_size", absl::StrCat(outcome.response_bytes));
  tags.emplace_back("istio.canonical_service", identity.canonical_service);
  tags.emplace_back("istio.canonical_revision", identity.canonical_revision);
  tags.emplace_back("istio.namespace", identity.ns);
  tags.emplace_back("istio.mesh_id", identity.mesh_id);
  if (!identity.cluster_id.empty()) tags.emplace_back("istio.cluster_id", identity.cluster_id);
  if (record_.error) tags.emplace_back("error", "true");
  return std::move(record_);
}

}  // namespace mesh::dataplane::telemetry
