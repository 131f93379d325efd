#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json_fwd.hpp"

namespace mesh {

// Bounds on what one request body may make the YAML decoder do.
struct YamlLimits {
  // Documents in one stream; more is an error, not a truncation.
  size_t max_documents = 5000;
  // Nodes produced after alias expansion, summed over the stream. Stops "billion laughs".
  size_t max_nodes = 2'000'000;
  // Nesting of sequences and mappings.
  size_t max_depth = 64;
};

// Decodes a YAML stream (one or more `---` separated documents) into JSON values, resolving
// plain scalars with the YAML 1.2 core schema ("8080" -> number, "\"1.0\"" -> string,
// true/false, null). Empty documents are dropped. Returns InvalidArgument naming the document
// (1-based), line and column on a syntax error, on a duplicate key, on a non-scalar key, or when
// a limit is exceeded. Never throws.
absl::StatusOr<std::vector<nlohmann::json>> ParseYamlDocuments(absl::string_view text,
                                                               const YamlLimits& limits = {});

// Checks that every key and string in `doc` is well-formed UTF-8 (YAML hands over raw bytes;
// JSON output needs UTF-8). InvalidArgument naming the first bad one's path
// ("metadata.name: not valid UTF-8").
absl::Status CheckUtf8(const nlohmann::json& doc);

// Checks, without parsing, that `[` and `{` nest at most `max_depth` deep outside quoted strings
// and comments (YAML flow collections and JSON alike). InvalidArgument otherwise.
absl::Status CheckNestingDepth(absl::string_view text, size_t max_depth);

// Renders a JSON value as block-style YAML (for `meshctl get -o yaml`). Strings that would read
// back as another type are quoted.
std::string JsonToYaml(const nlohmann::json& value);

}  // namespace mesh
