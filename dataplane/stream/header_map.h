#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace mesh::dataplane {

// One header block as it travels between the codecs and the stream layer: fields in the order
// they arrived, names in lower case (as HTTP/2 requires; HTTP/1.1 names are case-insensitive,
// so lower case is what both codecs send). Values are kept as received. Not thread-safe; a map
// belongs to one stream on one worker.
class HeaderMap {
 public:
  struct Field {
    std::string name;  // lower case
    std::string value;
  };
  using const_iterator = std::vector<Field>::const_iterator;

  // Appends a field; `name` is lower-cased.
  void Add(absl::string_view name, absl::string_view value);
  // Replaces every field named `name` with one holding `value` (in the first one's place).
  void Set(absl::string_view name, absl::string_view value);
  // Removes every field named `name`; returns how many there were.
  size_t Remove(absl::string_view name);
  // The first field named `name`, or nullptr. `name` must be lower case.
  const std::string* Get(absl::string_view name) const;
  size_t Count(absl::string_view name) const;
  // Every value of `name` joined with ", " (RFC 9110 5.3); empty when absent.
  std::string Join(absl::string_view name) const;
  // Calls f(value) for each comma-separated element of every `name` field, whitespace trimmed
  // and empty elements skipped.
  template <typename F>
  void ForEachElement(absl::string_view name, F&& f) const;

  const_iterator begin() const { return fields_.begin(); }
  const_iterator end() const { return fields_.end(); }
  size_t size() const { return fields_.size(); }
  bool empty() const { return fields_.empty(); }
  void clear() { fields_.clear(); }

 private:
  std::vector<Field> fields_;
};

// Splits `value` at commas and calls f(element) for each trimmed, non-empty element.
void ForEachListElement(absl::string_view value, const std::function<void(absl::string_view)>& f);

template <typename F>
void HeaderMap::ForEachElement(absl::string_view name, F&& f) const {
  for (const Field& field : fields_) {
    if (field.name == name) ForEachListElement(field.value, f);
  }
}

}  // namespace mesh::dataplane
