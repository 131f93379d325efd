#include "controlplane/api/resource_service.h"

#include <map>
#include <random>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/log.h"
#include "controlplane/model/decode.h"

namespace mesh::api {

struct Batch {
  std::vector<model::Object> objects;
  std::vector<ApplyItem> items;      // one per document, in document order
  std::vector<size_t> object_items;  // index in `items` of each object
};

namespace {

using model::DecodedDocument;
using model::Object;
using nlohmann::json;

std::string NewUid() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  uint64_t a = rng(), b = rng();
  // RFC 4122 version 4 layout.
  a = (a & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;
  b = (b & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;
  return absl::StrFormat("%08x-%04x-%04x-%04x-%012x", a >> 32, (a >> 16) & 0xffff, a & 0xffff,
                         b >> 48, b & 0xffffffffffffULL);
}

std::string Now() {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::Now(), absl::UTCTimeZone());
}

json MetaField(const json& stored, const char* key) {
  if (!stored.is_object() || !stored.contains("metadata") || !stored["metadata"].is_object())
    return json();
  const json& meta = stored["metadata"];
  return meta.contains(key) ? meta[key] : json();
}

// The stored form: what GET returns, minus resourceVersion (which comes from the store).
std::string StoredValue(const Object& o, const std::string& uid, const std::string& created,
                        int64_t generation) {
  json meta = {{"name", o.meta.name}, {"namespace", o.meta.namespace_}};
  if (!o.meta.labels.empty()) meta["labels"] = o.meta.labels;
  if (!o.meta.annotations.empty()) meta["annotations"] = o.meta.annotations;
  meta["uid"] = uid;
  meta["creationTimestamp"] = created;
  meta["generation"] = generation;
  return json{{"apiVersion", o.api_version},
              {"kind", o.kind->name},
              {"metadata", std::move(meta)},
              {"spec", o.spec_json}}
      .dump();
}

// The stored form of `o` replacing `current` (a parsed stored value, or nullptr when there is
// none): the identity (uid, creationTimestamp) carries over and the generation counts spec
// changes, as in Kubernetes.
std::string NextStoredValue(const Object& o, const json* current) {
  std::string uid = NewUid(), created = Now();
  int64_t generation = 1;
  if (current && current->is_object()) {
    if (MetaField(*current, "uid").is_string()) uid = MetaField(*current, "uid");
    if (MetaField(*current, "creationTimestamp").is_string()) {
      created = MetaField(*current, "creationTimestamp");
    }
    int64_t old = MetaField(*current, "generation").is_number_integer()
                      ? MetaField(*current, "generation").get<int64_t>()
                      : 1;
    generation = old + (current->value("spec", json()) == o.spec_json ? 0 : 1);
  }
  return StoredValue(o, uid, created, generation);
}

std::string LowerGroupKind(absl::string_view api_version, absl::string_view kind) {
  absl::string_view group, version;
  model::SplitApiVersion(api_version, &group, &version);
  std::string out = absl::AsciiStrToLower(kind);
  if (!group.empty()) absl::StrAppend(&out, ".", group);
  return out;
}

std::string Key(const Object& o) {
  return model::StoreKey(*o.kind, o.meta.namespace_, o.meta.name);
}

// Display name used by 404/409 messages: "virtualservice.networking.istio.io \"voting/x\"".
std::string Describe(const model::KindInfo& kind, absl::string_view ns, absl::string_view name) {
  return absl::StrCat(kind.QualifiedName(), " \"", ns, "/", name, "\"");
}

absl::Status InvalidList(const std::vector<std::string>& errors) {
  return absl::InvalidArgumentError(absl::StrJoin(errors, "\n"));
}

// Decodes every document; returns InvalidArgument with all errors, or the objects and the
// answer items (objects' items to be completed) in document order.

absl::StatusOr<Batch> DecodeBatch(const std::vector<json>& docs, absl::string_view default_ns,
                                  const model::DecodeOptions& options) {
  Batch batch;
  std::vector<std::string> errors;
  std::set<std::string> keys;
  for (size_t i = 0; i < docs.size(); ++i) {
    DecodedDocument d = model::DecodeDocument(docs[i], default_ns, i + 1, options);
    ApplyItem item{
        d.kind, d.api_version, d.ns, d.name, "", 0, LowerGroupKind(d.api_version, d.kind), ""};
    switch (d.outcome) {
      case DecodedDocument::Outcome::kInvalid:
        for (const auto& e : d.errors) errors.push_back(model::FormatError(d.display, e));
        break;
      case DecodedDocument::Outcome::kSkipped:
        item.action = "skipped";
        item.note = d.skip_reason;
        break;
      case DecodedDocument::Outcome::kObject:
        if (!keys.insert(Key(*d.object)).second) {
          errors.push_back(absl::StrCat(d.display, ": appears more than once in this request"));
          break;
        }
        item.qualified_kind = d.object->kind->QualifiedName();
        batch.object_items.push_back(batch.items.size());
        batch.objects.push_back(std::move(*d.object));
        break;
    }
    batch.items.push_back(std::move(item));
  }
  if (!errors.empty()) return InvalidList(errors);
  return batch;
}

bool IsConflict(const absl::Status& s) {
  return absl::IsFailedPrecondition(s) || absl::IsAlreadyExists(s) || absl::IsNotFound(s);
}

}  // namespace

json StoredToJson(const store::KeyValue& kv, const model::KindInfo& kind, absl::string_view version,
                  int64_t resource_version) {
  json obj = json::parse(kv.value, nullptr, false);
  if (obj.is_discarded() || !obj.is_object()) obj = json::object();
  if (!version.empty()) obj["apiVersion"] = kind.ApiVersion(version);
  obj["metadata"]["resourceVersion"] = std::to_string(resource_version);
  return obj;
}

json ApplyResult::ToJson() const {
  json items_json = json::array();
  for (const ApplyItem& i : items) {
    json j = {{"kind", i.kind},
              {"apiVersion", i.api_version},
              {"namespace", i.ns},
              {"name", i.name},
              {"action", i.action}};
    if (i.resource_version) j["resourceVersion"] = std::to_string(i.resource_version);
    if (!i.note.empty()) j["note"] = i.note;
    items_json.push_back(std::move(j));
  }
  json warnings_json = json::array();
  for (const auto& w : warnings) {
    warnings_json.push_back({{"object", w.object}, {"path", w.path}, {"message", w.message}});
  }
  return {
      {"items", items_json}, {"warnings", warnings_json}, {"revision", std::to_string(revision)}};
}

std::string ApplyResult::ToText() const {
  std::string out;
  for (const ApplyItem& i : items) {
    absl::StrAppend(&out, i.qualified_kind, "/", i.name, " ", i.action);
    if (!i.note.empty()) absl::StrAppend(&out, " (", i.note, ")");
    out += "\n";
  }
  for (const auto& w : warnings) absl::StrAppend(&out, "Warning: ", w.ToString(), "\n");
  return out;
}

ResourceService::ResourceService(store::Store* store, model::ConfigIndex* index,
                                 ServiceOptions options)
    : store_(store), index_(index), options_(options) {}

absl::StatusOr<std::vector<json>> ResourceService::ParseBody(absl::string_view body,
                                                             BodyFormat format) const {
  std::vector<json> docs;
  if (format == BodyFormat::kJson) {
    // Nothing below recurses on input depth, but printing a value does; keep it bounded.
    if (auto s = CheckNestingDepth(body, options_.yaml.max_depth); !s.ok()) return s;
    json doc = json::parse(body, nullptr, false);
    if (doc.is_discarded()) {
      // Parse again with exceptions on to get the position of the error.
      try {
        json unused = json::parse(body);
        (void)unused;
      } catch (const json::parse_error& e) {
        return absl::InvalidArgumentError(absl::StrCat("invalid JSON: ", e.what()));
      }
      return absl::InvalidArgumentError("invalid JSON");
    }
    docs.push_back(std::move(doc));
  } else {
    absl::StatusOr<std::vector<json>> parsed = ParseYamlDocuments(body, options_.yaml);
    if (!parsed.ok()) return parsed.status();
    docs = std::move(*parsed);
  }
  for (size_t i = 0; i < docs.size(); ++i) {
    if (absl::Status utf8 = CheckUtf8(docs[i]); !utf8.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("document ", i + 1, ": ", utf8.message()));
    }
  }
  docs = model::ExpandDocuments(std::move(docs));
  if (docs.size() > options_.yaml.max_documents) {
    return absl::InvalidArgumentError(
        absl::StrCat("more than ", options_.yaml.max_documents, " documents in one request"));
  }
  if (docs.empty()) return absl::InvalidArgumentError("the request holds no document");
  return docs;
}

