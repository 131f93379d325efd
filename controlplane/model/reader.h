#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "controlplane/model/object.h"
#include "nlohmann/json.hpp"

namespace mesh::model {

// Reads one JSON object field by field into typed values, recording an error with its path for
// every field of the wrong type, and, when destroyed, one "unknown field" error for every key
// that was never read. A read of an absent or null key returns nothing and records nothing;
// `Required` records "is required". The reader never throws and never stops early, so one pass
// collects every error of a document.
class ObjectReader {
 public:
  // `value` may be null (an absent object: every read returns nothing). A non-object value
  // records "must be an object".
  ObjectReader(const nlohmann::json* value, std::string path, FieldErrors* errors);
  ~ObjectReader();
  ObjectReader(const ObjectReader&) = delete;
  ObjectReader& operator=(const ObjectReader&) = delete;

  const std::string& path() const { return path_; }
  std::string Path(absl::string_view key) const;
  FieldErrors* errors() const { return errors_; }
  void Error(absl::string_view key, std::string message) {
    errors_->Add(Path(key), std::move(message));
  }

  // Marks `key` as read and returns its value, or nullptr when absent or null.
  const nlohmann::json* Get(absl::string_view key);
  bool Has(absl::string_view key) const;
  // Records "is required" when `key` is absent or null; returns whether it is present.
  bool Required(absl::string_view key);

  std::optional<std::string> String(absl::string_view key);
  std::optional<int64_t> Int(absl::string_view key);
  std::optional<double> Number(absl::string_view key);
  std::optional<bool> Bool(absl::string_view key);
  // A duration string ("7s"); `min` is the smallest value accepted.
  std::optional<absl::Duration> Duration(absl::string_view key,
                                         absl::Duration min = absl::ZeroDuration());
  // An integer in [lo, hi].
  std::optional<int64_t> IntInRange(absl::string_view key, int64_t lo, int64_t hi);
  std::optional<uint32_t> Port(absl::string_view key) {
    auto v = IntInRange(key, 1, 65535);
    return v ? std::optional<uint32_t>(static_cast<uint32_t>(*v)) : std::nullopt;
  }
  // One of `values`; records "must be one of A, B, C" otherwise.
  std::optional<std::string> Enum(absl::string_view key,
                                  const std::vector<absl::string_view>& values);
  std::vector<std::string> StringList(absl::string_view key);
  std::map<std::string, std::string> StringMap(absl::string_view key);

  // Calls f(ObjectReader&) for the object at `key`, if present.
  template <typename F>
  void Object(absl::string_view key, F&& f) {
    const nlohmann::json* v = Get(key);
    if (!v) return;
    ObjectReader child(v, Path(key), errors_);
    if (v->is_object()) f(child);
  }
  // Calls f(element, path, index) for each element of the list at `key`, if present.
  template <typename F>
  void List(absl::string_view key, F&& f) {
    const nlohmann::json* v = Get(key);
    if (!v) return;
    if (!v->is_array()) {
      Error(key, "must be a list");
      return;
    }
    for (size_t i = 0; i < v->size(); ++i) f((*v)[i], Path(key) + "[" + std::to_string(i) + "]", i);
  }
  // Calls f(ObjectReader&, index) for each object in the list at `key`.
  template <typename F>
  void ObjectList(absl::string_view key, F&& f) {
    List(key, [&](const nlohmann::json& e, const std::string& p, size_t i) {
      ObjectReader child(&e, p, errors_);
      if (e.is_object()) f(child, i);
    });
  }
  // Calls f(map_key, value, path) for each entry of the object at `key`.
  template <typename F>
  void Map(absl::string_view key, F&& f) {
    const nlohmann::json* v = Get(key);
    if (!v) return;
    if (!v->is_object()) {
      Error(key, "must be an object");
      return;
    }
    for (const auto& [k, e] : v->items()) f(k, e, Path(key) + "." + k);
  }

 private:
  const nlohmann::json* value_;
  std::string path_;
  FieldErrors* errors_;
  std::set<std::string, std::less<>> read_;
};

}  // namespace mesh::model
