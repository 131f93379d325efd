#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "controlplane/model/istio.h"
#include "controlplane/model/kinds.h"
#include "nlohmann/json.hpp"

namespace mesh::model {

struct ObjectMeta {
  std::string name;
  std::string namespace_;
  Labels labels;
  std::map<std::string, std::string> annotations;
  // Set by the server; ignored in requests except resourceVersion (a precondition).
  std::string uid;
  std::string creation_timestamp;
  int64_t generation = 0;
  std::string resource_version;
};

// Istio's order for merging (VirtualServices at a gateway): the oldest first; not yet created
// (no creationTimestamp) last; then namespace and name.
bool CreatedBefore(const ObjectMeta& a, const ObjectMeta& b);

// A decoded, validated resource. `spec` holds the typed form; `spec_json` the spec as the
// operator wrote it (after YAML decoding), which is what the store keeps and GET returns.
struct Object {
  const KindInfo* kind = nullptr;
  std::string api_version;
  ObjectMeta meta;
  nlohmann::json spec_json;
  Spec spec;

  // "VirtualService voting/voting-app", the name errors and warnings use.
  std::string DisplayName() const;
  // The resource as the API returns it: apiVersion, kind, metadata, spec.
  nlohmann::json ToJson() const;
};

// One problem with one field. `path` is dotted from the document root
// ("spec.http[0].route[1].weight"); empty for the document as a whole.
struct FieldError {
  std::string path;
  std::string message;
  bool operator==(const FieldError&) const = default;
};

// Collects every error of a document, in the order found.
class FieldErrors {
 public:
  void Add(std::string path, std::string message) {
    list_.push_back(FieldError{std::move(path), std::move(message)});
  }
  bool empty() const { return list_.empty(); }
  const std::vector<FieldError>& list() const { return list_; }

 private:
  std::vector<FieldError> list_;
};

}  // namespace mesh::model