absl::StatusOr<Batch> ResourceService::ParseBatch(absl::string_view body, BodyFormat format,
                                                  absl::string_view default_ns) const {
  absl::StatusOr<std::vector<json>> docs = ParseBody(body, format);
  if (!docs.ok()) return docs.status();
  return DecodeBatch(*docs, default_ns, options_.decode);
}

absl::StatusOr<ApplyResult> ResourceService::Apply(absl::string_view body, BodyFormat format,
                                                   absl::string_view default_ns) {
  absl::StatusOr<Batch> batch = ParseBatch(body, format, default_ns);
  if (!batch.ok()) return batch.status();
  for (int attempt = 0;; ++attempt) {
    bool retry = false;
    absl::StatusOr<ApplyResult> result = ApplyOnce(*batch, &retry);
    if (result.ok() || !retry || attempt >= options_.max_apply_retries) return result;
  }
}

absl::StatusOr<ApplyResult> ResourceService::ApplyOnce(const Batch& batch, bool* retry) {
  const std::vector<Object>& objects = batch.objects;
  std::vector<ApplyItem> items = batch.items;
  std::vector<store::Op> ops;
  std::vector<size_t> op_items;
  bool user_versions = false;
  std::vector<std::string> keys;
  for (const Object& o : objects) keys.push_back(Key(o));
  absl::StatusOr<std::vector<std::optional<store::KeyValue>>> current = store_->GetMany(keys);
  if (!current.ok()) return current.status();
  for (size_t i = 0; i < objects.size(); ++i) {
    const Object& o = objects[i];
    ApplyItem& it = items[batch.object_items[i]];
    const std::optional<store::KeyValue>* cur = &(*current)[i];
    if (!o.meta.resource_version.empty()) {
      user_versions = true;
      int64_t want = 0;
      (void)absl::SimpleAtoi(o.meta.resource_version, &want);
      if (!*cur) {
        return absl::NotFoundError(absl::StrCat(o.DisplayName(),
                                                ": does not exist, but metadata.resourceVersion ",
                                                want, " was given"));
      }
      if ((*cur)->mod_revision != want) {
        return absl::FailedPreconditionError(
            absl::StrCat(o.DisplayName(), ": the object has been modified: resourceVersion is ",
                         (*cur)->mod_revision, ", not ", want));
      }
    }
    json stored;
    if (*cur) {
      stored = json::parse((*cur)->value, nullptr, false);
      if (stored.is_discarded()) stored = json::object();
      json labels = MetaField(stored, "labels"), annotations = MetaField(stored, "annotations");
      bool same_meta =
          labels == (o.meta.labels.empty() ? json() : json(o.meta.labels)) &&
          annotations == (o.meta.annotations.empty() ? json() : json(o.meta.annotations));
      bool same_spec = stored.value("spec", json()) == o.spec_json;
      if (same_meta && same_spec) {
        // Unchanged, as read: the write of the others holds only if it still is.
        it.action = "unchanged";
        it.resource_version = (*cur)->mod_revision;
        ops.push_back(store::Op::Check(Key(o), (*cur)->mod_revision));
        continue;
      }
      it.action = "configured";
    } else {
      it.action = "created";
    }
    ops.push_back(store::Op::Put(Key(o), NextStoredValue(o, *cur ? &stored : nullptr),
                                 *cur ? (*cur)->mod_revision : 0));
    op_items.push_back(batch.object_items[i]);
  }

  ApplyResult result;
  result.revision = store_->Revision();
  if (!op_items.empty()) {  // a batch of unchanged objects writes nothing
    absl::StatusOr<store::CommitResult> commit = Write(std::move(ops));
    if (!commit.ok()) {
      *retry = IsConflict(commit.status()) && !user_versions;
      if (IsConflict(commit.status())) {
        return absl::FailedPreconditionError(absl::StrCat(
            "a resource changed while it was being applied: ", commit.status().message()));
      }
      return commit.status();
    }
    result.revision = commit->revision;
    for (size_t idx : op_items) items[idx].resource_version = commit->revision;
  }
  result.items = std::move(items);

  std::vector<const Object*> overlay;
  for (const Object& o : objects) overlay.push_back(&o);
  result.warnings = model::Analyze(*index_->Current(), overlay, true);
  return result;
}

