#pragma once

#include <string>
#include <vector>

#include "controlplane/model/config_index.h"

namespace mesh::model {

// A cross-reference problem: the config is valid on its own but refers to something that is
// not there. Warnings never block a write.
struct Warning {
  std::string object;  // "VirtualService voting/voting-app"
  std::string path;    // "spec.http[0].route[0].destination.subset"
  std::string message;
  bool operator==(const Warning&) const = default;

  std::string ToString() const;
};

// Checks references against `base` with `overlay` written on top (objects of the same kind,
// namespace and name replace those in `base`):
//  - a VirtualService destination subset that no DestinationRule for that host defines;
//  - a VirtualService gateway that does not exist;
//  - a VirtualService destination host, or a DestinationRule host, that no Service or
//    ServiceEntry provides.
// When `only_overlay` is true, only the overlay's objects are checked (the apply answer);
// otherwise every object is (`meshctl analyze`). `ns` restricts the checked objects to one
// namespace when not empty. Deterministic order: by kind, namespace, name, path.
std::vector<Warning> Analyze(const ConfigSnapshot& base, const std::vector<const Object*>& overlay,
                             bool only_overlay, absl::string_view ns = "");

}  // namespace mesh::model
