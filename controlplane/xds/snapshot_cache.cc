#include "controlplane/xds/snapshot_cache.h"

#include "common/log.h"

namespace mesh::xds {

struct SnapshotCache::Watcher {
  std::mutex mu;  // held while calling back, so unregistering waits for a call in progress
  Callback callback;
  bool active = true;
};

class SnapshotCache::WatchImpl : public SnapshotCache::Watch {
 public:
  WatchImpl(SnapshotCache* cache, compiler::ProxyClass proxy, std::shared_ptr<Watcher> watcher)
      : cache_(cache), proxy_(std::move(proxy)), watcher_(std::move(watcher)) {}
  ~WatchImpl() override {
    {
      std::lock_guard lock(watcher_->mu);
      watcher_->active = false;
    }
    std::lock_guard lock(cache_->mu_);
    auto it = cache_->entries_.find(proxy_);
    if (it == cache_->entries_.end()) return;
    it->second.watchers.remove(watcher_);
    // A class nobody watches is dropped, so the cache holds only live classes.
    if (it->second.watchers.empty()) cache_->entries_.erase(it);
  }

 private:
  SnapshotCache* cache_;
  compiler::ProxyClass proxy_;
  std::shared_ptr<Watcher> watcher_;
};

SnapshotCache::SnapshotCache(model::ConfigIndex* index, Options options)
    : index_(index), options_(options), debouncer_(options.debounce, options.debounce_max) {
  {
    std::lock_guard lock(mu_);
    config_ = index_->Current();
    registry_ = std::make_shared<registry::Registry>(registry::Registry::Build(*config_, {}));
  }
  subscription_ = index_->Subscribe([this](int64_t) {
    std::lock_guard lock(worker_mu_);
    debouncer_.Changed(absl::Now());
    worker_cv_.notify_one();
  });
  worker_ = std::thread([this] { Run(); });
}

SnapshotCache::~SnapshotCache() {
  subscription_.reset();
  {
    std::lock_guard lock(worker_mu_);
    stop_ = true;
  }
  worker_cv_.notify_one();
  worker_.join();
}

void SnapshotCache::Run() {
  std::unique_lock lock(worker_mu_);
  while (!stop_) {
    absl::Time deadline = debouncer_.Deadline();
    if (deadline == absl::InfiniteFuture()) {
      worker_cv_.wait(lock);
    } else {
      worker_cv_.wait_for(
          lock, absl::ToChronoNanoseconds(std::max(absl::ZeroDuration(), deadline - absl::Now())));
    }
    if (!stop_ && debouncer_.Fire(absl::Now())) {
      lock.unlock();
      Rebuild();
      lock.lock();
    }
  }
}

compiler::ProxyClass SnapshotCache::Classify(compiler::Role role, const std::string& ns,
                                             const model::Labels& labels) {
  std::lock_guard lock(mu_);
  RefreshLocked();
  return compiler::ClassOf(*config_, role, ns, labels);
}

SnapshotPtr SnapshotCache::CompileLocked(const compiler::ProxyClass& proxy, Entry* entry) {
  auto snap = std::make_shared<Snapshot>();
  snap->version = std::to_string(config_->revision());
  snap->resources = compiler::Compile(config_, *registry_, proxy, &entry->compile_cache);
  ++stats_.compiles;
  if (absl::Status s = compiler::CheckConsistency(snap->resources); !s.ok()) {
    log::Warn("xds: snapshot for ", proxy.ToString(), " at revision ", snap->version,
              " is inconsistent: ", s.message());
  }
  return snap;
}

void SnapshotCache::RefreshLocked() {
  model::ConfigSnapshotPtr config = index_->Current();
  if (config->revision() == config_->revision()) return;
  config_ = std::move(config);
  registry_ = std::make_shared<registry::Registry>(registry::Registry::Build(*config_, {}));
  ++stats_.rebuilds;
}

std::unique_ptr<SnapshotCache::Watch> SnapshotCache::Subscribe(const compiler::ProxyClass& proxy,
                                                               Callback on_update,
                                                               SnapshotPtr* current) {
  auto watcher = std::make_shared<Watcher>();
  watcher->callback = std::move(on_update);
  std::lock_guard lock(mu_);
  // A new stream starts from the newest config, not from the last debounced one; the classes
  // already watched catch up when the debounce fires.
  RefreshLocked();
  Entry& entry = entries_[proxy];
  if (!entry.snapshot || entry.snapshot->version != std::to_string(config_->revision())) {
    entry.snapshot = CompileLocked(proxy, &entry);
  }
  entry.watchers.push_back(watcher);
  *current = entry.snapshot;
  stats_.classes = entries_.size();
  return std::make_unique<WatchImpl>(this, proxy, watcher);
}

void SnapshotCache::Rebuild() {
  std::vector<std::pair<SnapshotPtr, std::vector<std::shared_ptr<Watcher>>>> notify;
  {
    std::lock_guard lock(mu_);
    RefreshLocked();
    std::string version = std::to_string(config_->revision());
    for (auto& [proxy, entry] : entries_) {
      if (entry.snapshot && entry.snapshot->version == version) continue;
      entry.snapshot = CompileLocked(proxy, &entry);
      notify.emplace_back(entry.snapshot, std::vector<std::shared_ptr<Watcher>>(
                                              entry.watchers.begin(), entry.watchers.end()));
    }
  }
  for (auto& [snap, watchers] : notify) {
    for (const auto& w : watchers) {
      std::lock_guard lock(w->mu);
      if (w->active) w->callback(snap);
    }
  }
}

SnapshotCache::Stats SnapshotCache::GetStats() {
  std::lock_guard lock(mu_);
  return stats_;
}

}  // namespace mesh::xds
