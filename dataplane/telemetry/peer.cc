#include "dataplane/telemetry/peer.h"

#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/istio_labels.h"
#include "google/protobuf/struct.pb.h"

namespace mesh::dataplane::telemetry {
namespace {

std::string StringField(const google::protobuf::Struct& s, const char* name) {
  auto it = s.fields().find(name);
  if (it == s.fields().end() || !it->second.has_string_value()) return "";
  return it->second.string_value();
}

}  // namespace

PeerInfo PeerFromLabels(const std::string& workload, const std::string& ns,
                        const std::map<std::string, std::string>& labels,
                        const std::string& cluster, const std::string& service_account) {
  PeerInfo p;
  p.workload = workload;
  p.ns = ns;
  p.app = istio_labels::FirstOf(labels, {"app"}, "");
  p.version = istio_labels::FirstOf(labels, {"version"}, "");
  p.canonical_service = istio_labels::CanonicalService(labels, workload);
  p.canonical_revision = istio_labels::CanonicalRevision(labels);
  p.cluster = cluster;
  p.service_account = service_account;
  return p;
}

std::string EncodePeerMetadata(const PeerInfo& peer, const std::string& node_name) {
  google::protobuf::Struct s;
  auto set = [&s](const char* name, const std::string& v) {
    if (!v.empty()) (*s.mutable_fields())[name].set_string_value(v);
  };
  set("NAME", node_name);
  set("NAMESPACE", peer.ns);
  set("WORKLOAD_NAME", peer.workload);
  set("CLUSTER_ID", peer.cluster);
  set("SERVICE_ACCOUNT", peer.service_account);
  google::protobuf::Struct* labels = (*s.mutable_fields())["LABELS"].mutable_struct_value();
  auto label = [labels](const char* name, const std::string& v) {
    if (!v.empty()) (*labels->mutable_fields())[name].set_string_value(v);
  };
  label("app", peer.app);
  label("version", peer.version);
  label("service.istio.io/canonical-name", peer.canonical_service);
  label("service.istio.io/canonical-revision", peer.canonical_revision);
  std::string bytes;
  s.SerializeToString(&bytes);
  return absl::Base64Escape(bytes);
}

std::string PeerMetadataId(const std::string& role, const std::string& ip,
                           const std::string& node_name, const std::string& ns) {
  return absl::StrCat(role, "~", ip, "~", node_name, ".", ns, "~", ns, ".svc.cluster.local");
}

std::optional<PeerInfo> DecodePeerMetadata(absl::string_view value) {
  if (value.empty() || value.size() > kMaxPeerMetadataBytes) return std::nullopt;
  std::string bytes;
  if (!absl::Base64Unescape(value, &bytes)) return std::nullopt;
  google::protobuf::Struct s;
  if (!s.ParseFromString(bytes)) return std::nullopt;
  std::map<std::string, std::string> labels;
  auto it = s.fields().find("LABELS");
  if (it != s.fields().end() && it->second.has_struct_value()) {
    for (const auto& [k, v] : it->second.struct_value().fields()) {
      if (v.has_string_value()) labels[k] = v.string_value();
    }
  }
  std::string workload = StringField(s, "WORKLOAD_NAME");
  if (workload.empty()) workload = StringField(s, "NAME");
  if (workload.empty()) return std::nullopt;
  return PeerFromLabels(workload, StringField(s, "NAMESPACE"), labels, StringField(s, "CLUSTER_ID"),
                        StringField(s, "SERVICE_ACCOUNT"));
}

absl::string_view OutboundClusterService(absl::string_view cluster) {
  if (!absl::StartsWith(cluster, "outbound|")) return {};
  return cluster.substr(cluster.rfind('|') + 1);
}

std::string EndpointWorkloadField(const PeerInfo& peer) {
  return absl::StrCat(peer.workload, ";", peer.ns, ";", peer.canonical_service, ";",
                      peer.canonical_revision, ";", peer.cluster);
}

std::optional<PeerInfo> PeerFromEndpointWorkload(absl::string_view field) {
  std::vector<std::string> parts = absl::StrSplit(field, ';');
  if (parts.size() != 5 || parts[0].empty()) return std::nullopt;
  PeerInfo p;
  p.workload = parts[0];
  p.ns = parts[1];
  p.canonical_service = parts[2];
  p.canonical_revision = parts[3];
  p.cluster = parts[4];
  // Istio's endpoint metadata carries no app or version labels: the canonical names stand in.
  p.app = p.canonical_service;
  p.version = p.canonical_revision;
  return p;
}

PeerInfoPtr PeerCache::Decode(absl::string_view value) {
  auto it = entries_.find(value);
  if (it != entries_.end()) return it->second;
  std::optional<PeerInfo> peer = DecodePeerMetadata(value);
  if (!peer) {
    ++invalid_;
    return nullptr;  // not cached: an attacker's junk must not fill the cache
  }
  if (entries_.size() >= capacity_) {
    entries_.clear();
    ++resets_;
  }
  auto ptr = std::make_shared<const PeerInfo>(std::move(*peer));
  entries_.emplace(std::string(value), ptr);
  return ptr;
}

}  // namespace mesh::dataplane::telemetry