absl::StatusOr<ApplyResult> ResourceService::DeleteApplied(absl::string_view body,
                                                           BodyFormat format,
                                                           absl::string_view default_ns) {
  absl::StatusOr<Batch> batch = ParseBatch(body, format, default_ns);
  if (!batch.ok()) return batch.status();
  for (int attempt = 0;; ++attempt) {
    ApplyResult result;
    std::vector<store::Op> ops;
    std::vector<size_t> op_items;
    std::vector<std::string> keys;
    for (const Object& o : batch->objects) keys.push_back(Key(o));
    absl::StatusOr<std::vector<std::optional<store::KeyValue>>> current = store_->GetMany(keys);
    if (!current.ok()) return current.status();
    for (size_t i = 0; i < batch->objects.size(); ++i) {
      ApplyItem& it = batch->items[batch->object_items[i]];
      const std::optional<store::KeyValue>* cur = &(*current)[i];
      if (!*cur) {
        // Absent, as read: the deletion of the others holds only if it still is.
        it.action = "not found";
        ops.push_back(store::Op::Check(Key(batch->objects[i]), 0));
        continue;
      }
      ops.push_back(store::Op::Delete(Key(batch->objects[i]), (*cur)->mod_revision));
      op_items.push_back(batch->object_items[i]);
    }
    result.revision = store_->Revision();
    if (!op_items.empty()) {
      absl::StatusOr<store::CommitResult> commit = Write(std::move(ops));
      if (!commit.ok()) {
        if (IsConflict(commit.status()) && attempt < options_.max_apply_retries) continue;
        return commit.status();
      }
      result.revision = commit->revision;
      for (size_t idx : op_items) {
        batch->items[idx].action = "deleted";
        batch->items[idx].resource_version = commit->revision;
      }
    }
    result.items = batch->items;
    return result;
  }
}

