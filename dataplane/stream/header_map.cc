#include "dataplane/stream/header_map.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace mesh::dataplane {

void HeaderMap::Add(absl::string_view name, absl::string_view value) {
  Field& f = fields_.emplace_back();
  f.name.resize(name.size());
  for (size_t i = 0; i < name.size(); ++i) f.name[i] = absl::ascii_tolower(name[i]);
  f.value.assign(value.data(), value.size());
}

void HeaderMap::Set(absl::string_view name, absl::string_view value) {
  std::string lower = absl::AsciiStrToLower(name);
  bool placed = false;
  for (auto it = fields_.begin(); it != fields_.end();) {
    if (it->name != lower) {
      ++it;
    } else if (!placed) {
      it->value.assign(value.data(), value.size());
      placed = true;
      ++it;
    } else {
      it = fields_.erase(it);
    }
  }
  if (!placed) fields_.push_back({std::move(lower), std::string(value)});
}

size_t HeaderMap::Remove(absl::string_view name) {
  const size_t before = fields_.size();
  std::erase_if(fields_, [&](const Field& f) { return f.name == name; });
  return before - fields_.size();
}

const std::string* HeaderMap::Get(absl::string_view name) const {
  for (const Field& f : fields_) {
    if (f.name == name) return &f.value;
  }
  return nullptr;
}

size_t HeaderMap::Count(absl::string_view name) const {
  size_t n = 0;
  for (const Field& f : fields_) n += f.name == name;
  return n;
}

std::string HeaderMap::Join(absl::string_view name) const {
  std::string out;
  for (const Field& f : fields_) {
    if (f.name != name) continue;
    if (!out.empty()) out += ", ";
    out += f.value;
  }
  return out;
}

void ForEachListElement(absl::string_view value, const std::function<void(absl::string_view)>& f) {
  for (absl::string_view element : absl::StrSplit(value, ',')) {
    element = absl::StripAsciiWhitespace(element);
    if (!element.empty()) f(element);
  }
}

}  // namespace mesh::dataplane
