#pragma once

#include <array>
#include <condition_variable>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "controlplane/model/object.h"
#include "controlplane/store/store.h"

namespace mesh::model {

// An immutable view of every stored resource at one store revision. Shared by readers; never
// changes after it is published. Each kind's objects are spread over shards by key hash, so a
// change copies one shard of one kind and shares everything else with the previous snapshot.
class ConfigSnapshot {
 public:
  // The object of `kind` named ns/name, or nullptr. O(log n).
  const Object* Find(Kind kind, absl::string_view ns, absl::string_view name) const;
  size_t Count(Kind kind) const { return kinds_[static_cast<size_t>(kind)]->count; }
  // Calls f(const Object&) for every object of `kind`, in no particular order.
  template <typename F>
  void ForEach(Kind kind, F&& f) const {
    for (const auto& shard : kinds_[static_cast<size_t>(kind)]->shards) {
      for (const auto& [key, obj] : *shard) f(*obj);
    }
  }
  // Every object of `kind`, ordered by namespace and name. O(n log n).
  std::vector<const Object*> Sorted(Kind kind) const;
  int64_t revision() const { return revision_; }

 private:
  friend class ConfigIndex;
  static constexpr size_t kKinds = kKindCount;
  static constexpr size_t kShards = 64;
  // Objects keyed by "namespace/name".
  using Shard = std::map<std::string, std::shared_ptr<const Object>>;
  struct KindMap {
    std::array<std::shared_ptr<const Shard>, kShards> shards;
    size_t count = 0;
  };
  static size_t ShardOf(absl::string_view key);

  std::array<std::shared_ptr<const KindMap>, kKinds> kinds_;
  int64_t revision_ = 0;
};
using ConfigSnapshotPtr = std::shared_ptr<const ConfigSnapshot>;

// Keeps a decoded copy of every resource in the store, following it through a store watch,
// and publishes a new immutable ConfigSnapshot per batch of changes. Kinds that did not
// change share their maps with the previous snapshot. Thread-safe.
class ConfigIndex {
 public:
  // Lists the store, then watches it from the listed revision. The store must outlive the index.
  static absl::StatusOr<std::unique_ptr<ConfigIndex>> Start(store::Store* store);
  ~ConfigIndex();

  ConfigSnapshotPtr Current() const;

  // Calls `listener` with the revision of every snapshot published from now on, on the store's
  // thread: it must be quick (signal a worker, do not compile). Destroying the returned handle
  // unregisters it and waits for a call in progress.
  using Listener = std::function<void(int64_t revision)>;
  class Subscription {
   public:
    virtual ~Subscription() = default;
  };
  std::unique_ptr<Subscription> Subscribe(Listener listener);
  // Blocks until the published snapshot is at `revision` or later, or `timeout` passes.
  // Returns whether it got there.
  bool WaitForRevision(int64_t revision, absl::Duration timeout) const;

 private:
  ConfigIndex() = default;
  void OnEvents(const std::vector<store::Event>& events);

  mutable std::mutex mu_;
  mutable std::condition_variable changed_;
  ConfigSnapshotPtr current_ ABSL_GUARDED_BY(mu_);
  store::WatchPtr watch_;

  class SubscriptionImpl;
  std::mutex listeners_mu_;
  std::list<Listener> listeners_ ABSL_GUARDED_BY(listeners_mu_);
};

// Decodes a stored resource (the JSON the API layer writes). Stored values were validated when
// written, so a failure here means the store holds something it should not: the error says
// which key.
absl::StatusOr<Object> DecodeStored(const store::KeyValue& kv);

}  // namespace mesh::model