absl::StatusOr<json> ResourceService::Get(const model::KindInfo& kind, absl::string_view version,
                                          absl::string_view ns, absl::string_view name) {
  absl::StatusOr<std::optional<store::KeyValue>> kv = store_->Get(model::StoreKey(kind, ns, name));
  if (!kv.ok()) return kv.status();
  if (!*kv) return absl::NotFoundError(absl::StrCat(Describe(kind, ns, name), " not found"));
  return StoredToJson(**kv, kind, version, (*kv)->mod_revision);
}

absl::StatusOr<json> ResourceService::List(const model::KindInfo& kind, absl::string_view version,
                                           absl::string_view ns) {
  absl::StatusOr<store::RangeResult> range = store_->List(model::StorePrefix(kind, ns));
  if (!range.ok()) return range.status();
  json items = json::array();
  for (const store::KeyValue& kv : range->kvs)
    items.push_back(StoredToJson(kv, kind, version, kv.mod_revision));
  return json{{"apiVersion", kind.ApiVersion(version)},
              {"kind", absl::StrCat(kind.name, "List")},
              {"metadata", {{"resourceVersion", std::to_string(range->revision)}}},
              {"items", std::move(items)}};
}

absl::StatusOr<json> ResourceService::Write(const model::KindInfo& kind, absl::string_view version,
                                            absl::string_view ns, absl::string_view path_name,
                                            absl::string_view body, BodyFormat format, bool replace,
                                            bool* created) {
  absl::StatusOr<std::vector<json>> docs = ParseBody(body, format);
  if (!docs.ok()) return docs.status();
  if (docs->size() != 1)
    return absl::InvalidArgumentError("this request takes exactly one document");
  DecodedDocument d = model::DecodeDocument((*docs)[0], ns, 1, options_.decode);
  std::vector<std::string> errors;
  if (d.outcome == DecodedDocument::Outcome::kSkipped || (d.object && d.object->kind != &kind)) {
    errors.push_back(absl::StrCat(d.display, ": kind: ", d.api_version, " ", d.kind,
                                  " does not match the path, which serves ",
                                  kind.PreferredApiVersion(), " ", kind.name));
  }
  if (d.ns != ns) {
    errors.push_back(absl::StrCat(d.display, ": metadata.namespace: \"", d.ns,
                                  "\" does not match the namespace of the path, \"", ns, "\""));
  }
  if (replace && d.name != path_name) {
    errors.push_back(absl::StrCat(d.display, ": metadata.name: \"", d.name,
                                  "\" does not match the name of the path, \"", path_name, "\""));
  }
  for (const auto& e : d.errors) errors.push_back(model::FormatError(d.display, e));
  if (!errors.empty()) return InvalidList(errors);
  const Object& o = *d.object;
  std::string key = Key(o);

  for (int attempt = 0;; ++attempt) {
    absl::StatusOr<std::optional<store::KeyValue>> cur = store_->Get(key);
    if (!cur.ok()) return cur.status();
    std::optional<int64_t> expect;
    json stored;
    if (!replace) {
      if (*cur)
        return absl::AlreadyExistsError(
            absl::StrCat(Describe(kind, o.meta.namespace_, o.meta.name), " already exists"));
      expect = 0;
    } else if (*cur) {
      stored = json::parse((*cur)->value, nullptr, false);
      expect = (*cur)->mod_revision;
    } else {
      expect = 0;
    }
    if (!o.meta.resource_version.empty()) {
      int64_t want = 0;
      (void)absl::SimpleAtoi(o.meta.resource_version, &want);
      if (!*cur)
        return absl::NotFoundError(
            absl::StrCat(Describe(kind, o.meta.namespace_, o.meta.name), " not found"));
      if ((*cur)->mod_revision != want) {
        return absl::FailedPreconditionError(absl::StrCat(
            "Operation cannot be fulfilled on ", Describe(kind, o.meta.namespace_, o.meta.name),
            ": the object has been modified; resourceVersion is ", (*cur)->mod_revision, ", not ",
            want));
      }
    }
    absl::StatusOr<store::CommitResult> commit = Write(
        {store::Op::Put(key, NextStoredValue(o, stored.is_object() ? &stored : nullptr), expect)});
    if (commit.ok()) {
      // The precondition decided it: a create expected the key absent and found it so.
      if (created) *created = commit->kvs[0].create_revision == commit->kvs[0].mod_revision;
      return StoredToJson(commit->kvs[0], kind, version, commit->revision);
    }
    if (!IsConflict(commit.status())) return commit.status();
    if (!o.meta.resource_version.empty() || attempt >= options_.max_apply_retries) {
      return absl::FailedPreconditionError(absl::StrCat(
          "Operation cannot be fulfilled on ", Describe(kind, o.meta.namespace_, o.meta.name),
          ": the object has been modified"));
    }
  }
}

