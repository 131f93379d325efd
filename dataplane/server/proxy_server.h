#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "dataplane/server/http_connection.h"
#include "dataplane/server/snapshot.h"
#include "dataplane/server/worker.h"

namespace mesh::dataplane {

// The proxy's serving side: worker event loops, and the listeners the current config asks for.
// Each accepted config becomes an immutable Snapshot posted to every worker; listeners are then
// reconciled on a control thread: new ones open (once their routes have arrived), removed ones
// stop accepting and drain, and a listener whose config did not change is left alone.
class ProxyServer {
 public:
  struct Options {
    int concurrency = 1;
    HttpOptions http;
    absl::Duration drain_time = absl::Seconds(5);  // then idle and TCP connections are closed
    // Whether the proxy has a mesh identity coming (--token-file): it is ready only once it
    // arrived.
    bool expect_tls = false;
    // Where a listener binds: from its config (name, direction, port); nullopt skips it.
    std::function<std::optional<boost::asio::ip::tcp::endpoint>(const ListenerConfig&)> bind;
    // Who this proxy is, for Istio's metrics and the peer-metadata headers.
    telemetry::LocalWorkloadPtr local_workload;
  };
  explicit ProxyServer(Options options);
  ~ProxyServer();

  void Start();
  // Graceful shutdown's first half (SIGTERM): every listener stops accepting and drains as a
  // removed one does (GOAWAY, Connection: close), and connections still open after the drain
  // time are closed. Then returns once no downstream connection is left or `wait` has passed.
  void DrainAll(absl::Duration wait);
  // Stops accepting, stops the workers and joins every thread. Idempotent.
  void Stop();
  // Downstream connections open now, over all workers. Thread-safe.
  int64_t ActiveConnections();

  // Builds the snapshot for `config` and, when it builds, makes it current (workers first, then
  // listeners). An error means the config cannot be served; nothing changes then. Thread-safe.
  absl::Status Apply(ProxyConfigPtr config);

  // The mesh identity's TLS contexts, for new handshakes on every worker. Thread-safe.
  void SetTls(TlsContextsPtr tls);

  struct ListenerStatus {
    std::string name, address, state;  // state: "active", "warming", "draining" or "failed: ..."
  };
  std::vector<ListenerStatus> listeners() const;
  // True once a config with listeners and clusters has been applied and no listener is warming.
  bool ready() const;
  SnapshotPtr snapshot() const;
  std::vector<Worker*> workers();

 private:
  struct Active;
  void Reconcile(SnapshotPtr snapshot);  // control thread only
  void Drain(std::shared_ptr<Active> active);
  boost::asio::awaitable<void> AcceptLoop(std::shared_ptr<Active> active);

  const Options options_;
  std::vector<std::unique_ptr<Worker>> workers_;
  boost::asio::io_context control_{1};
  std::thread control_thread_;
  size_t next_worker_ = 0;  // control thread only

  mutable std::mutex mu_;
  SnapshotPtr snapshot_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::shared_ptr<Active>> active_;  // control thread only
  std::vector<ListenerStatus> status_ ABSL_GUARDED_BY(mu_);
  bool ready_ ABSL_GUARDED_BY(mu_) = false;
  bool have_tls_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ = false;
};

}  // namespace mesh::dataplane
