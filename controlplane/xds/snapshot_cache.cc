#include "controlplane/xds/snapshot_cache.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "envoy/extensions/transport_sockets/tls/v3/tls.pb.h"
#include "envoy/service/discovery/v3/discovery.pb.h"

namespace mesh::xds {

std::shared_ptr<const std::string> Snapshot::Response(
    const std::string& type_url, const std::string& key,
    const std::map<std::string, const google::protobuf::Any*>& selected) const {
  std::string memo_key = absl::StrCat(type_url, "\n", key);
  std::lock_guard lock(responses_mu_);
  auto& slot = responses_[memo_key];
  if (!slot) {
    envoy::service::discovery::v3::DiscoveryResponse response;
    response.set_version_info(version);
    response.set_type_url(type_url);
    for (const auto& [name, any] : selected) *response.add_resources() = *any;
    slot = std::make_shared<const std::string>(response.SerializeAsString());
  }
  return slot;
}

struct SnapshotCache::Watcher {
  std::mutex mu;  // held while calling back, so unregistering waits for a call in progress
  Callback callback;
  bool active = true;
  compiler::ProxyClass proxy;  // the class it watches now; guarded by the cache's mu_
  model::Labels labels;        // the proxy's full labels, to classify it again
};

class SnapshotCache::WatchImpl : public SnapshotCache::Watch {
 public:
  WatchImpl(SnapshotCache* cache, std::shared_ptr<Watcher> watcher)
      : cache_(cache), watcher_(std::move(watcher)) {}
  compiler::ProxyClass proxy_class() const override {
    std::lock_guard lock(cache_->mu_);
    return watcher_->proxy;
  }
  ~WatchImpl() override {
    {
      std::lock_guard lock(watcher_->mu);
      watcher_->active = false;
    }
    std::lock_guard lock(cache_->mu_);
    auto it = cache_->entries_.find(watcher_->proxy);
    if (it == cache_->entries_.end()) return;
    it->second.watchers.remove(watcher_);
    // A class nobody watches is dropped, so the cache holds only live classes.
    if (it->second.watchers.empty()) cache_->entries_.erase(it);
    cache_->stats_.classes = cache_->entries_.size();
  }

 private:
  SnapshotCache* cache_;
  std::shared_ptr<Watcher> watcher_;
};

class SnapshotCache::RegistrationImpl : public SnapshotCache::Registration {
 public:
  RegistrationImpl(SnapshotCache* cache, std::string id) : cache_(cache), id_(std::move(id)) {}
  ~RegistrationImpl() override { cache_->Unregister(id_); }

