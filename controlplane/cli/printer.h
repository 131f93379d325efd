#pragma once

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "controlplane/model/kinds.h"
#include "nlohmann/json_fwd.hpp"

namespace mesh::cli {

// Renders resources (the API's JSON) as kubectl-style tables, one row per object, with the
// columns that matter for each kind. `all_namespaces` adds a NAMESPACE column; `wide` adds
// RESOURCE-VERSION and LABELS. `now` makes AGE deterministic in tests.
std::string FormatTable(const model::KindInfo& kind, const std::vector<nlohmann::json>& objects,
                        bool all_namespaces, bool wide, absl::Time now);

// `meshctl proxy-status` from GET /debug/syncz: one row per connected proxy with, per xDS type,
// SYNCED (the last version sent is acked), STALE (sent, not yet acked), NACKED (the proxy rejected
// it and runs an older one) or NOT SENT.
std::string FormatProxyStatus(const nlohmann::json& syncz);

// The warnings `meshctl proxy-status` prints under its table for each jwksUri whose last fetch
// failed (GET /debug/jwksz): the error, and which proxies keep older keys or have none; empty
// when every fetch succeeded. `now` makes the ages deterministic in tests.
std::string FormatJwksWarnings(const nlohmann::json& syncz, const nlohmann::json& jwksz,
                               absl::Time now);

// `meshctl tls-check` from GET /debug/tls_check: HOST:PORT, STATUS, SERVER, CLIENT, AUTHN POLICY
// and DESTINATION RULE, as istioctl authn tls-check printed them.
std::string FormatTlsCheck(const nlohmann::json& rows);

// "45s", "12m", "5h", "3d" from an RFC 3339 creationTimestamp; "<unknown>" if unreadable.
std::string Age(const std::string& timestamp, absl::Time now);

}  // namespace mesh::cli
