#include "controlplane/model/reader.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/duration.h"

namespace mesh::model {

ObjectReader::ObjectReader(const nlohmann::json* value, std::string path, FieldErrors* errors)
    : value_(value), path_(std::move(path)), errors_(errors) {
  if (value_ && value_->is_null()) value_ = nullptr;
  if (value_ && !value_->is_object()) {
    errors_->Add(path_, "must be an object");
    value_ = nullptr;
  }
}

ObjectReader::~ObjectReader() {
  if (!value_) return;
  for (const auto& [key, v] : value_->items()) {
    if (!read_.count(key)) errors_->Add(Path(key), "unknown field");
  }
}

std::string ObjectReader::Path(absl::string_view key) const {
  return path_.empty() ? std::string(key) : absl::StrCat(path_, ".", key);
}

const nlohmann::json* ObjectReader::Get(absl::string_view key) {
  read_.emplace(key);
  if (!value_) return nullptr;
  auto it = value_->find(key);
  if (it == value_->end() || it->is_null()) return nullptr;
  return &*it;
}

bool ObjectReader::Has(absl::string_view key) const {
  if (!value_) return false;
  auto it = value_->find(key);
  return it != value_->end() && !it->is_null();
}

bool ObjectReader::Required(absl::string_view key) {
  if (Has(key)) return true;
  Error(key, "is required");
  return false;
}

std::optional<std::string> ObjectReader::String(absl::string_view key) {
  const nlohmann::json* v = Get(key);
  if (!v) return std::nullopt;
  if (!v->is_string()) {
    Error(key, "must be a string");
    return std::nullopt;
  }
  return v->get<std::string>();
}

std::optional<int64_t> ObjectReader::Int(absl::string_view key) {
  const nlohmann::json* v = Get(key);
  if (!v) return std::nullopt;
  if (v->is_number_integer()) return v->get<int64_t>();
  if (v->is_number_float()) {
    double d = v->get<double>();
    if (d == static_cast<double>(static_cast<int64_t>(d))) return static_cast<int64_t>(d);
  }
  Error(key, "must be an integer");
  return std::nullopt;
}

std::optional<double> ObjectReader::Number(absl::string_view key) {
  const nlohmann::json* v = Get(key);
  if (!v) return std::nullopt;
  if (!v->is_number()) {
    Error(key, "must be a number");
    return std::nullopt;
  }
  return v->get<double>();
}

std::optional<bool> ObjectReader::Bool(absl::string_view key) {
  const nlohmann::json* v = Get(key);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) {
    Error(key, "must be true or false");
    return std::nullopt;
  }
  return v->get<bool>();
}

std::optional<absl::Duration> ObjectReader::Duration(absl::string_view key, absl::Duration min) {
  std::optional<std::string> s = String(key);
  if (!s) return std::nullopt;
  absl::StatusOr<absl::Duration> d = ParseDuration(*s);
  if (!d.ok()) {
    Error(key, std::string(d.status().message()));
    return std::nullopt;
  }
  if (*d < min) {
    Error(key, absl::StrCat("must be at least ", absl::FormatDuration(min)));
    return std::nullopt;
  }
  return *d;
}

std::optional<int64_t> ObjectReader::IntInRange(absl::string_view key, int64_t lo, int64_t hi) {
  std::optional<int64_t> v = Int(key);
  if (!v) return std::nullopt;
  if (*v < lo || *v > hi) {
    Error(key, absl::StrCat("must be between ", lo, " and ", hi));
    return std::nullopt;
  }
  return v;
}

std::optional<std::string> ObjectReader::Enum(absl::string_view key,
                                              const std::vector<absl::string_view>& values) {
  std::optional<std::string> s = String(key);
  if (!s) return std::nullopt;
  for (auto v : values) {
    if (*s == v) return s;
  }
  Error(key, absl::StrCat("must be one of ", absl::StrJoin(values, ", ")));
  return std::nullopt;
}

std::vector<std::string> ObjectReader::StringList(absl::string_view key) {
  std::vector<std::string> out;
  List(key, [&](const nlohmann::json& e, const std::string& path, size_t) {
    if (e.is_string())
      out.push_back(e.get<std::string>());
    else
      errors_->Add(path, "must be a string");
  });
  return out;
}

std::map<std::string, std::string> ObjectReader::StringMap(absl::string_view key) {
  std::map<std::string, std::string> out;
  Map(key, [&](const std::string& k, const nlohmann::json& e, const std::string& path) {
    if (e.is_string())
      out[k] = e.get<std::string>();
    else
      errors_->Add(path, "must be a string");
  });
  return out;
}

}  // namespace mesh::model
