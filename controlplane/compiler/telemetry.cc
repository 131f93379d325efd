#include "controlplane/compiler/telemetry.h"

#include "envoy/config/accesslog/v3/accesslog.pb.h"
#include "envoy/config/listener/v3/listener.pb.h"
#include "envoy/extensions/access_loggers/file/v3/file.pb.h"
#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb.h"
#include "envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.pb.h"

namespace mesh::compiler {
namespace {

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

AccessLogging AccessLoggingFor(const model::ConfigSnapshot& config, const std::string& ns,
                               const model::Labels& labels, const MeshConfig& mesh) {
  AccessLogging out;
  out.path = mesh.access_log_file.empty() ? "/dev/stdout" : mesh.access_log_file;
  out.json = mesh.access_log_json;
  out.client = out.server = !mesh.access_log_file.empty();
  const model::Object *workload = nullptr, *namespace_wide = nullptr, *mesh_wide = nullptr;
  for (const model::Object* o : config.Sorted(model::Kind::kTelemetry)) {
    const auto& t = std::get<model::Telemetry>(o->spec);
    if (t.access_logging.empty()) continue;
    const bool selects = t.selector && !t.selector->empty();
    if (o->meta.namespace_ == ns && selects) {
      if (!workload && registry::LabelsMatch(*t.selector, labels)) workload = o;
    } else if (o->meta.namespace_ == ns) {
      if (!namespace_wide) namespace_wide = o;
    } else if (o->meta.namespace_ == kRootNamespace && !selects) {
      if (!mesh_wide) mesh_wide = o;
    }
  }
  const model::Object* decides = workload ? workload : namespace_wide ? namespace_wide : mesh_wide;
  if (!decides) return out;
  for (const auto& entry : std::get<model::Telemetry>(decides->spec).access_logging) {
    using Mode = model::Telemetry::Mode;
    if (entry.mode != Mode::kServer) out.client = !entry.disabled;
    if (entry.mode != Mode::kClient) out.server = !entry.disabled;
  }
  return out;
}

void AddAccessLog(const AccessLogging& logging, bool server,
                  envoy::config::listener::v3::Listener* l) {
  if (!(server ? logging.server : logging.client)) return;
  const envoy::config::accesslog::v3::AccessLog log = Log(logging);
  for (auto& chain : *l->mutable_filter_chains()) {
    for (auto& filter : *chain.mutable_filters()) {
      google::protobuf::Any* typed = filter.mutable_typed_config();
      envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager m;
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
