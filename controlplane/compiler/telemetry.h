#pragma once

#include <string>

#include "controlplane/compiler/compiler.h"

namespace envoy::config::listener::v3 {
class Listener;
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

// Istio's default access log formats (meshConfig.accessLogFormat empty).
extern const char kIstioTextFormat[];

}  // namespace mesh::compiler