 private:
  SnapshotCache* cache_;
  std::string id_;
};

SnapshotCache::SnapshotCache(model::ConfigIndex* index, Options options)
    : index_(index), options_(options), debouncer_(options.debounce, options.debounce_max) {
  {
    std::lock_guard lock(mu_);
    mesh_ = options_.mesh;
    config_ = index_->Current();
    RefreshLocked();
  }
  subscription_ = index_->Subscribe([this](int64_t revision) {
    {
      std::lock_guard lock(mu_);
      commit_times_[revision] = options_.now();
      while (commit_times_.size() > 1000) commit_times_.erase(commit_times_.begin());
    }
    Poke();
  });
  if (options_.start_worker) worker_ = std::thread([this] { Run(); });
}

SnapshotCache::~SnapshotCache() {
  subscription_.reset();
  {
    std::lock_guard lock(worker_mu_);
    stop_ = true;
  }
  worker_cv_.notify_one();
  if (worker_.joinable()) worker_.join();
}

void SnapshotCache::Poke() {
  std::lock_guard lock(worker_mu_);
  debouncer_.Changed(options_.now());
  worker_cv_.notify_one();
}

void SnapshotCache::Run() {
  std::unique_lock lock(worker_mu_);
  absl::Time next_expiry = absl::InfiniteFuture();
  while (!stop_) {
    absl::Time deadline = std::min(debouncer_.Deadline(), next_expiry);
    if (deadline == absl::InfiniteFuture()) {
      worker_cv_.wait(lock);
    } else {
      worker_cv_.wait_for(lock, absl::ToChronoNanoseconds(
                                    std::max(absl::ZeroDuration(), deadline - options_.now())));
    }
    if (stop_) break;
    lock.unlock();
    next_expiry = ExpireWorkloads(options_.now());  // may Poke
    lock.lock();
    if (debouncer_.Fire(options_.now())) {
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

void SnapshotCache::RefreshLocked() {
  model::ConfigSnapshotPtr config = index_->Current();
  bool config_changed = config->revision() != config_->revision();
  if (!config_changed && registry_generation_ == workload_generation_) return;
  config_ = std::move(config);
  std::vector<registry::Workload> workloads;
  for (const auto& [id, w] : workloads_) workloads.push_back(w.workload);
  for (const auto& [id, w] : remote_workloads_) {
    if (!workloads_.count(id)) workloads.push_back(w);
  }
  registry_ = std::make_shared<registry::Registry>(registry::Registry::Build(*config_, workloads));
  registry_generation_ = workload_generation_;
  ++stats_.rebuilds;
}

std::string SnapshotCache::VersionLocked() const {
  // Both generations only grow, so their sum does too.
  const int64_t generation = workload_generation_ + mesh_generation_;
  if (generation == 0) return std::to_string(config_->revision());
  return absl::StrCat(config_->revision(), ".", generation);
}

SnapshotPtr SnapshotCache::CompileLocked(const compiler::ProxyClass& proxy, Entry* entry) {
  auto snap = std::make_shared<Snapshot>();
  snap->version = VersionLocked();
  snap->resources = compiler::Compile(config_, *registry_, proxy, &entry->compile_cache, mesh_);
  if (!options_.root_cert_pem.empty() && proxy.role != compiler::Role::kProxyless) {
    envoy::extensions::transport_sockets::tls::v3::Secret root;
    root.set_name("ROOTCA");
    root.mutable_validation_context()->mutable_trusted_ca()->set_inline_bytes(
        options_.root_cert_pem);
    auto any = std::make_shared<google::protobuf::Any>();
    any->PackFrom(root);
    snap->resources.by_type[compiler::kSecretType]["ROOTCA"] = std::move(any);
  }
  ++stats_.compiles;
  if (absl::Status s = compiler::CheckConsistency(snap->resources); !s.ok()) {
    log::Warn("xds: snapshot for ", proxy.ToString(), " at version ", snap->version,
              " is inconsistent: ", s.message());
  }
  return snap;
}

std::unique_ptr<SnapshotCache::Watch> SnapshotCache::Subscribe(const compiler::ProxyClass& proxy,
                                                               Callback on_update,
                                                               SnapshotPtr* current,
                                                               const model::Labels& labels) {
  auto watcher = std::make_shared<Watcher>();
  watcher->callback = std::move(on_update);
  watcher->proxy = proxy;
  watcher->labels = labels.empty() ? proxy.labels : labels;
  std::lock_guard lock(mu_);
  // A new stream starts from the newest config, not from the last debounced one; the classes
  // already watched catch up when the debounce fires.
  RefreshLocked();
  Entry& entry = entries_[proxy];
  if (!entry.snapshot || entry.snapshot->version != VersionLocked()) {
    entry.snapshot = CompileLocked(proxy, &entry);
  }
  entry.watchers.push_back(watcher);
  *current = entry.snapshot;
  stats_.classes = entries_.size();
  return std::make_unique<WatchImpl>(this, watcher);
}

std::unique_ptr<SnapshotCache::Registration> SnapshotCache::RegisterWorkload(
    const std::string& id, registry::Workload workload) {
  {
    std::lock_guard lock(mu_);
    RegisteredWorkload& w = workloads_[id];
    bool changed =
        w.connections == 0 && w.expires == absl::InfiniteFuture();  // new, not a reconnect
    workload.name = id;
    workload.since_unix_ms =
        changed ? absl::ToUnixMillis(options_.now()) : w.workload.since_unix_ms;
    workload.healthy = !changed && w.workload.healthy;  // a reconnect keeps its last report
    changed = changed || !(w.workload == workload);
    w.workload = std::move(workload);
    ++w.connections;
    w.expires = absl::InfiniteFuture();
    if (changed) ++workload_generation_;
    stats_.workloads = workloads_.size();
    if (!changed) return std::make_unique<RegistrationImpl>(this, id);
  }
  Poke();
  return std::make_unique<RegistrationImpl>(this, id);
}

void SnapshotCache::SetWorkloadHealth(const std::string& id, bool healthy) {
  {
    std::lock_guard lock(mu_);
    auto it = workloads_.find(id);
    if (it == workloads_.end() || it->second.workload.healthy == healthy) return;
    it->second.workload.healthy = healthy;
    ++workload_generation_;
  }
  Poke();
}

std::map<std::string, registry::Workload> SnapshotCache::LocalWorkloads() {
  std::lock_guard lock(mu_);
  std::map<std::string, registry::Workload> out;
  for (const auto& [id, w] : workloads_) out[id] = w.workload;
  return out;
}

void SnapshotCache::SetRemoteWorkloads(std::map<std::string, registry::Workload> remote) {
  {
    std::lock_guard lock(mu_);
    if (remote == remote_workloads_) return;
    remote_workloads_ = std::move(remote);
    ++workload_generation_;
  }
  Poke();
}

void SnapshotCache::SetFetchedJwks(std::shared_ptr<const std::map<std::string, std::string>> keys) {
  {
    std::lock_guard lock(mu_);
    if (mesh_.fetched_jwks == keys || (mesh_.fetched_jwks && keys && *mesh_.fetched_jwks == *keys))
      return;
    mesh_.fetched_jwks = std::move(keys);
    ++mesh_generation_;
  }
  Poke();
}

void SnapshotCache::SetTraceProviders(std::vector<compiler::MeshConfig::TraceProvider> providers) {
  {
    std::lock_guard lock(mu_);
    if (mesh_.trace_providers == providers) return;
    mesh_.trace_providers = std::move(providers);
    ++mesh_generation_;
  }
  Poke();
}

void SnapshotCache::Unregister(const std::string& id) {
  {
    std::lock_guard lock(mu_);
    auto it = workloads_.find(id);
    if (it == workloads_.end() || --it->second.connections > 0) return;
    it->second.expires = options_.now() + options_.workload_grace;
  }
  std::lock_guard lock(worker_mu_);
  worker_cv_.notify_one();  // the worker recomputes its next expiry
}

absl::Time SnapshotCache::ExpireWorkloads(absl::Time now) {
  absl::Time next = absl::InfiniteFuture();
  bool expired = false;
  {
    std::lock_guard lock(mu_);
    for (auto it = workloads_.begin(); it != workloads_.end();) {
      if (it->second.connections == 0 && it->second.expires <= now) {
        log::Info("xds: workload ", it->first, " left the registry after its grace period");
        it = workloads_.erase(it);
        expired = true;
        continue;
      }
      if (it->second.connections == 0) next = std::min(next, it->second.expires);
      ++it;
    }
    if (expired) {
      ++workload_generation_;
      stats_.workloads = workloads_.size();
    }
  }
  if (expired) Poke();
  return next;
}

void SnapshotCache::Rebuild() {
  std::vector<std::pair<SnapshotPtr, std::vector<std::shared_ptr<Watcher>>>> notify;
  {
    std::lock_guard lock(mu_);
    RefreshLocked();
    for (auto& [snap, watcher] : ReclassifyLocked()) notify.push_back({snap, {watcher}});
    std::string version = VersionLocked();
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

std::vector<std::pair<SnapshotPtr, std::shared_ptr<SnapshotCache::Watcher>>>
SnapshotCache::ReclassifyLocked() {
  std::vector<std::pair<SnapshotPtr, std::shared_ptr<Watcher>>> moved;
  if (classified_revision_ == config_->revision()) return moved;
  classified_revision_ = config_->revision();
  std::vector<std::shared_ptr<Watcher>> to_move;
  for (auto& [proxy, entry] : entries_) {
    for (const auto& w : entry.watchers) {
      compiler::ProxyClass now = compiler::ClassOf(*config_, proxy.role, proxy.ns, w->labels);
      now.inbound = proxy.inbound;
      if (!(now == proxy)) to_move.push_back(w);
    }
  }
  std::string version = VersionLocked();
  for (const auto& w : to_move) {
    auto old = entries_.find(w->proxy);
    old->second.watchers.remove(w);
    if (old->second.watchers.empty()) entries_.erase(old);
    compiler::ProxyClass next = compiler::ClassOf(*config_, w->proxy.role, w->proxy.ns, w->labels);
    next.inbound = w->proxy.inbound;
    log::Info("xds: a ", w->proxy.ToString(), " proxy is now ", next.ToString());
    w->proxy = next;
    Entry& entry = entries_[next];
    if (!entry.snapshot || entry.snapshot->version != version)
      entry.snapshot = CompileLocked(next, &entry);
    entry.watchers.push_back(w);
    moved.emplace_back(entry.snapshot, w);
  }
  stats_.classes = entries_.size();
  return moved;
}

std::optional<absl::Time> SnapshotCache::CommitTime(const std::string& version) {
  int64_t revision;
  if (!absl::SimpleAtoi(version.substr(0, version.find('.')), &revision)) return std::nullopt;
  std::lock_guard lock(mu_);
  auto it = commit_times_.find(revision);
  if (it == commit_times_.end()) return std::nullopt;
  return it->second;
}

SnapshotCache::View SnapshotCache::CurrentView() {
  std::lock_guard lock(mu_);
  RefreshLocked();
  return {config_, registry_};
}

SnapshotCache::Stats SnapshotCache::GetStats() {
  std::lock_guard lock(mu_);
  return stats_;
}

}  // namespace mesh::xds
