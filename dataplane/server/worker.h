#pragma once

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <functional>
#include <future>
#include <list>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <utility>

#include "dataplane/admin/stats.h"
#include "dataplane/http/http_context.h"
#include "dataplane/network/deferred_queue.h"
#include "dataplane/server/snapshot.h"
#include "dataplane/stream/time_source.h"
#include "dataplane/tls/tls_contexts.h"
#include "dataplane/upstream/http_pools.h"

namespace mesh::dataplane {

// One bound listener's shared state: sessions read it to learn that their listener is draining
// (removed, or its filter chain changed), and then close after the request in flight.
struct ListenerRuntime {
  std::string name;
  std::atomic<bool> draining{false};
};
using ListenerRuntimePtr = std::shared_ptr<ListenerRuntime>;

// One event loop on one thread. Connections are accepted onto a worker and live there until they
// close; everything a request touches on the worker (snapshot, connection pools, stats, random
// numbers, timers) belongs to it alone, so the request path takes no lock. It is the HTTP layer's
// HttpContext and TimeSource.
class Worker : public HttpContext, public TimeSource {
 public:
  explicit Worker(int index, HttpPools::Options pool_options = {},
                  telemetry::LocalWorkloadPtr local_workload = nullptr);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  boost::asio::io_context& io() { return io_; }
  int index() const { return index_; }
  void Start();
  // Stops the loop, abandoning open connections, and joins the thread. Idempotent.
  void Stop();

  // Any thread: new requests on this worker use `snapshot` from now on; requests in flight keep
  // the one they started with.
  void Publish(SnapshotPtr snapshot);
  // Any thread: new TLS handshakes on this worker use `tls` (the mesh identity) from now on.
  void PublishTls(TlsContextsPtr tls);
  // Any thread: a copy of this worker's stats, taken on its thread.
  std::future<WorkerStats> CollectStats();
  // Any thread: closes this worker's connections of `listener` that wait for a request, and its
  // TCP connections. Busy HTTP connections close after their response.
  void CloseDraining(const ListenerRuntimePtr& listener);

  // --- Worker thread only.
  const SnapshotPtr& snapshot() const { return snapshot_; }
  const TlsContextsPtr& tls() const { return tls_; }  // nullptr until a certificate arrived
  DeferredQueue& deferred() { return deferred_; }

  // HttpContext
  Routing RoutingFor(const ListenerConfig& listener) override;
  // Whether a connection accepted on `accepted` from `peer_ip` (with the mutual-TLS identity
  // `principal`, or none) passes the listener's network RBAC filters as configured now; a
  // refusal is counted and logged.
  bool ConnectionAllowed(const ListenerConfig& accepted, const std::string& peer_ip,
                         const std::string& principal);
  // The listener of `accepted`'s name as configured now, else `accepted` itself.
  const ListenerConfig* CurrentListener(const ListenerConfig& accepted) const;
  TimeSource& time() override { return *this; }
  ConnectionSource& pools() override { return *http_pools_; }
  WorkerStats& stats() override { return stats_; }
  const telemetry::LocalWorkload& local_workload() override { return *local_workload_; }
  telemetry::PeerCache& peer_cache() override { return peer_cache_; }
  uint64_t Random() override { return rng_(); }
  // TimeSource
  absl::Time Now() override { return absl::Now(); }
  TimerPtr CreateTimer(std::function<void()> on_fire) override;

  // Open connections register so that draining can reach them. `close_if_idle` closes the
  // connection if it is between requests (or is a TCP connection). `tick`, when set, is called
  // about every 250 ms with the time: coarse timeouts (a stalled body) are enforced there rather
  // than by a timer per socket operation.
  struct Session {
    const ListenerRuntime* listener;
    std::function<void()> close_if_idle;
    std::function<void(absl::Time)> tick;
    // Closes the connection whatever it is doing (the worker's teardown); close_if_idle when
    // unset.
    std::function<void()> close = nullptr;
  };
  using SessionHandle = std::list<Session>::iterator;
  SessionHandle Register(Session session);
  void Unregister(SessionHandle handle);

 private:
  void SweepPoolLater();

  const int index_;
  boost::asio::io_context io_{1};
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> guard_;
  std::thread thread_;
  SnapshotPtr snapshot_;
  TlsContextsPtr tls_;
  DeferredQueue deferred_{io_};
  std::unique_ptr<HttpPools> http_pools_;
  WorkerStats stats_;
  telemetry::LocalWorkloadPtr local_workload_;
  telemetry::PeerCache peer_cache_;
  std::mt19937_64 rng_;
  std::list<Session> sessions_;
  boost::asio::steady_timer sweep_timer_{io_};  // closes idle upstream connections past timeout
};

}  // namespace mesh::dataplane
