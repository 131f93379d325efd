#include "controlplane/model/config_index.h"

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "controlplane/model/decode.h"

namespace mesh::model {

const Object* ConfigSnapshot::Find(Kind kind, absl::string_view ns, absl::string_view name) const {
  const ObjectMap& map = Of(kind);
  auto it = map.find(absl::StrCat(ns, "/", name));
  return it == map.end() ? nullptr : it->second.get();
}

absl::StatusOr<Object> DecodeStored(const store::KeyValue& kv) {
  nlohmann::json doc = nlohmann::json::parse(kv.value, nullptr, false);
  if (doc.is_discarded()) return absl::DataLossError(absl::StrCat("stored value of ", kv.key, " is not JSON"));
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
  std::array<ConfigSnapshot::ObjectMap, ConfigSnapshot::kKinds> maps;
  for (const store::KeyValue& kv : range->kvs) {
    absl::StatusOr<Object> obj = DecodeStored(kv);
    if (!obj.ok()) {
      log::Error("index: ", obj.status().message());
      continue;
    }
    std::string name = absl::StrCat(obj->meta.namespace_, "/", obj->meta.name);
    maps[static_cast<size_t>(obj->kind->kind)][name] = std::make_shared<Object>(std::move(*obj));
  }
  auto snapshot = std::make_shared<ConfigSnapshot>();
  for (size_t i = 0; i < maps.size(); ++i) {
    snapshot->maps_[i] = std::make_shared<const ConfigSnapshot::ObjectMap>(std::move(maps[i]));
  }
  snapshot->revision_ = range->revision;
  {
    std::lock_guard lock(index->mu_);
    index->current_ = std::move(snapshot);
  }
  ConfigIndex* raw = index.get();
  absl::StatusOr<store::WatchPtr> watch = store->Watch(
      std::string(kRegistryPrefix), range->revision,
      [raw](const std::vector<store::Event>& events) { raw->OnEvents(events); });
  if (!watch.ok()) return watch.status();
  index->watch_ = std::move(*watch);
  return index;
}

ConfigIndex::~ConfigIndex() { watch_.reset(); }

void ConfigIndex::OnEvents(const std::vector<store::Event>& events) {
  ConfigSnapshotPtr base = Current();
  auto next = std::make_shared<ConfigSnapshot>(*base);
  std::array<std::shared_ptr<ConfigSnapshot::ObjectMap>, ConfigSnapshot::kKinds> copies;
  for (const store::Event& e : events) {
    const KindInfo* kind = KindOfKey(e.kv.key);
    if (!kind) continue;
    size_t i = static_cast<size_t>(kind->kind);
    if (!copies[i]) copies[i] = std::make_shared<ConfigSnapshot::ObjectMap>(*base->maps_[i]);
    // The map key is the key's "namespace/name" tail.
    std::string name = e.kv.key.substr(StorePrefix(*kind, "").size());
    if (e.type == store::Event::Type::kDelete) {
      copies[i]->erase(name);
      continue;
    }
    absl::StatusOr<Object> obj = DecodeStored(e.kv);
    if (!obj.ok()) {
      log::Error("index: ", obj.status().message());
      continue;
    }
    (*copies[i])[name] = std::make_shared<Object>(std::move(*obj));
  }
  for (size_t i = 0; i < copies.size(); ++i) {
    if (copies[i]) next->maps_[i] = std::move(copies[i]);
  }
  next->revision_ = events.back().revision;
  {
    std::lock_guard lock(mu_);
    current_ = std::move(next);
  }
  changed_.notify_all();
}

ConfigSnapshotPtr ConfigIndex::Current() const {
  std::lock_guard lock(mu_);
  return current_;
}

bool ConfigIndex::WaitForRevision(int64_t revision, absl::Duration timeout) const {
  std::unique_lock lock(mu_);
  return changed_.wait_for(lock, absl::ToChronoNanoseconds(timeout),
                           [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return current_->revision() >= revision; });
}

}  // namespace mesh::model
