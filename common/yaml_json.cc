#include "common/yaml_json.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <cmath>
#include <set>
#include <sstream>

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

// Reads the stream's events without building anything, to prove that yaml-cpp gets through it.
// yaml-cpp 0.7 (Debian 12's) loops forever, allocating, on some invalid streams (a document that
// starts with ','): every document it reports then starts where the previous one did.
class ProgressProbe : public YAML::EventHandler {
 public:
  void OnDocumentStart(const YAML::Mark& mark) override {
    stuck_ = documents_++ > 0 && mark.pos == last_.pos && mark.line == last_.line;
    last_ = mark;
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}

  bool stuck() const { return stuck_; }
  size_t documents() const { return documents_; }
  const YAML::Mark& last() const { return last_; }

 private:
  size_t documents_ = 0;
  YAML::Mark last_;
  bool stuck_ = false;
};

absl::Status CheckParserProgress(absl::string_view text, const YamlLimits& limits) {
  std::istringstream in{std::string(text)};
  YAML::Parser parser(in);
  ProgressProbe probe;
  try {
    while (parser.HandleNextDocument(probe)) {
      if (probe.stuck()) {
        return absl::InvalidArgumentError(absl::StrCat("YAML: line ", probe.last().line + 1,
                                                       ", column ", probe.last().column + 1,
                                                       ": unexpected character"));
      }
      // Empty documents are not counted against the limit later, but are bounded here.
      if (probe.documents() > 2 * limits.max_documents + 16) {
        return absl::InvalidArgumentError(
            absl::StrCat("more than ", limits.max_documents, " documents in one request"));
      }
    }
  } catch (const YAML::Exception&) {
    // LoadAll reports it, with its position.
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<json>> ParseYamlDocuments(absl::string_view text,
                                                     const YamlLimits& limits) {
  // yaml-cpp's parser recurses once per flow level and would overflow the stack on "[[[[...".
  // Block nesting is bounded by the indentation a body of limited size can hold, and is
  // checked again during conversion.
  if (auto s = CheckNestingDepth(text, limits.max_depth); !s.ok()) return s;
  if (auto s = CheckParserProgress(text, limits); !s.ok()) return s;
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

namespace {

// Whether `s` is well-formed UTF-8 (RFC 3629: no overlongs, no surrogates, nothing past U+10FFFF).
bool ValidUtf8(absl::string_view s) {
  static constexpr uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = s[i];
    size_t n;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c >> 5) == 0x6) {
      n = 1, cp = c & 0x1F;
    } else if ((c >> 4) == 0xE) {
      n = 2, cp = c & 0x0F;
    } else if ((c >> 3) == 0x1E) {
      n = 3, cp = c & 0x07;
    } else {
      return false;
    }
    if (s.size() - i <= n) return false;
    for (size_t k = 1; k <= n; ++k) {
      const unsigned char cc = s[i + k];
      if ((cc >> 6) != 0x2) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += n + 1;
  }
  return true;
}

// The path of the first key or string in `j` that is not UTF-8 ("metadata.name"), or "".
std::string FirstBadUtf8(const nlohmann::json& j, const std::string& path) {
  if (j.is_string()) return ValidUtf8(j.get_ref<const std::string&>()) ? "" : path;
  if (j.is_object()) {
    for (const auto& [k, v] : j.items()) {
      std::string here = path.empty() ? k : absl::StrCat(path, ".", k);
      if (!ValidUtf8(k)) return path.empty() ? "(a key)" : absl::StrCat(path, ".(a key)");
      if (std::string bad = FirstBadUtf8(v, here); !bad.empty()) return bad;
    }
  } else if (j.is_array()) {
    for (size_t i = 0; i < j.size(); ++i) {
      if (std::string bad = FirstBadUtf8(j[i], absl::StrCat(path, "[", i, "]")); !bad.empty())
        return bad;
    }
  }
  return "";
}

}  // namespace

absl::Status CheckUtf8(const nlohmann::json& doc) {
  std::string bad = FirstBadUtf8(doc, "");
  if (bad.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(bad, ": not valid UTF-8"));
}

}  // namespace mesh
