#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "dataplane/admin/stats.h"
#include "dataplane/config/listener_config.h"
#include "dataplane/config/route_table.h"
#include "dataplane/stream/time_source.h"
#include "dataplane/telemetry/peer.h"
#include "dataplane/upstream/cluster_table.h"
#include "dataplane/upstream/connection_source.h"

namespace mesh::dataplane {

// What the HTTP layer needs from the worker it runs on: the config in force, the clock, the
// connection pools, the stats and random numbers. The worker implements it; the HTTP layer never
// sees the worker itself. Worker-thread only.
class HttpContext {
 public:
  virtual ~HttpContext() = default;

  // The routes and clusters a new request on `listener` uses (the current config's listener of
  // that name, else `listener` itself as it was when the connection was accepted), and a hold on
  // the snapshot they belong to: a request keeps the config it started with until it ends.
  struct Routing {
    std::shared_ptr<const void> hold;
    const RouteTable* routes = nullptr;  // null while the listener's RDS config has not arrived
    const ClusterTable* clusters = nullptr;
    const ListenerConfig* listener = nullptr;  // its current config (authorization)
  };
  virtual Routing RoutingFor(const ListenerConfig& listener) = 0;
  virtual TimeSource& time() = 0;
  virtual ConnectionSource& pools() = 0;
  virtual WorkerStats& stats() = 0;
  // Who this proxy is, for telemetry, and the worker's cache of peers' metadata headers.
  virtual const telemetry::LocalWorkload& local_workload() = 0;
  virtual telemetry::PeerCache& peer_cache() = 0;
  virtual uint64_t Random() = 0;
};

}  // namespace mesh::dataplane
