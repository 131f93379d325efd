#include "controlplane/model/object.h"

#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace mesh::model {

bool CreatedBefore(const ObjectMeta& a, const ObjectMeta& b) {
  auto created = [](const ObjectMeta& m) {
    absl::Time t = absl::InfiniteFuture();
    std::string err;
    if (!m.creation_timestamp.empty())
      absl::ParseTime(absl::RFC3339_full, m.creation_timestamp, &t, &err);
    return t;
  };
  const absl::Time ta = created(a), tb = created(b);
  if (ta != tb) return ta < tb;
  return std::tie(a.namespace_, a.name) < std::tie(b.namespace_, b.name);
}

std::string Object::DisplayName() const {
  return absl::StrCat(kind ? kind->name : "?", " ", meta.namespace_, "/", meta.name);
}

nlohmann::json Object::ToJson() const {
  nlohmann::json meta_json = {{"name", meta.name}, {"namespace", meta.namespace_}};
  if (!meta.labels.empty()) meta_json["labels"] = meta.labels;
  if (!meta.annotations.empty()) meta_json["annotations"] = meta.annotations;
  if (!meta.uid.empty()) meta_json["uid"] = meta.uid;
  if (!meta.creation_timestamp.empty()) meta_json["creationTimestamp"] = meta.creation_timestamp;
  if (meta.generation > 0) meta_json["generation"] = meta.generation;
  if (!meta.resource_version.empty()) meta_json["resourceVersion"] = meta.resource_version;
  return nlohmann::json{{"apiVersion", api_version},
                        {"kind", kind ? std::string(kind->name) : ""},
                        {"metadata", std::move(meta_json)},
                        {"spec", spec_json}};
}

}  // namespace mesh::model
