#include "controlplane/cli/printer.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"

namespace mesh::cli {
namespace {

using nlohmann::json;

std::string Str(const json& j, const json::json_pointer& p) {
  if (!j.contains(p)) return "";
  const json& v = j[p];
  return v.is_string() ? v.get<std::string>() : v.dump();
}

std::string JoinStrings(const json& j, const json::json_pointer& p) {
  if (!j.contains(p) || !j[p].is_array()) return "";
  std::vector<std::string> parts;
  for (const json& v : j[p]) parts.push_back(v.is_string() ? v.get<std::string>() : v.dump());
  return "[" + absl::StrJoin(parts, ",") + "]";
}

std::string Labels(const json& obj) {
  json::json_pointer p("/metadata/labels");
  if (!obj.contains(p) || !obj[p].is_object()) return "<none>";
  std::vector<std::string> parts;
  for (const auto& [k, v] : obj[p].items())
    parts.push_back(k + "=" + (v.is_string() ? v.get<std::string>() : v.dump()));
  return absl::StrJoin(parts, ",");
}

std::string ServicePorts(const json& obj) {
  json::json_pointer p("/spec/ports");
  if (!obj.contains(p) || !obj[p].is_array()) return "<none>";
  std::vector<std::string> parts;
  for (const json& port : obj[p]) {
    parts.push_back(absl::StrCat(port.value("port", 0), "/", port.value("protocol", "TCP")));
  }
  return absl::StrJoin(parts, ",");
}

std::string PolicyMode(const json& obj) {
  json::json_pointer pa("/spec/mtls/mode");
  if (obj.contains(pa)) return Str(obj, pa);
  json::json_pointer peers("/spec/peers");
  if (obj.contains(peers) && obj[peers].is_array()) {
    for (const json& peer : obj[peers]) {
      if (peer.contains("mtls")) {
        const json& m = peer["mtls"];
        return m.is_object() && m.contains("mode") ? m["mode"].get<std::string>() : "STRICT";
      }
    }
  }
  return "UNSET";
}

// Left-aligned columns, three spaces apart.
std::string Columns(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths;
  for (const auto& row : rows) {
    widths.resize(std::max(widths.size(), row.size()), 0);
    for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  std::string out;
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) {
      out += row[i];
      if (i + 1 < row.size()) out += std::string(widths[i] - row[i].size() + 3, ' ');
    }
    out += "\n";
  }
  return out;
}

}  // namespace

std::string FormatProxyStatus(const json& syncz) {
  std::vector<std::vector<std::string>> rows = {
      {"NAME", "CLASS", "VERSION", "CDS", "LDS", "EDS", "RDS", "IDENTITY"}};
  const std::vector<std::string> types = {
      "type.googleapis.com/envoy.config.cluster.v3.Cluster",
      "type.googleapis.com/envoy.config.listener.v3.Listener",
      "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
      "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"};
  for (const json& p : syncz) {
    std::vector<std::string> row = {p.value("id", ""), p.value("class", ""),
                                    p.value("version", "")};
    for (const std::string& t : types) {
      if (!p.contains("types") || !p["types"].contains(t)) {
        row.push_back("NOT SENT");
        continue;
      }
      const json& st = p["types"][t];
      std::string sent = st.value("sent", ""), acked = st.value("acked", ""),
                  nack = st.value("nack", "");
      if (!nack.empty())
        row.push_back("NACKED");
      else if (!sent.empty() && sent == acked)
        row.push_back("SYNCED");
      else
        row.push_back("STALE");
    }
    // The SPIFFE ID the proxy proved on the TLS port; "-" over plaintext.
    std::string identity = p.value("identity", "");
    row.push_back(identity.empty() ? "-" : identity);
    rows.push_back(std::move(row));
  }
  return Columns(rows);
}

std::string FormatJwksWarnings(const json& syncz, const json& jwksz, absl::Time now) {
  if (!jwksz.is_array()) return "";
  std::string out;
  for (const json& uri : jwksz) {
    if (!uri.is_object() || uri.value("error", "").empty()) continue;
    const std::string name = uri.value("uri", "");
    std::vector<std::string> proxies;
    for (const json& p : syncz) {
      if (!p.contains("jwks_uris") || !p["jwks_uris"].is_array()) continue;
      for (const json& u : p["jwks_uris"]) {
        if (u.is_string() && u.get<std::string>() == name) proxies.push_back(p.value("id", ""));
      }
    }
    const int failures = uri.value("failures", 0);
    const std::string when = Age(uri.value("last_attempt", ""), now);
    absl::StrAppend(&out, "WARNING: jwksUri ", name, ": ",
                    failures == 1 ? absl::StrCat("the last fetch failed ", when, " ago")
                                  : absl::StrCat("the last ", failures,
                                                 " fetches failed, the latest ", when, " ago"),
                    " (", uri.value("error", ""), "); ");
    if (uri.value("has_keys", false)) {
      absl::StrAppend(&out, "the keys fetched ", Age(uri.value("fetched", ""), now),
                      " ago stay in use");
    } else {
      absl::StrAppend(&out, "no keys yet, so its issuer's tokens are refused (401)");
    }
    if (!proxies.empty()) absl::StrAppend(&out, " by ", absl::StrJoin(proxies, ", "));
    out += "\n";
  }
  return out;
}

