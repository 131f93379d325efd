#pragma once

#include <boost/asio/ssl/context.hpp>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "dataplane/config/listener_config.h"
#include "dataplane/config/proxy_config.h"
#include "dataplane/upstream/cluster_table.h"

namespace mesh::dataplane {

// Everything a worker needs to serve requests, built once per accepted xDS update and then
// never changed: workers hold it by shared_ptr, so a request finishes on the snapshot it started
// with and the request path takes no lock.
struct Snapshot {
  ProxyConfigPtr config;
  ClusterTablePtr clusters;
  std::map<std::string, ListenerConfigPtr> listeners;
  // Server TLS contexts of listeners with certificates from files (gateway SIMPLE/MUTUAL), by
  // listener name; loaded when the snapshot is built, so a missing file refuses the update.
  std::map<std::string, std::shared_ptr<boost::asio::ssl::context>> file_tls;
  // Client TLS contexts of clusters with SIMPLE or MUTUAL settings from files, by cluster name.
  std::map<std::string, std::shared_ptr<boost::asio::ssl::context>> cluster_tls;

  // The routes of an HTTP listener: inline, or the RDS config it names; nullptr while that
  // config has not arrived.
  const RouteTable* RoutesFor(const ListenerConfig& listener) const;
  const ListenerConfig* Listener(const std::string& name) const;

  // Builds from an applied config; hosts that stay keep their runtime state from `previous`.
  // Fails only for config the xDS client should already have refused.
  static absl::StatusOr<std::shared_ptr<const Snapshot>> Build(ProxyConfigPtr config,
                                                               const Snapshot* previous);
};
using SnapshotPtr = std::shared_ptr<const Snapshot>;

}  // namespace mesh::dataplane
