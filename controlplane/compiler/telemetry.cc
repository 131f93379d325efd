#include "controlplane/compiler/telemetry.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "envoy/config/accesslog/v3/accesslog.pb.h"
#include "envoy/config/listener/v3/listener.pb.h"
#include "envoy/config/route/v3/route.pb.h"
#include "envoy/config/trace/v3/http_tracer.pb.h"
#include "envoy/extensions/access_loggers/file/v3/file.pb.h"
#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb.h"
#include "envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.pb.h"

namespace mesh::compiler {
namespace {

namespace hcm = envoy::extensions::filters::network::http_connection_manager::v3;

constexpr char kRootNamespace[] = "istio-system";

// Istio's JSON access log: key -> operator.
const std::pair<const char*, const char*> kIstioJsonFormat[] = {
    {"start_time", "%START_TIME%"},
    {"route_name", "%ROUTE_NAME%"},
    {"method", "%REQ(:METHOD)%"},
    {"path", "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"},
    {"protocol", "%PROTOCOL%"},
    {"response_code", "%RESPONSE_CODE%"},
    {"response_flags", "%RESPONSE_FLAGS%"},
    {"response_code_details", "%RESPONSE_CODE_DETAILS%"},
    {"connection_termination_details", "%CONNECTION_TERMINATION_DETAILS%"},
    {"bytes_received", "%BYTES_RECEIVED%"},
    {"bytes_sent", "%BYTES_SENT%"},
    {"duration", "%DURATION%"},
    {"upstream_service_time", "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%"},
    {"x_forwarded_for", "%REQ(X-FORWARDED-FOR)%"},
    {"user_agent", "%REQ(USER-AGENT)%"},
    {"request_id", "%REQ(X-REQUEST-ID)%"},
    {"authority", "%REQ(:AUTHORITY)%"},
    {"upstream_host", "%UPSTREAM_HOST%"},
    {"upstream_cluster", "%UPSTREAM_CLUSTER_RAW%"},
    {"upstream_local_address", "%UPSTREAM_LOCAL_ADDRESS%"},
    {"downstream_local_address", "%DOWNSTREAM_LOCAL_ADDRESS%"},
    {"downstream_remote_address", "%DOWNSTREAM_REMOTE_ADDRESS%"},
    {"requested_server_name", "%REQUESTED_SERVER_NAME%"},
    {"upstream_transport_failure_reason", "%UPSTREAM_TRANSPORT_FAILURE_REASON%"},
};

envoy::config::accesslog::v3::AccessLog Log(const AccessLogging& logging) {
  envoy::extensions::access_loggers::file::v3::FileAccessLog file;
  file.set_path(logging.path);
  auto* format = file.mutable_log_format();
  if (logging.json) {
    auto& fields = *format->mutable_json_format()->mutable_fields();
    for (const auto& [key, op] : kIstioJsonFormat) fields[key].set_string_value(op);
  } else {
    format->mutable_text_format_source()->set_inline_string(kIstioTextFormat);
  }
  envoy::config::accesslog::v3::AccessLog log;
  log.set_name("envoy.access_loggers.file");
  log.mutable_typed_config()->PackFrom(file);
  return log;
}

}  // namespace

const char kIstioTextFormat[] =
    "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" "
    "%RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% "
    "\"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% "
    "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" "
    "\"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER_RAW% "
    "%UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% "
    "%REQUESTED_SERVER_NAME% %ROUTE_NAME%\n";

namespace {

// The Telemetry resources that `wanted` picks and that apply to the workload in `ns` with
// `labels`, most general first: the root namespace's (without a selector), its namespace's
// (without one), the oldest of its namespace's that selects it. Absent levels are left out.
template <typename Wanted>
std::vector<const model::Telemetry*> TelemetryLevels(const model::ConfigSnapshot& config,
                                                     const std::string& ns,
                                                     const model::Labels& labels, Wanted wanted) {
  const model::Telemetry *workload = nullptr, *namespace_wide = nullptr, *mesh_wide = nullptr;
  for (const model::Object* o : config.Sorted(model::Kind::kTelemetry)) {
    const auto& t = std::get<model::Telemetry>(o->spec);
    if (!wanted(t)) continue;
    const bool selects = t.selector && !t.selector->empty();
    if (o->meta.namespace_ == ns && selects) {
      if (!workload && registry::LabelsMatch(*t.selector, labels)) workload = &t;
    } else if (o->meta.namespace_ == ns) {
      if (!namespace_wide) namespace_wide = &t;
    } else if (o->meta.namespace_ == kRootNamespace && !selects) {
      if (!mesh_wide) mesh_wide = &t;
    }
  }
  std::vector<const model::Telemetry*> out;
  for (const model::Telemetry* t : {mesh_wide, namespace_wide, workload}) {
    if (t) out.push_back(t);
  }
  return out;
}

const MeshConfig::TraceProvider* FindProvider(const MeshConfig& mesh, const std::string& name) {
  for (const auto& p : mesh.trace_providers) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

}  // namespace

AccessLogging AccessLoggingFor(const model::ConfigSnapshot& config, const std::string& ns,
                               const model::Labels& labels, const MeshConfig& mesh) {
  AccessLogging out;
  out.path = mesh.access_log_file.empty() ? "/dev/stdout" : mesh.access_log_file;
  out.json = mesh.access_log_json;
  out.client = out.server = !mesh.access_log_file.empty();
  // The most specific Telemetry with accessLogging decides alone.
  std::vector<const model::Telemetry*> levels = TelemetryLevels(
      config, ns, labels, [](const model::Telemetry& t) { return !t.access_logging.empty(); });
  if (levels.empty()) return out;
  for (const auto& entry : levels.back()->access_logging) {
    using Mode = model::Telemetry::Mode;
    if (entry.mode != Mode::kServer) out.client = !entry.disabled;
    if (entry.mode != Mode::kClient) out.server = !entry.disabled;
  }
  return out;
}

Tracing TracingFor(const model::ConfigSnapshot& config, const std::string& ns,
                   const model::Labels& labels, const MeshConfig& mesh) {
  Tracing out;
  out.client.provider = out.server.provider = FindProvider(mesh, mesh.default_trace_provider);
  out.client.sampling = out.server.sampling = mesh.trace_sampling;
  for (const model::Telemetry* t : TelemetryLevels(
           config, ns, labels, [](const model::Telemetry& t) { return !t.tracing.empty(); })) {
    for (const model::Telemetry::Tracing& entry : t->tracing) {
      using Mode = model::Telemetry::Mode;
      for (TracingSide* side : {&out.client, &out.server}) {
        if (entry.mode == (side == &out.client ? Mode::kServer : Mode::kClient)) continue;
        if (!entry.providers.empty()) side->provider = FindProvider(mesh, entry.providers[0]);
        if (entry.random_sampling_percentage) side->sampling = *entry.random_sampling_percentage;
        if (entry.disable_span_reporting) side->report = !*entry.disable_span_reporting;
        for (const auto& [name, tag] : entry.custom_tags) side->custom_tags[name] = tag;
      }
    }
  }
  return out;
}

void AddTracing(const TracingSide& side, envoy::config::listener::v3::Listener* l) {
  if (!side.provider) return;
  hcm::HttpConnectionManager::Tracing tracing;
  tracing.mutable_random_sampling()->set_value(side.sampling);
  auto* provider = tracing.mutable_provider();
  provider->set_name("envoy.tracers.opentelemetry");
  envoy::config::trace::v3::OpenTelemetryConfig otel;
  // service_name is left to each proxy: its canonical service and namespace, as Istio names it.
  if (side.report) {
    auto* http = otel.mutable_http_service();
    http->mutable_http_uri()->set_uri(side.provider->uri);
    http->mutable_http_uri()->set_cluster(side.provider->name);
    http->mutable_http_uri()->mutable_timeout()->set_seconds(2);
    for (const auto& [name, value] : side.provider->headers) {
      auto* h = http->add_request_headers_to_add()->mutable_header();
      h->set_key(name);
      h->set_value(value);
    }
  }
  provider->mutable_typed_config()->PackFrom(otel);
  for (const auto& [name, tag] : side.custom_tags) {
    auto* out = tracing.add_custom_tags();
    out->set_tag(name);
    using Kind = model::Telemetry::CustomTag::Kind;
    switch (tag.kind) {
      case Kind::kLiteral: out->mutable_literal()->set_value(tag.value); break;
      case Kind::kEnvironment:
        out->mutable_environment()->set_name(tag.value);
        out->mutable_environment()->set_default_value(tag.default_value);
        break;
      case Kind::kHeader:
        out->mutable_request_header()->set_name(tag.value);
        out->mutable_request_header()->set_default_value(tag.default_value);
        break;
    }
  }
  for (auto& chain : *l->mutable_filter_chains()) {
    for (auto& filter : *chain.mutable_filters()) {
      google::protobuf::Any* typed = filter.mutable_typed_config();
      hcm::HttpConnectionManager m;
      if (typed->Is<decltype(m)>() && typed->UnpackTo(&m)) {
        *m.mutable_tracing() = tracing;
        typed->PackFrom(m);
      }
    }
  }
}

std::string RouteOperation(const envoy::config::route::v3::Route& route,
                           const std::string& fallback_host_port) {
  std::string path = "/*";
  const auto& match = route.match();
  switch (match.path_specifier_case()) {
    case envoy::config::route::v3::RouteMatch::kPrefix: path = match.prefix() + "*"; break;
    case envoy::config::route::v3::RouteMatch::kPath: path = match.path(); break;
    case envoy::config::route::v3::RouteMatch::kSafeRegex: path = match.safe_regex().regex(); break;
    default: break;
  }
  const std::string& cluster = route.route().weighted_clusters().clusters_size() > 0
                                   ? route.route().weighted_clusters().clusters(0).name()
                                   : route.route().cluster();
  // outbound|PORT|SUBSET|HOST
  std::vector<std::string> parts = absl::StrSplit(cluster, '|');
  if (parts.size() == 4 && parts[0] == "outbound" && !parts[3].empty())
    return absl::StrCat(parts[3], ":", parts[1], path);
  return fallback_host_port + path;
}

void AddAccessLog(const AccessLogging& logging, bool server,
                  envoy::config::listener::v3::Listener* l) {
  if (!(server ? logging.server : logging.client)) return;
  const envoy::config::accesslog::v3::AccessLog log = Log(logging);
  for (auto& chain : *l->mutable_filter_chains()) {
    for (auto& filter : *chain.mutable_filters()) {
      google::protobuf::Any* typed = filter.mutable_typed_config();
      hcm::HttpConnectionManager m;
      envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy tcp;
      if (typed->Is<decltype(m)>() && typed->UnpackTo(&m)) {
        *m.add_access_log() = log;
        typed->PackFrom(m);
      } else if (typed->Is<decltype(tcp)>() && typed->UnpackTo(&tcp)) {
        *tcp.add_access_log() = log;
        typed->PackFrom(tcp);
      }
    }
  }
}

}  // namespace mesh::compiler
