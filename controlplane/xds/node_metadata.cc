#include "controlplane/xds/node_metadata.h"

#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/ip_address.h"

namespace mesh::xds {
namespace {

constexpr size_t kMaxIdBytes = 253;
constexpr size_t kMaxLabels = 64;
constexpr size_t kMaxLabelKeyBytes = 317;  // a 253-byte prefix, '/', a 63-byte name
constexpr size_t kMaxLabelValueBytes = 63;
constexpr size_t kMaxPorts = 64;
constexpr size_t kMaxIps = 16;
constexpr size_t kMaxFieldBytes = 4096;

std::string Field(const google::protobuf::Struct& s, const std::string& key,
                  std::vector<std::string>* errors) {
  auto it = s.fields().find(key);
  if (it == s.fields().end()) return "";
  if (!it->second.has_string_value()) {
    errors->push_back(absl::StrCat("metadata.", key, ": must be a string"));
    return "";
  }
  if (it->second.string_value().size() > kMaxFieldBytes) {
    errors->push_back(absl::StrCat("metadata.", key, ": longer than ", kMaxFieldBytes, " bytes"));
    return "";
  }
  return it->second.string_value();
}

// A DNS-1123 label: what Kubernetes allows as a namespace or service account name.
bool DnsLabel(absl::string_view s) {
  if (s.empty() || s.size() > 63 || s.front() == '-' || s.back() == '-') return false;
  for (char c : s) {
    if (!absl::ascii_islower(c) && !absl::ascii_isdigit(c) && c != '-') return false;
  }
  return true;
}

// "a=b,c=d" with every number a port (1-65535); errors name the key and the entry.
std::map<uint32_t, uint32_t> PortPairs(const std::string& key, const std::string& value,
                                       std::vector<std::string>* errors) {
  std::map<uint32_t, uint32_t> out;
  std::vector<absl::string_view> entries = absl::StrSplit(value, ',', absl::SkipEmpty());
  if (entries.size() > kMaxPorts) {
    errors->push_back(absl::StrCat("metadata.", key, ": more than ", kMaxPorts, " entries"));
    return out;
  }
  for (size_t i = 0; i < entries.size(); ++i) {
    std::vector<absl::string_view> kv = absl::StrSplit(entries[i], '=');
    uint32_t a = 0, b = 0;
    bool numbers = kv.size() == 2 && absl::SimpleAtoi(kv[0], &a) && absl::SimpleAtoi(kv[1], &b);
    std::string where = absl::StrCat("metadata.", key, "[", i, "] \"", entries[i], "\": ");
    if (!numbers) {
      errors->push_back(where + "must be PORT=PORT");
    } else if (a == 0 || a > 65535 || b == 0 || b > 65535) {
      errors->push_back(where + "ports must be between 1 and 65535");
    } else if (!out.emplace(a, b).second) {
      errors->push_back(absl::StrCat(where, "port ", a, " is listed twice"));
    }
  }
  return out;
}

// "host:port": a host of letters, digits, dots, dashes (or an IP address), and a port 1-65535.
bool IsHostPort(const std::string& s) {
  size_t colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0 || s.size() > 255) return false;
  uint32_t port = 0;
  if (!absl::SimpleAtoi(s.substr(colon + 1), &port) || port == 0 || port > 65535) return false;
  for (char c : s.substr(0, colon)) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != '[' &&
        c != ']' && c != ':')
      return false;
  }
  return true;
}

}  // namespace

registry::Workload NodeInfo::ToWorkload() const {
  registry::Workload w;
  w.name = id;
  w.workload_name = workload_name;
  w.ns = ns;
  w.labels = labels;
  w.service_account = service_account;
  w.address = ips.empty() ? "" : ips[0];
  for (const compiler::InboundPort& p : inbound) w.inbound_ports[p.service_port] = p.listen_port;
  return w;
}

