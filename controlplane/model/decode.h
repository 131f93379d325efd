#pragma once

#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "controlplane/model/object.h"
#include "nlohmann/json_fwd.hpp"

namespace mesh::model {

// What became of one document of a request.
struct DecodedDocument {
  enum class Outcome {
    kObject,   // a served kind, valid: `object` is set
    kSkipped,  // not a mesh resource (a Deployment, a Secret...): `skip_reason` says why
    kInvalid,  // `errors` lists every problem
  };
  Outcome outcome = Outcome::kInvalid;
  std::optional<Object> object;
  // As written in the document, for answers and messages.
  std::string api_version, kind, ns, name;
  std::string skip_reason;
  std::vector<FieldError> errors;

  // "VirtualService voting/voting-app"; "document 3" when kind or name is unreadable.
  std::string display;
};

struct DecodeOptions {
  // An Istio kind meshpilot does not enforce (EnvoyFilter, Sidecar, WasmPlugin, ...) is an error,
  // since applying it would silently change nothing; with this, it is skipped with a note.
  bool allow_unenforced_kinds = false;
  // The tracing providers a Telemetry may name (meshConfig's extensionProviders: meshpilot's own
  // collector, and those of --trace-provider), checked when config is applied. Unset (stored
  // config being read back): any name decodes, and an unknown one traces nothing.
  std::optional<std::set<std::string>> tracing_providers;
};

// Decodes and validates one document: apiVersion and kind pick the schema; metadata is checked
// as Kubernetes does; the spec is checked field by field as Istio does (or as core/v1 does for
// Service). Every error is collected with its path. The namespace is metadata.namespace, else
// `default_namespace`. `index` (1-based) names the document when nothing else can.
DecodedDocument DecodeDocument(const nlohmann::json& doc, absl::string_view default_namespace,
                               size_t index, const DecodeOptions& options = {});

// Flattens a request body into documents: a JSON array, or an object of kind List (its items),
// or a single object.
std::vector<nlohmann::json> ExpandDocuments(std::vector<nlohmann::json> docs);

// "spec.http[0].route[1].weight: must be between 0 and 100" prefixed with the display name.
std::string FormatError(absl::string_view display, const FieldError& error);

}  // namespace mesh::model
