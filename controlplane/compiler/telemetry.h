#pragma once

#include <map>
#include <string>

#include "controlplane/compiler/compiler.h"

namespace envoy::config::listener::v3 {
class Listener;
}
namespace envoy::config::route::v3 {
class Route;
}

// Telemetry as Istio configures its proxies: access logs from meshConfig (accessLogFile,
// accessLogEncoding) and Telemetry resources. Pure functions of the config, tested by table.
namespace mesh::compiler {

// Whether a workload's client side (its outbound listeners; all of a gateway's) and server side
// (its inbound listeners) write access logs, where, and in which format.
struct AccessLogging {
  bool client = false, server = false;
  std::string path;
  bool json = false;
};

// The decision for the workload in `ns` with `labels`: meshConfig's accessLogFile turns logs on
// for everyone; then the most specific Telemetry with accessLogging decides (one selecting the
// workload, else its namespace's without a selector, else the root namespace's): each entry
// turns its mode's side on, or off when `disabled`.
AccessLogging AccessLoggingFor(const model::ConfigSnapshot& config, const std::string& ns,
                               const model::Labels& labels, const MeshConfig& mesh);

// Adds the file access log (Istio's text or JSON format) to every HTTP connection manager and
// TCP proxy of `l`, when `logging` turns on its side (`server`: an inbound listener).
void AddAccessLog(const AccessLogging& logging, bool server,
                  envoy::config::listener::v3::Listener* l);

// Whether one side of a workload traces, to which collector, at which sampling percentage, with
// which custom tags; `report` false keeps the trace context and sampling but sends no spans
// (Telemetry's disableSpanReporting).
struct TracingSide {
  const MeshConfig::TraceProvider* provider = nullptr;  // null: no tracing
  double sampling = 1.0;
  bool report = true;
  std::map<std::string, model::Telemetry::CustomTag> custom_tags;
};
struct Tracing {
  TracingSide client, server;
};

// Istio's Telemetry inheritance for tracing: the mesh default (meshConfig), then the root
// namespace's Telemetry, the namespace's, and the one selecting the workload, each overriding
// the fields it sets (provider, sampling, span reporting; custom tags merged by name).
Tracing TracingFor(const model::ConfigSnapshot& config, const std::string& ns,
                   const model::Labels& labels, const MeshConfig& mesh);

// Sets `tracing` (envoy.tracers.opentelemetry over HTTP) on every HTTP connection manager of `l`
// when `side` has a provider.
void AddTracing(const TracingSide& side, envoy::config::listener::v3::Listener* l);

// Istio's span name for a route: "<host>:<port><path>", the path being the match's ("/foo*" for
// a prefix, the exact path, or the regex), "/*" when the route matches every path. The host and
// port come from the route's cluster (its first weighted one), else `fallback_host_port`.
std::string RouteOperation(const envoy::config::route::v3::Route& route,
                           const std::string& fallback_host_port);

// Istio's default access log formats (meshConfig.accessLogFormat empty).
extern const char kIstioTextFormat[];

}  // namespace mesh::compiler
