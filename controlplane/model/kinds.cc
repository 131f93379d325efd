#include "controlplane/model/kinds.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace mesh::model {

std::string KindInfo::ApiVersion(absl::string_view version) const {
  return group.empty() ? std::string(version) : absl::StrCat(group, "/", version);
}

bool KindInfo::ServesVersion(absl::string_view version) const {
  for (auto v : versions) {
    if (v == version) return true;
  }
  return false;
}

std::string KindInfo::QualifiedName() const {
  std::string lower = absl::AsciiStrToLower(name);
  return group.empty() ? lower : absl::StrCat(lower, ".", group);
}

const std::vector<KindInfo>& AllKinds() {
  static const std::vector<KindInfo> kinds = {
      {Kind::kGateway,
       "Gateway",
       "networking.istio.io",
       {"v1alpha3", "v1beta1", "v1"},
       "gateways",
       {"gw"}},
      {Kind::kVirtualService,
       "VirtualService",
       "networking.istio.io",
       {"v1alpha3", "v1beta1", "v1"},
       "virtualservices",
       {"vs"}},
      {Kind::kDestinationRule,
       "DestinationRule",
       "networking.istio.io",
       {"v1alpha3", "v1beta1", "v1"},
       "destinationrules",
       {"dr"}},
      {Kind::kServiceEntry,
       "ServiceEntry",
       "networking.istio.io",
       {"v1alpha3", "v1beta1", "v1"},
       "serviceentries",
       {"se"}},
      {Kind::kWorkloadEntry,
       "WorkloadEntry",
       "networking.istio.io",
       {"v1alpha3", "v1beta1", "v1"},
       "workloadentries",
       {"we"}},
      {Kind::kPolicy, "Policy", "authentication.istio.io", {"v1alpha1"}, "policies", {}},
      {Kind::kPeerAuthentication,
       "PeerAuthentication",
       "security.istio.io",
       {"v1beta1", "v1"},
       "peerauthentications",
       {"pa"}},
      {Kind::kService, "Service", "", {"v1"}, "services", {"svc"}},
      {Kind::kAuthorizationPolicy,
       "AuthorizationPolicy",
       "security.istio.io",
       {"v1", "v1beta1"},
       "authorizationpolicies",
       {"ap"}},
      {Kind::kRequestAuthentication,
       "RequestAuthentication",
       "security.istio.io",
       {"v1", "v1beta1"},
       "requestauthentications",
       {"ra"}},
      {Kind::kTelemetry,
       "Telemetry",
       "telemetry.istio.io",
       {"v1", "v1alpha1"},
       "telemetries",
       {"telemetry"}},
  };
  return kinds;
}

const KindInfo& Info(Kind kind) {
  return AllKinds()[static_cast<size_t>(kind)];
}

const KindInfo* FindByGroupPlural(absl::string_view group, absl::string_view plural) {
  for (const auto& k : AllKinds()) {
    if (k.group == group && k.plural == plural) return &k;
  }
  return nullptr;
}

const KindInfo* FindByGroupKind(absl::string_view group, absl::string_view kind) {
  for (const auto& k : AllKinds()) {
    if (k.group == group && k.name == kind) return &k;
  }
  return nullptr;
}

const KindInfo* FindByAlias(absl::string_view alias) {
  std::string a = absl::AsciiStrToLower(alias);
  for (const auto& k : AllKinds()) {
    std::string lower = absl::AsciiStrToLower(k.name);
    if (a == lower || a == k.plural || a == k.QualifiedName() ||
        (!k.group.empty() && a == absl::StrCat(k.plural, ".", k.group))) {
      return &k;
    }
    for (auto s : k.short_names) {
      if (a == s) return &k;
    }
  }
  return nullptr;
}

void SplitApiVersion(absl::string_view api_version, absl::string_view* group,
                     absl::string_view* version) {
  size_t slash = api_version.rfind('/');
  if (slash == absl::string_view::npos) {
    *group = {};
    *version = api_version;
  } else {
    *group = api_version.substr(0, slash);
    *version = api_version.substr(slash + 1);
  }
}

bool IsIstioGroup(absl::string_view group) {
  return absl::EndsWith(group, "istio.io");
}

std::string StorePrefix(const KindInfo& kind, absl::string_view ns) {
  std::string prefix = absl::StrCat(kRegistryPrefix, kind.group.empty() ? "core" : kind.group, "/",
                                    kind.plural, "/");
  if (!ns.empty()) absl::StrAppend(&prefix, ns, "/");
  return prefix;
}

std::string StoreKey(const KindInfo& kind, absl::string_view ns, absl::string_view name) {
  return absl::StrCat(StorePrefix(kind, ns), name);
}

}  // namespace mesh::model
