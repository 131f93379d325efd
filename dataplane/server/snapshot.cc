#include "dataplane/server/snapshot.h"

namespace mesh::dataplane {

const RouteTable* Snapshot::RoutesFor(const ListenerConfig& listener) const {
  if (listener.inline_routes) return listener.inline_routes.get();
  auto it = config->routes.find(listener.rds_name);
  return it == config->routes.end() ? nullptr : it->second.get();
}

const ListenerConfig* Snapshot::Listener(const std::string& name) const {
  auto it = listeners.find(name);
  return it == listeners.end() ? nullptr : it->second.get();
}

absl::StatusOr<SnapshotPtr> Snapshot::Build(ProxyConfigPtr config, const Snapshot* previous) {
  auto out = std::make_shared<Snapshot>();
  absl::StatusOr<ClusterTablePtr> clusters =
      ClusterTable::Build(*config, previous ? previous->clusters.get() : nullptr);
  if (!clusters.ok()) return clusters.status();
  out->clusters = *std::move(clusters);
  for (const auto& [name, l] : config->listeners) {
    if (l.has_api_listener()) continue;  // proxyless gRPC listeners are not for a proxy to bind
    absl::StatusOr<ListenerConfigPtr> lc = ListenerConfig::FromProto(l);
    if (!lc.ok()) return lc.status();
    out->listeners[name] = *std::move(lc);
  }
  out->config = std::move(config);
  return SnapshotPtr(std::move(out));
}

}  // namespace mesh::dataplane
