// libFuzzer: a REST request body, as /apply decodes it (YAML, or JSON when it starts with '{' or
// '['): parsing with its depth and size limits, list expansion, and the typed decoder of every
// kind. Every input is decoded or refused; nothing crashes, and every error names a document.
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>

#include "common/yaml_json.h"
#include "controlplane/model/decode.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string body(reinterpret_cast<const char*>(data), size);
  std::vector<nlohmann::json> docs;
  if (!body.empty() && (body[0] == '{' || body[0] == '[')) {
    if (!mesh::CheckNestingDepth(body, 64).ok()) return 0;
    nlohmann::json doc = nlohmann::json::parse(body, nullptr, false);
    if (doc.is_discarded()) return 0;
    docs.push_back(std::move(doc));
  } else {
    mesh::YamlLimits limits;
    auto parsed = mesh::ParseYamlDocuments(body, limits);
    if (!parsed.ok()) return 0;
    docs = std::move(*parsed);
  }
  for (const nlohmann::json& doc : docs) {
    if (!mesh::CheckUtf8(doc).ok()) return 0;  // refused before decoding, as /apply does
  }
  docs = mesh::model::ExpandDocuments(std::move(docs));
  using Outcome = mesh::model::DecodedDocument::Outcome;
  for (size_t i = 0; i < docs.size(); ++i) {
    mesh::model::DecodedDocument d = mesh::model::DecodeDocument(docs[i], "default", i + 1);
    // An invalid document always says why; a valid one always has its object.
    if (d.outcome == Outcome::kInvalid && d.errors.empty()) std::abort();
    if (d.outcome == Outcome::kObject && !d.object) std::abort();
    for (const auto& e : d.errors) (void)mesh::model::FormatError(d.display, e);
    if (d.object) (void)d.object->spec_json.dump();  // what the store would keep
  }
  return 0;
}