std::string FormatTlsCheck(const json& in) {
  std::vector<std::vector<std::string>> rows = {
      {"HOST:PORT", "STATUS", "SERVER", "CLIENT", "AUTHN POLICY", "DESTINATION RULE"}};
  for (const json& r : in) {
    rows.push_back({r.value("host", ""), r.value("status", ""), r.value("server", ""),
                    r.value("client", ""), r.value("authn_policy", ""),
                    r.value("destination_rule", "")});
  }
  return Columns(rows);
}

std::string Age(const std::string& timestamp, absl::Time now) {
  absl::Time t;
  std::string err;
  if (!absl::ParseTime(absl::RFC3339_full, timestamp, &t, &err)) return "<unknown>";
  int64_t s = std::max<int64_t>(0, absl::ToInt64Seconds(now - t));
  if (s < 120) return absl::StrCat(s, "s");
  if (s < 7200) return absl::StrCat(s / 60, "m");
  if (s < 172800) return absl::StrCat(s / 3600, "h");
  return absl::StrCat(s / 86400, "d");
}

std::string FormatTable(const model::KindInfo& kind, const std::vector<json>& objects,
                        bool all_namespaces, bool wide, absl::Time now) {
  std::vector<std::string> header;
  if (all_namespaces) header.push_back("NAMESPACE");
  header.push_back("NAME");
  using Column = std::pair<std::string, std::function<std::string(const json&)>>;
  std::vector<Column> columns;
  switch (kind.kind) {
    case model::Kind::kVirtualService:
      columns = {
          {"GATEWAYS",
           [](const json& o) { return JoinStrings(o, json::json_pointer("/spec/gateways")); }},
          {"HOSTS",
           [](const json& o) { return JoinStrings(o, json::json_pointer("/spec/hosts")); }}};
      break;
    case model::Kind::kDestinationRule:
      columns = {{"HOST", [](const json& o) { return Str(o, json::json_pointer("/spec/host")); }}};
      break;
    case model::Kind::kServiceEntry:
      columns = {
          {"HOSTS",
           [](const json& o) { return JoinStrings(o, json::json_pointer("/spec/hosts")); }},
          {"LOCATION", [](const json& o) { return Str(o, json::json_pointer("/spec/location")); }},
          {"RESOLUTION",
           [](const json& o) { return Str(o, json::json_pointer("/spec/resolution")); }}};
      break;
    case model::Kind::kWorkloadEntry:
      columns = {
          {"ADDRESS", [](const json& o) { return Str(o, json::json_pointer("/spec/address")); }}};
      break;
    case model::Kind::kPolicy:
    case model::Kind::kPeerAuthentication: columns = {{"MODE", PolicyMode}}; break;
    case model::Kind::kService:
      columns = {{"TYPE",
                  [](const json& o) {
                    std::string t = Str(o, json::json_pointer("/spec/type"));
                    return t.empty() ? std::string("ClusterIP") : t;
                  }},
                 {"PORT(S)", ServicePorts}};
      break;
    case model::Kind::kAuthorizationPolicy:
      // Istio's printer column: the action as written (blank for the default ALLOW).
      columns = {
          {"ACTION", [](const json& o) { return Str(o, json::json_pointer("/spec/action")); }}};
      break;
    case model::Kind::kGateway:
    case model::Kind::kRequestAuthentication:
    case model::Kind::kTelemetry: break;
  }
  for (const auto& c : columns) header.push_back(c.first);
  header.push_back("AGE");
  if (wide) {
    header.push_back("RESOURCE-VERSION");
    header.push_back("LABELS");
  }

  std::vector<std::vector<std::string>> rows{header};
  for (const json& o : objects) {
    std::vector<std::string> row;
    if (all_namespaces) row.push_back(Str(o, json::json_pointer("/metadata/namespace")));
    row.push_back(Str(o, json::json_pointer("/metadata/name")));
    for (const auto& c : columns) row.push_back(c.second(o));
    row.push_back(Age(Str(o, json::json_pointer("/metadata/creationTimestamp")), now));
    if (wide) {
      row.push_back(Str(o, json::json_pointer("/metadata/resourceVersion")));
      row.push_back(Labels(o));
    }
    rows.push_back(std::move(row));
  }
  return Columns(rows);
}

}  // namespace mesh::cli
