#pragma once

#include <string>

#include "dataplane/admin/admin_server.h"

namespace mesh::dataplane {

class AdsConnection;
class ProxyServer;
class WorkloadCertificate;
class XdsClient;
namespace telemetry {
class SpanExporter;
}

// What the admin pages read. Everything but `certificate` (absent without --token-file) is
// required and outlives the admin server.
struct AdminSources {
  std::string id;
  ProxyServer* server = nullptr;
  XdsClient* client = nullptr;
  AdsConnection* ads = nullptr;
  WorkloadCertificate* certificate = nullptr;
  const telemetry::SpanExporter* spans = nullptr;
};

// meshproxy's admin pages, under Envoy's names: /ready, /config_dump, /clusters, /certs,
// /stats and /stats/prometheus. GET only.
AdminResponse ServeAdminPage(const AdminSources& sources, const std::string& method,
                             const std::string& path);

}  // namespace mesh::dataplane
