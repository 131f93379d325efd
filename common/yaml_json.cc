#include "common/yaml_json.h"

#include <yaml-cpp/yaml.h>

#include <cmath>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "re2/re2.h"

namespace mesh {
namespace {

using nlohmann::json;

class LimitError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace

absl::Status CheckNestingDepth(absl::string_view text, size_t max_depth) {
  size_t depth = 0;
  char quote = 0;
  bool comment = false, escaped = false;
  for (char c : text) {
    if (quote) {
      if (escaped)
        escaped = false;
      else if (c == '\\' && quote == '"')
        escaped = true;
      else if (c == quote)
        quote = 0;
      continue;
    }
    if (c == '\n') {
      comment = false;
      continue;
    }
    if (comment) continue;
    if (c == '#')
      comment = true;
    else if (c == '"' || c == '\'')
      quote = c;
    else if (c == '[' || c == '{') {
      if (++depth > max_depth) {
        return absl::InvalidArgumentError(
            absl::StrCat("YAML nesting deeper than ", max_depth, " levels"));
      }
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return absl::OkStatus();
}

namespace {

json ResolvePlainScalar(const std::string& s) {
  static const LazyRE2 kInt = {R"([-+]?[0-9]+)"};
  static const LazyRE2 kOct = {R"(0o[0-7]+)"};
  static const LazyRE2 kHex = {R"(0x[0-9a-fA-F]+)"};
  static const LazyRE2 kFloat = {R"([-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?)"};
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return nullptr;
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  if (RE2::FullMatch(s, *kInt)) {
    int64_t v;
    if (absl::SimpleAtoi(s, &v)) return v;
    uint64_t u;
    if (absl::SimpleAtoi(s, &u)) return u;
    return std::strtod(s.c_str(), nullptr);
  }
  if (RE2::FullMatch(s, *kOct))
    return static_cast<int64_t>(std::strtoll(s.c_str() + 2, nullptr, 8));
  if (RE2::FullMatch(s, *kHex))
    return static_cast<int64_t>(std::strtoll(s.c_str() + 2, nullptr, 16));
  if (RE2::FullMatch(s, *kFloat)) return std::strtod(s.c_str(), nullptr);
  if (s == ".inf" || s == ".Inf" || s == ".INF" || s == "+.inf") return s;  // JSON has no infinity
  return s;
}

class Converter {
 public:
  explicit Converter(const YamlLimits& limits) : limits_(limits) {}

  json Convert(const YAML::Node& node, size_t depth) {
    if (++nodes_ > limits_.max_nodes) {
      throw LimitError(absl::StrCat("YAML expands to more than ", limits_.max_nodes,
                                    " nodes (alias expansion is bounded)"));
    }
    if (depth > limits_.max_depth) {
      throw LimitError(absl::StrCat("YAML nesting deeper than ", limits_.max_depth, " levels"));
    }
    switch (node.Type()) {
      case YAML::NodeType::Undefined:
      case YAML::NodeType::Null: return nullptr;
      case YAML::NodeType::Scalar: return Scalar(node);
      case YAML::NodeType::Sequence: {
        json out = json::array();
        for (const auto& child : node) out.push_back(Convert(child, depth + 1));
        return out;
      }
      case YAML::NodeType::Map: {
        json out = json::object();
        for (const auto& kv : node) {
          if (!kv.first.IsScalar()) {
            throw YAML::ParserException(kv.first.Mark(), "mapping keys must be scalars");
          }
          const std::string& key = kv.first.Scalar();
          if (out.contains(key)) {
            throw YAML::ParserException(kv.first.Mark(),
                                        absl::StrCat("duplicate key \"", key, "\""));
          }
          out[key] = Convert(kv.second, depth + 1);
        }
        return out;
      }
    }
    return nullptr;
  }

 private:
  static json Scalar(const YAML::Node& node) {
    const std::string& tag = node.Tag();
    const std::string& s = node.Scalar();
    if (tag == "!" || tag == "tag:yaml.org,2002:str") return s;
    if (tag == "?" || tag.empty()) return ResolvePlainScalar(s);
    if (tag == "tag:yaml.org,2002:int" || tag == "tag:yaml.org,2002:float" ||
        tag == "tag:yaml.org,2002:bool" || tag == "tag:yaml.org,2002:null") {
      return ResolvePlainScalar(s);
    }
    throw YAML::ParserException(node.Mark(), absl::StrCat("unsupported tag \"", tag, "\""));
  }

  const YamlLimits& limits_;
  size_t nodes_ = 0;
};

}  // namespace

absl::StatusOr<std::vector<json>> ParseYamlDocuments(absl::string_view text,
                                                     const YamlLimits& limits) {
  // yaml-cpp's parser recurses once per flow level and would overflow the stack on "[[[[...".
  // Block nesting is bounded by the indentation a body of limited size can hold, and is
  // checked again during conversion.
  if (auto s = CheckNestingDepth(text, limits.max_depth); !s.ok()) return s;
  std::vector<json> out;
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAll(std::string(text));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("YAML: line ", e.mark.line + 1, ", column ", e.mark.column + 1, ": ", e.msg));
  }
  Converter converter(limits);
  for (size_t i = 0; i < docs.size(); ++i) {
    if (docs[i].IsNull() || !docs[i].IsDefined()) continue;
    if (out.size() >= limits.max_documents) {
      return absl::InvalidArgumentError(
          absl::StrCat("more than ", limits.max_documents, " documents in one request"));
    }
    try {
      out.push_back(converter.Convert(docs[i], 0));
    } catch (const LimitError& e) {
      return absl::InvalidArgumentError(absl::StrCat("YAML document ", i + 1, ": ", e.what()));
    } catch (const YAML::Exception& e) {
      return absl::InvalidArgumentError(absl::StrCat("YAML document ", i + 1, ": line ",
                                                     e.mark.line + 1, ", column ",
                                                     e.mark.column + 1, ": ", e.msg));
    }
  }
  return out;
}

namespace {

void Emit(YAML::Emitter& out, const json& v) {
  switch (v.type()) {
    case json::value_t::object:
      out << YAML::BeginMap;
      for (const auto& [k, child] : v.items()) {
        out << YAML::Key << k << YAML::Value;
        Emit(out, child);
      }
      out << YAML::EndMap;
      break;
    case json::value_t::array:
      out << YAML::BeginSeq;
      for (const auto& child : v) Emit(out, child);
      out << YAML::EndSeq;
      break;
    case json::value_t::string: {
      const std::string& s = v.get_ref<const std::string&>();
      // Quote anything the core schema would read back as something other than this string.
      if (!ResolvePlainScalar(s).is_string() || s.empty())
        out << YAML::DoubleQuoted << s;
      else
        out << s;
      break;
    }
    case json::value_t::boolean: out << (v.get<bool>() ? "true" : "false"); break;
    case json::value_t::null: out << YAML::Null; break;
    default: out << v.dump(); break;
  }
}

}  // namespace

std::string JsonToYaml(const json& value) {
  YAML::Emitter out;
  Emit(out, value);
  return std::string(out.c_str()) + "\n";
}

}  // namespace mesh
