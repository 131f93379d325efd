#include "controlplane/model/config_index.h"

#include <algorithm>

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "controlplane/model/decode.h"

namespace mesh::model {

size_t ConfigSnapshot::ShardOf(absl::string_view key) {
  return absl::Hash<absl::string_view>()(key) % kShards;
}

const Object* ConfigSnapshot::Find(Kind kind, absl::string_view ns, absl::string_view name) const {
  std::string key = absl::StrCat(ns, "/", name);
  const Shard& shard = *kinds_[static_cast<size_t>(kind)]->shards[ShardOf(key)];
  auto it = shard.find(key);
  return it == shard.end() ? nullptr : it->second.get();
}

std::vector<const Object*> ConfigSnapshot::Sorted(Kind kind) const {
  std::vector<std::pair<const std::string*, const Object*>> all;
  for (const auto& shard : kinds_[static_cast<size_t>(kind)]->shards) {
    for (const auto& [key, obj] : *shard) all.emplace_back(&key, obj.get());
  }
  std::sort(all.begin(), all.end(),
            [](const auto& a, const auto& b) { return *a.first < *b.first; });
  std::vector<const Object*> out;
  out.reserve(all.size());
  for (const auto& [key, obj] : all) out.push_back(obj);
  return out;
}

absl::StatusOr<Object> DecodeStored(const store::KeyValue& kv) {
  nlohmann::json doc = nlohmann::json::parse(kv.value, nullptr, false);
  if (doc.is_discarded())
    return absl::DataLossError(absl::StrCat("stored value of ", kv.key, " is not JSON"));
  DecodedDocument d = DecodeDocument(doc, "", 1);
  if (d.outcome != DecodedDocument::Outcome::kObject) {
    std::string why = d.errors.empty() ? d.skip_reason : FormatError(d.display, d.errors[0]);
    return absl::DataLossError(absl::StrCat("stored value of ", kv.key, " does not decode: ", why));
  }
  d.object->meta.resource_version = std::to_string(kv.mod_revision);
  return std::move(*d.object);
}

namespace {

// Finds the kind of a store key from its "/registry/<group>/<plural>/" prefix.
const KindInfo* KindOfKey(absl::string_view key) {
  for (const KindInfo& k : AllKinds()) {
    if (key.substr(0, StorePrefix(k, "").size()) == StorePrefix(k, "")) return &k;
  }
  return nullptr;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ConfigIndex>> ConfigIndex::Start(store::Store* store) {
  std::unique_ptr<ConfigIndex> index(new ConfigIndex());
  absl::StatusOr<store::RangeResult> range = store->List(kRegistryPrefix);
  if (!range.ok()) return range.status();
  using Shard = ConfigSnapshot::Shard;
  std::array<std::array<Shard, ConfigSnapshot::kShards>, ConfigSnapshot::kKinds> maps;
  std::array<size_t, ConfigSnapshot::kKinds> counts{};
  for (const store::KeyValue& kv : range->kvs) {
    absl::StatusOr<Object> obj = DecodeStored(kv);
    if (!obj.ok()) {
      log::Error("index: ", obj.status().message());
      continue;
    }
    std::string name = absl::StrCat(obj->meta.namespace_, "/", obj->meta.name);
    size_t k = static_cast<size_t>(obj->kind->kind);
    maps[k][ConfigSnapshot::ShardOf(name)][name] = std::make_shared<Object>(std::move(*obj));
    ++counts[k];
  }
  auto snapshot = std::make_shared<ConfigSnapshot>();
  for (size_t k = 0; k < maps.size(); ++k) {
    auto kind_map = std::make_shared<ConfigSnapshot::KindMap>();
    for (size_t i = 0; i < ConfigSnapshot::kShards; ++i) {
      kind_map->shards[i] = std::make_shared<const Shard>(std::move(maps[k][i]));
    }
    kind_map->count = counts[k];
    snapshot->kinds_[k] = std::move(kind_map);
  }
  snapshot->revision_ = range->revision;
  {
    std::lock_guard lock(index->mu_);
    index->current_ = std::move(snapshot);
  }
  ConfigIndex* raw = index.get();
  absl::StatusOr<store::WatchPtr> watch =
      store->Watch(std::string(kRegistryPrefix), range->revision,
                   [raw](const std::vector<store::Event>& events) { raw->OnEvents(events); });
  if (!watch.ok()) return watch.status();
  index->watch_ = std::move(*watch);
  return index;
}

ConfigIndex::~ConfigIndex() {
  watch_.reset();
}

class ConfigIndex::SubscriptionImpl : public ConfigIndex::Subscription {
 public:
  SubscriptionImpl(ConfigIndex* index, std::list<Listener>::iterator it) : index_(index), it_(it) {}
  ~SubscriptionImpl() override {
    std::lock_guard lock(index_->listeners_mu_);
    index_->listeners_.erase(it_);
  }

 private:
  ConfigIndex* index_;
  std::list<Listener>::iterator it_;
};

std::unique_ptr<ConfigIndex::Subscription> ConfigIndex::Subscribe(Listener listener) {
  std::lock_guard lock(listeners_mu_);
  listeners_.push_back(std::move(listener));
  return std::make_unique<SubscriptionImpl>(this, std::prev(listeners_.end()));
}

void ConfigIndex::OnEvents(const std::vector<store::Event>& events) {
  using Shard = ConfigSnapshot::Shard;
  using KindMap = ConfigSnapshot::KindMap;
  ConfigSnapshotPtr base = Current();
  auto next = std::make_shared<ConfigSnapshot>(*base);
  // Copy on write: a kind's shard table, then each shard, the first time this batch touches it.
  std::array<std::shared_ptr<KindMap>, ConfigSnapshot::kKinds> kinds;
  std::map<std::pair<size_t, size_t>, std::shared_ptr<Shard>> shards;
  for (const store::Event& e : events) {
    const KindInfo* kind = KindOfKey(e.kv.key);
    if (!kind) continue;
    size_t k = static_cast<size_t>(kind->kind);
    if (!kinds[k]) kinds[k] = std::make_shared<KindMap>(*base->kinds_[k]);
    // The map key is the store key's "namespace/name" tail.
    std::string name = e.kv.key.substr(StorePrefix(*kind, "").size());
    size_t s = ConfigSnapshot::ShardOf(name);
    std::shared_ptr<Shard>& shard = shards[{k, s}];
    if (!shard) {
      shard = std::make_shared<Shard>(*kinds[k]->shards[s]);
      kinds[k]->shards[s] = shard;
    }
    if (e.type == store::Event::Type::kDelete) {
      kinds[k]->count -= shard->erase(name);
      continue;
    }
    absl::StatusOr<Object> obj = DecodeStored(e.kv);
    if (!obj.ok()) {
      log::Error("index: ", obj.status().message());
      continue;
    }
    auto [it, inserted] = shard->insert_or_assign(name, std::make_shared<Object>(std::move(*obj)));
    if (inserted) ++kinds[k]->count;
  }
  for (size_t k = 0; k < kinds.size(); ++k) {
    if (kinds[k]) next->kinds_[k] = std::move(kinds[k]);
  }
  next->revision_ = events.back().revision;
  int64_t revision = next->revision_;
  {
    std::lock_guard lock(mu_);
    current_ = std::move(next);
  }
  changed_.notify_all();
  std::lock_guard lock(listeners_mu_);
  for (const Listener& l : listeners_) l(revision);
}

ConfigSnapshotPtr ConfigIndex::Current() const {
  std::lock_guard lock(mu_);
  return current_;
}

bool ConfigIndex::WaitForRevision(int64_t revision, absl::Duration timeout) const {
  std::unique_lock lock(mu_);
  return changed_.wait_for(
      lock, absl::ToChronoNanoseconds(timeout),
      [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return current_->revision() >= revision; });
}

}  // namespace mesh::model
