#pragma once

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace mesh::model {

enum class Kind {
  kGateway,
  kVirtualService,
  kDestinationRule,
  kServiceEntry,
  kWorkloadEntry,
  kPolicy,
  kPeerAuthentication,
  kService,
  kAuthorizationPolicy,
  kRequestAuthentication,
  kTelemetry,
};
// How many kinds there are (AllKinds() has one entry per Kind, in this order).
inline constexpr size_t kKindCount = static_cast<size_t>(Kind::kTelemetry) + 1;

// Static description of a resource kind served by the REST API.
struct KindInfo {
  Kind kind;
  absl::string_view name;                   // "VirtualService"
  absl::string_view group;                  // "networking.istio.io"; empty for the core group
  std::vector<absl::string_view> versions;  // every served version; the first is the preferred one
  absl::string_view plural;                 // "virtualservices"
  std::vector<absl::string_view> short_names;  // "vs"

  // "networking.istio.io/v1alpha3", or "v1" for the core group.
  std::string ApiVersion(absl::string_view version) const;
  std::string PreferredApiVersion() const { return ApiVersion(versions.front()); }
  bool ServesVersion(absl::string_view version) const;
  // kubectl's resource name: "virtualservice.networking.istio.io", "service".
  std::string QualifiedName() const;
};

// Every kind, in a fixed order (the order `meshctl analyze` and listings use).
const std::vector<KindInfo>& AllKinds();
const KindInfo& Info(Kind kind);

// Looks a kind up by the group and plural of a REST path; nullptr if not served.
const KindInfo* FindByGroupPlural(absl::string_view group, absl::string_view plural);
// Looks a kind up by the `kind` field of a document and the group of its apiVersion.
const KindInfo* FindByGroupKind(absl::string_view group, absl::string_view kind);
// Resolves what an operator types: plural, singular, short name, kind name, or
// plural.group ("vs", "virtualservice", "VirtualService", "virtualservices.networking.istio.io").
const KindInfo* FindByAlias(absl::string_view alias);

// Splits "group/version" ("v1" is the core group) into its parts.
void SplitApiVersion(absl::string_view api_version, absl::string_view* group,
                     absl::string_view* version);

// Whether a group belongs to Istio. Documents of other groups (apps, batch, ...) are skipped,
// while an unknown kind inside an Istio group is an error.
bool IsIstioGroup(absl::string_view group);

// Store keys: "/registry/<group or core>/<plural>/<namespace>/<name>". The prefix forms list
// one namespace, or all namespaces when `ns` is empty.
std::string StoreKey(const KindInfo& kind, absl::string_view ns, absl::string_view name);
std::string StorePrefix(const KindInfo& kind, absl::string_view ns);
// The prefix under which every resource lives.
inline constexpr absl::string_view kRegistryPrefix = "/registry/";

}  // namespace mesh::model
