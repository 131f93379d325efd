#pragma once

#include <condition_variable>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "controlplane/compiler/compiler.h"
#include "controlplane/model/config_index.h"
#include "controlplane/xds/debouncer.h"

namespace mesh::xds {

// The compiled resources of one proxy class at one config revision. Immutable and shared by
// every stream of the class.
struct Snapshot {
  std::string version;  // the store revision it was compiled from
  compiler::Resources resources;
};
using SnapshotPtr = std::shared_ptr<const Snapshot>;

// Compiles config per proxy class, once per class and revision, and tells the streams of each
// class when their snapshot changes. Changes are debounced (quiet period, bounded delay) on a
// worker thread. Thread-safe.
class SnapshotCache {
 public:
  struct Options {
    absl::Duration debounce = absl::Milliseconds(100);
    absl::Duration debounce_max = absl::Seconds(1);
  };
  // Follows `index` from now on; the index must outlive the cache.
  SnapshotCache(model::ConfigIndex* index, Options options);
  ~SnapshotCache();

  compiler::ProxyClass Classify(compiler::Role role, const std::string& ns,
                                const model::Labels& labels);

  // Registers interest in a class: returns its current snapshot (compiling it if needed) and
  // calls `on_update` with every later one. `on_update` runs on the cache's worker with no cache
  // lock held but under the watch's own, so destroying the handle waits for a call in progress.
  class Watch {
   public:
    virtual ~Watch() = default;
  };
  using Callback = std::function<void(SnapshotPtr)>;
  std::unique_ptr<Watch> Subscribe(const compiler::ProxyClass& proxy, Callback on_update,
                                   SnapshotPtr* current);

  // Recompiles every watched class now (what the worker does after the debounce).
  void Rebuild();

  struct Stats {
    int64_t rebuilds = 0;
    int64_t compiles = 0;
    size_t classes = 0;
  };
  Stats GetStats();

 private:
  struct Watcher;
  class WatchImpl;
  struct Entry {
    SnapshotPtr snapshot;
    compiler::CompileCache compile_cache;
    std::list<std::shared_ptr<Watcher>> watchers;
  };
  SnapshotPtr CompileLocked(const compiler::ProxyClass& proxy, Entry* entry)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Moves to the index's newest config (and rebuilds the registry) if it has changed.
  void RefreshLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Run();

  model::ConfigIndex* index_;
  Options options_;
  std::mutex mu_;
  model::ConfigSnapshotPtr config_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const registry::Registry> registry_ ABSL_GUARDED_BY(mu_);
  std::map<compiler::ProxyClass, Entry> entries_ ABSL_GUARDED_BY(mu_);
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
