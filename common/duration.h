#pragma once

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace mesh {

// Parses a protobuf-style duration as Istio manifests write it: a decimal number followed by
// one unit of h, m, s, ms, us or ns ("7s", "100ms", "1.5s", "1h"). Compound forms ("1m30s")
// are accepted too. Rejects negative values, missing units and anything else, with a message
// suitable for a field error.
absl::StatusOr<absl::Duration> ParseDuration(absl::string_view text);

// Formats a duration the way Envoy's JSON does: seconds with up to 9 fractional digits ("0.100s").
std::string FormatDurationSeconds(absl::Duration d);

}  // namespace mesh
