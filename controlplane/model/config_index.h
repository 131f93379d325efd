#pragma once

#include <array>
#include <condition_variable>
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
// changes after it is published.
class ConfigSnapshot {
 public:
  // Objects of one kind keyed by "namespace/name".
  using ObjectMap = std::map<std::string, std::shared_ptr<const Object>>;

  const ObjectMap& Of(Kind kind) const { return *maps_[static_cast<size_t>(kind)]; }
  const Object* Find(Kind kind, absl::string_view ns, absl::string_view name) const;
  int64_t revision() const { return revision_; }

 private:
  friend class ConfigIndex;
  static constexpr size_t kKinds = 8;
  std::array<std::shared_ptr<const ObjectMap>, kKinds> maps_;
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
};

// Decodes a stored resource (the JSON the API layer writes). Stored values were validated when
// written, so a failure here means the store holds something it should not: the error says
// which key.
absl::StatusOr<Object> DecodeStored(const store::KeyValue& kv);

}  // namespace mesh::model
