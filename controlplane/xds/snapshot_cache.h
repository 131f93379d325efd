#pragma once

#include <condition_variable>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "controlplane/compiler/compiler.h"
#include "controlplane/model/config_index.h"
#include "controlplane/xds/debouncer.h"

namespace mesh::xds {

// The compiled resources of one proxy class at one config revision. Immutable and shared by
// every stream of the class.
struct Snapshot {
  // The store revision it was compiled from; once sidecars have registered themselves or keys
  // have been fetched, "<revision>.<generation>", since those change resources too.
  std::string version;
  compiler::Resources resources;

  // The serialized DiscoveryResponse for `type_url` carrying `selected` (all but its nonce),
  // serialized once per snapshot and subscription and shared by every stream that asks; `key`
  // names the subscription. Thread-safe: the memo is the only mutable part of a snapshot.
  std::shared_ptr<const std::string> Response(
      const std::string& type_url, const std::string& key,
      const std::map<std::string, const google::protobuf::Any*>& selected) const;

 private:
  mutable std::mutex responses_mu_;
  mutable std::map<std::string, std::shared_ptr<const std::string>> responses_;
};
using SnapshotPtr = std::shared_ptr<const Snapshot>;

// Compiles config per proxy class, once per class and version, and tells the streams of each
// class when their snapshot changes. Config changes and workload registrations are debounced
// (quiet period, bounded delay) on a worker thread. Thread-safe.
class SnapshotCache {
 public:
  struct Options {
    absl::Duration debounce = absl::Milliseconds(100);
    absl::Duration debounce_max = absl::Seconds(1);
    // How long a disconnected sidecar stays an endpoint, so a reconnect does not flap it.
    absl::Duration workload_grace = absl::Seconds(10);
    // The clock for debouncing and grace periods; tests pass their own.
    std::function<absl::Time()> now = [] { return absl::Now(); };
    // Whether a worker thread runs the debounce; tests that drive Rebuild and ExpireWorkloads
    // themselves turn it off.
    bool start_worker = true;
    // The mesh CA's root certificate, served to sidecars and gateways as the SDS secret
    // "ROOTCA" (Istio's name); none when empty. The workload certificate ("default") is never
    // served over ADS: each proxy gets its own from the CA.
    std::string root_cert_pem;
    // Mesh-wide settings the compiler applies where config is silent (the default retries).
    compiler::MeshConfig mesh;
  };
  // Follows `index` from now on; the index must outlive the cache.
  SnapshotCache(model::ConfigIndex* index, Options options);
  ~SnapshotCache();

  compiler::ProxyClass Classify(compiler::Role role, const std::string& ns,
                                const model::Labels& labels);

  // Registers interest in a class: returns its current snapshot (compiling it if needed) and
  // calls `on_update` with every later one. `on_update` runs on the cache's worker with no cache
  // lock held but under the watch's own, so destroying the handle waits for a call in progress.
  // `labels` are the proxy's full labels: when a config change makes other labels matter (a new
  // Gateway selector, a new sourceLabels match), the watch moves to the proxy's new class and
  // `on_update` receives that class's snapshot.
  class Watch {
   public:
    virtual ~Watch() = default;
    // The class this watch follows now (it moves when config changes the proxy's class).
    virtual compiler::ProxyClass proxy_class() const = 0;
  };
  using Callback = std::function<void(SnapshotPtr)>;
  std::unique_ptr<Watch> Subscribe(const compiler::ProxyClass& proxy, Callback on_update,
                                   SnapshotPtr* current, const model::Labels& labels = {});

  // Adds a connected sidecar's workload to the registry under `id` (Istio's WorkloadEntry
  // auto-registration). Destroying the handle removes it after the grace period, unless the same
  // id registers again meanwhile.
  class Registration {
   public:
    virtual ~Registration() = default;
  };
  std::unique_ptr<Registration> RegisterWorkload(const std::string& id,
                                                 registry::Workload workload);