absl::StatusOr<NodeInfo> ParseNode(const envoy::config::core::v3::Node& node) {
  std::vector<std::string> errors;
  NodeInfo info;
  info.id = node.id();
  if (info.id.empty()) errors.push_back("id: required");
  if (info.id.size() > kMaxIdBytes)
    errors.push_back(absl::StrCat("id: longer than ", kMaxIdBytes, " bytes"));
  const google::protobuf::Struct& meta = node.metadata();
  std::string role = Field(meta, "ROLE", &errors);
  if (role == "gateway") {
    info.role = compiler::Role::kGateway;
  } else if (role == "sidecar") {
    info.role = compiler::Role::kSidecar;
  } else if (!role.empty()) {
    errors.push_back(absl::StrCat("metadata.ROLE: \"", role, "\" is not gateway or sidecar"));
  }
  if (std::string ns = Field(meta, "NAMESPACE", &errors); !ns.empty()) info.ns = ns;
  if (!DnsLabel(info.ns))
    errors.push_back(absl::StrCat("metadata.NAMESPACE: \"", info.ns, "\" is not a DNS label"));
  if (std::string sa = Field(meta, "SERVICE_ACCOUNT", &errors); !sa.empty())
    info.service_account = sa;
  if (!DnsLabel(info.service_account)) {
    errors.push_back(absl::StrCat("metadata.SERVICE_ACCOUNT: \"", info.service_account,
                                  "\" is not a DNS label"));
  }
  info.workload_name = Field(meta, "WORKLOAD_NAME", &errors).substr(0, 253);
  if (std::string m = Field(meta, "METRICS_ADDRESS", &errors); IsHostPort(m))
    info.metrics_address = m;
  if (auto it = meta.fields().find("LABELS"); it != meta.fields().end()) {
    if (!it->second.has_struct_value()) {
      errors.push_back("metadata.LABELS: must be a struct of strings");
    } else if (it->second.struct_value().fields_size() > static_cast<int>(kMaxLabels)) {
      errors.push_back(absl::StrCat("metadata.LABELS: more than ", kMaxLabels, " labels"));
    } else {
      for (const auto& [k, v] : it->second.struct_value().fields()) {
        std::string where = absl::StrCat("metadata.LABELS.", k.substr(0, 64), ": ");
        if (k.empty() || k.size() > kMaxLabelKeyBytes) {
          errors.push_back(where + "the key must be 1 to 317 bytes");
        } else if (!v.has_string_value()) {
          errors.push_back(where + "must be a string");
        } else if (v.string_value().size() > kMaxLabelValueBytes) {
          errors.push_back(absl::StrCat(where, "longer than ", kMaxLabelValueBytes, " bytes"));
        } else {
          info.labels[k] = v.string_value();
        }
      }
    }
  }
  if (!errors.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("node ", info.id.substr(0, 64), ": ", absl::StrJoin(errors, "; ")));
  }

  std::vector<std::string> registration;
  std::vector<std::string> ips =
      absl::StrSplit(Field(meta, "INSTANCE_IPS", &registration), ',', absl::SkipEmpty());
  if (ips.size() > kMaxIps) {
    registration.push_back(
        absl::StrCat("metadata.INSTANCE_IPS: more than ", kMaxIps, " addresses"));
  } else {
    for (size_t i = 0; i < ips.size(); ++i) {
      if (!IsIpAddress(ips[i])) {
        registration.push_back(absl::StrCat("metadata.INSTANCE_IPS[", i, "] \"",
                                            ips[i].substr(0, 64), "\": not an IP address"));
      }
    }
  }
  std::map<uint32_t, uint32_t> app =
      PortPairs("APP_PORTS", Field(meta, "APP_PORTS", &registration), &registration);
  std::map<uint32_t, uint32_t> inbound =
      PortPairs("INBOUND_PORTS", Field(meta, "INBOUND_PORTS", &registration), &registration);
  for (const auto& [service_port, listen_port] : inbound) {
    auto it = app.find(listen_port);
    info.inbound.push_back({service_port, listen_port, it == app.end() ? 0u : it->second});
  }
  if (info.role == compiler::Role::kSidecar && registration.empty() && ips.empty())
    registration.push_back("metadata.INSTANCE_IPS: required to be an endpoint");
  if (registration.empty()) {
    info.ips = std::move(ips);
  } else {
    info.registration_error = absl::StrJoin(registration, "; ");
    info.inbound.clear();
  }
  return info;
}

}  // namespace mesh::xds
