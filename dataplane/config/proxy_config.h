#pragma once

#include <map>
#include <memory>
#include <string>

#include "dataplane/config/route_table.h"
#include "envoy/config/cluster/v3/cluster.pb.h"
#include "envoy/config/endpoint/v3/endpoint.pb.h"
#include "envoy/config/listener/v3/listener.pb.h"
#include "envoy/config/route/v3/route.pb.h"
#include "envoy/extensions/transport_sockets/tls/v3/tls.pb.h"

namespace mesh::dataplane {

// Everything meshproxy has applied, per type: immutable once published, swapped whole, so the
// request path reads it without a lock and in-flight requests keep the one they started with.
// The xDS client builds it; the serving side reads it and never sees the client.
struct ProxyConfig {
  std::map<std::string, envoy::config::listener::v3::Listener> listeners;
  std::map<std::string, RouteTablePtr> routes;
  std::map<std::string, envoy::config::route::v3::RouteConfiguration> route_configs;  // as sent
  std::map<std::string, envoy::config::cluster::v3::Cluster> clusters;
  std::map<std::string, envoy::config::endpoint::v3::ClusterLoadAssignment> endpoints;
  std::map<std::string, envoy::extensions::transport_sockets::tls::v3::Secret> secrets;  // SDS
  std::map<std::string, std::string> versions;  // type URL -> accepted version
};
using ProxyConfigPtr = std::shared_ptr<const ProxyConfig>;

}  // namespace mesh::dataplane