absl::StatusOr<json> ResourceService::Delete(const model::KindInfo& kind, absl::string_view version,
                                             absl::string_view ns, absl::string_view name) {
  absl::StatusOr<store::CommitResult> commit =
      Write({store::Op::Delete(model::StoreKey(kind, ns, name))});
  if (!commit.ok()) {
    if (absl::IsNotFound(commit.status())) {
      return absl::NotFoundError(absl::StrCat(Describe(kind, ns, name), " not found"));
    }
    return commit.status();
  }
  return StoredToJson(commit->kvs[0], kind, version, commit->revision);
}

absl::StatusOr<store::WatchPtr> ResourceService::Watch(const model::KindInfo& kind,
                                                       absl::string_view version,
                                                       absl::string_view ns,
                                                       std::optional<int64_t> after_revision,
                                                       EventSink sink) {
  std::string prefix = model::StorePrefix(kind, ns);
  int64_t from;
  if (after_revision) {
    from = *after_revision;
  } else {
    absl::StatusOr<store::RangeResult> range = store_->List(prefix);
    if (!range.ok()) return range.status();
    for (const store::KeyValue& kv : range->kvs) {
      sink(json{{"type", "ADDED"}, {"object", StoredToJson(kv, kind, version, kv.mod_revision)}}
               .dump());
    }
    from = range->revision;
  }
  std::string v(version);
  const model::KindInfo* k = &kind;
  absl::StatusOr<store::WatchPtr> watch =
      store_->Watch(prefix, from, [sink, v, k](const std::vector<store::Event>& events) {
        for (const store::Event& e : events) {
          const char* type = e.type == store::Event::Type::kDelete ? "DELETED"
                             : e.created()                         ? "ADDED"
                                                                   : "MODIFIED";
          sink(json{{"type", type}, {"object", StoredToJson(e.kv, *k, v, e.revision)}}.dump());
        }
      });
  if (!watch.ok() && absl::IsOutOfRange(watch.status())) {
    return absl::OutOfRangeError(
        absl::StrCat("too old resource version: ", watch.status().message()));
  }
  return watch;
}

absl::StatusOr<store::CommitResult> ResourceService::Write(std::vector<store::Op> ops) {
  absl::StatusOr<store::CommitResult> commit = store_->Commit(std::move(ops));
  if (commit.ok()) {
    int64_t seen = last_write_revision_.load();
    while (commit->revision > seen &&
           !last_write_revision_.compare_exchange_weak(seen, commit->revision)) {
    }
  }
  return commit;
}

std::vector<model::Warning> ResourceService::Analyze(absl::string_view ns) {
  // Read-your-writes: let the index catch up with the resources written through this service.
  index_->WaitForRevision(last_write_revision_.load(), absl::Seconds(2));
  return model::Analyze(*index_->Current(), {}, false, ns);
}

}  // namespace mesh::api