  // Records the health a registered workload's sidecar reported; a change is pushed (debounced)
  // as the health_status of its endpoints. Unknown ids are ignored.
  void SetWorkloadHealth(const std::string& id, bool healthy);
  // The workloads of this replica's own sidecars (connected, or within their grace period).
  std::map<std::string, registry::Workload> LocalWorkloads();
  // The workloads other replicas publish (through etcd), replacing the previous set; they are
  // endpoints like local ones. A local registration with the same id wins.
  void SetRemoteWorkloads(std::map<std::string, registry::Workload> remote);

  // The key sets fetched for RequestAuthentication jwksUris (the last good one of each, by URI);
  // a change is pushed (debounced) to the proxies whose policies use them.
  void SetFetchedJwks(std::shared_ptr<const std::map<std::string, std::string>> keys);
  // The tracing providers (meshConfig.extensionProviders), replaced; a change is pushed.
  void SetTraceProviders(std::vector<compiler::MeshConfig::TraceProvider> providers);

  // The newest config and the registry built from it (with the registered workloads), for
  // questions about the mesh as a whole (tls-check).
  struct View {
    model::ConfigSnapshotPtr config;
    std::shared_ptr<const registry::Registry> registry;
  };
  View CurrentView();

  // When the store revision a snapshot version names was committed (seen by the index), if it
  // is one of the last thousand.
  std::optional<absl::Time> CommitTime(const std::string& version);

  // Brings every watched class up to date now (what the worker does after the debounce).
  void Rebuild();
  // Drops the workloads whose grace period has ended by `now` (what the worker does when one
  // ends); returns when the next one ends, or InfiniteFuture.
  absl::Time ExpireWorkloads(absl::Time now);

  struct Stats {
    int64_t rebuilds = 0;
    int64_t compiles = 0;
    size_t classes = 0;
    size_t workloads = 0;
  };
  Stats GetStats();

 private:
  struct Watcher;
  class WatchImpl;
  class RegistrationImpl;
  struct Entry {
    SnapshotPtr snapshot;
    compiler::CompileCache compile_cache;
    std::list<std::shared_ptr<Watcher>> watchers;
  };
  struct RegisteredWorkload {
    registry::Workload workload;
    int connections = 0;
    absl::Time expires = absl::InfiniteFuture();  // set once the last connection is gone
  };

  // Moves the watchers whose class the current config changes; returns them with the snapshot
  // of their new class.
  std::vector<std::pair<SnapshotPtr, std::shared_ptr<Watcher>>> ReclassifyLocked()
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  SnapshotPtr CompileLocked(const compiler::ProxyClass& proxy, Entry* entry)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Moves to the index's newest config, and rebuilds the registry if the config or the
  // registered workloads changed.
  void RefreshLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string VersionLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Unregister(const std::string& id);
  void Poke();  // a change worth a (debounced) rebuild
  void Run();

  model::ConfigIndex* index_;
  Options options_;
  std::mutex mu_;
  model::ConfigSnapshotPtr config_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const registry::Registry> registry_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, RegisteredWorkload> workloads_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, registry::Workload> remote_workloads_ ABSL_GUARDED_BY(mu_);
  compiler::MeshConfig mesh_ ABSL_GUARDED_BY(mu_);
  int64_t workload_generation_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t mesh_generation_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t registry_generation_ ABSL_GUARDED_BY(mu_) = -1;
  int64_t classified_revision_ ABSL_GUARDED_BY(mu_) = -1;  // the config watchers were classified by
  std::map<compiler::ProxyClass, Entry> entries_ ABSL_GUARDED_BY(mu_);
  std::map<int64_t, absl::Time> commit_times_ ABSL_GUARDED_BY(mu_);
  Stats stats_ ABSL_GUARDED_BY(mu_);

  // Debounce worker.
  std::mutex worker_mu_;
  std::condition_variable worker_cv_;
  Debouncer debouncer_ ABSL_GUARDED_BY(worker_mu_);
  bool stop_ ABSL_GUARDED_BY(worker_mu_) = false;
  std::unique_ptr<model::ConfigIndex::Subscription> subscription_;
  std::thread worker_;
};

}  // namespace mesh::xds
