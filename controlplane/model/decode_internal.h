#pragma once

// Readers shared by the decoders of each kind (decode.cc, decode_security.cc).
#include <optional>
#include <set>
#include <string>

#include "absl/strings/string_view.h"
#include "controlplane/model/istio.h"
#include "controlplane/model/reader.h"

namespace mesh::model {

// Adds `message` at `path` when it is not empty (the Check* convention).
void Check(FieldErrors* errors, const std::string& path, std::string message);
// A map of Kubernetes labels at `key`, each key and value checked.
Labels ReadLabels(ObjectReader& r, absl::string_view key);

AuthorizationPolicy ReadAuthorizationPolicy(ObjectReader& r);
RequestAuthentication ReadRequestAuthentication(ObjectReader& r);
Telemetry ReadTelemetry(ObjectReader& r,
                        const std::optional<std::set<std::string>>& tracing_providers);

}  // namespace mesh::model
