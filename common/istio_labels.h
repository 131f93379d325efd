#pragma once

#include <initializer_list>
#include <map>
#include <string>

// Istio's canonical service and revision of a workload, from its labels (the names its
// telemetry and EDS metadata use): the service from service.istio.io/canonical-name,
// app.kubernetes.io/name, app, else `fallback` (the workload's name); the revision from
// service.istio.io/canonical-revision, app.kubernetes.io/version, version, else "latest".
namespace mesh::istio_labels {

inline std::string FirstOf(const std::map<std::string, std::string>& labels,
                           std::initializer_list<const char*> keys, const std::string& fallback) {
  for (const char* k : keys) {
    auto it = labels.find(k);
    if (it != labels.end() && !it->second.empty()) return it->second;
  }
  return fallback;
}

inline std::string CanonicalService(const std::map<std::string, std::string>& labels,
                                    const std::string& fallback) {
  return FirstOf(labels, {"service.istio.io/canonical-name", "app.kubernetes.io/name", "app"},
                 fallback);
}

inline std::string CanonicalRevision(const std::map<std::string, std::string>& labels) {
  return FirstOf(labels,
                 {"service.istio.io/canonical-revision", "app.kubernetes.io/version", "version"},
                 "latest");
}

}  // namespace mesh::istio_labels
