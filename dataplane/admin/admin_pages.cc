#include "dataplane/admin/admin_pages.h"

#include <google/protobuf/util/json_util.h>

#include <future>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "dataplane/admin/stats.h"
#include "dataplane/server/proxy_server.h"
#include "dataplane/telemetry/span_exporter.h"
#include "dataplane/tls/workload_certificate.h"
#include "dataplane/xds/grpc_transport.h"
#include "dataplane/xds/xds_client.h"

namespace mesh::dataplane {

namespace {

std::string ToJson(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  if (!google::protobuf::util::MessageToJsonString(m, &out, options).ok()) return "null";
  return out;
}

// /config_dump: every applied resource, as JSON, with the version of its type.
std::string ConfigDump(const std::string& id, const ProxyConfig& config,
                       const std::vector<ProxyServer::ListenerStatus>& listeners) {
  auto section = [](const auto& resources) {
    std::vector<std::string> items;
    for (const auto& [name, r] : resources) items.push_back(ToJson(r));
    return absl::StrCat("[", absl::StrJoin(items, ","), "]");
  };
  std::vector<std::string> versions, states;
  for (const auto& [type, v] : config.versions)
    versions.push_back(absl::StrCat("\"", type, "\":\"", v, "\""));
  for (const auto& l : listeners) {
    states.push_back(absl::StrCat("{\"name\":\"", l.name, "\",\"address\":\"", l.address,
                                  "\",\"state\":\"", l.state, "\"}"));
  }
  return absl::StrCat("{\"node\":\"", id, "\",\"versions\":{", absl::StrJoin(versions, ","),
                      "},\"listener_states\":[", absl::StrJoin(states, ","),
                      "],\"listeners\":", section(config.listeners),
                      ",\"route_configs\":", section(config.route_configs),
                      ",\"clusters\":", section(config.clusters),
                      ",\"endpoints\":", section(config.endpoints),
                      ",\"secrets\":", section(config.secrets), "}\n");
}

// /clusters, in Envoy's text form: one line per host and property.
std::string Clusters(const Snapshot* snapshot) {
  std::string out;
  if (!snapshot) return out;
  absl::Time now = absl::Now();
  for (const auto& [name, c] : snapshot->clusters->clusters()) {
    for (const Host& h : c.hosts) {
      std::string prefix = absl::StrCat(name, "::", h.address, ":", h.port, "::");
      bool ejected = h.state->Ejected(now);
      absl::StrAppend(&out, prefix, "health_flags::", ejected ? "/failed_outlier_check" : "healthy",
                      "\n", prefix, "weight::", h.weight, "\n", prefix,
                      "rq_active::", h.state->active_requests.load(), "\n", prefix,
                      "ejections::", h.state->ejections.load(), "\n");
    }
  }
  return out;
}

// /certs: the workload certificate's identity and lifetime; never the key.
AdminResponse Certs(const WorkloadCertificate* certificate) {
  if (!certificate) return {404, "text/plain", "no --token-file: no workload certificate\n"};
  WorkloadCertificate::CredentialsPtr c = certificate->current();
  auto time = [](absl::Time t) {
    return absl::FormatTime(absl::RFC3339_sec, t, absl::UTCTimeZone());
  };
  return {200, "application/json",
          absl::StrCat("{\"spiffe_id\":\"", c ? c->spiffe_id : "", "\",\"not_before\":\"",
                       c ? time(c->not_before) : "", "\",\"not_after\":\"",
                       c ? time(c->not_after) : "", "\",\"renewals\":", certificate->renewals(),
                       ",\"last_error\":\"", absl::CEscape(certificate->last_error()), "\"}\n")};
}

// /stats and /stats/prometheus: every worker's counters, merged, and the proxy's own.
std::string Stats(const AdminSources& sources) {
  WorkerStats total;
  std::vector<std::future<WorkerStats>> parts;
  for (Worker* w : sources.server->workers()) parts.push_back(w->CollectStats());
  for (auto& p : parts) total.Merge(p.get());
  ProxyCounters counters;
  XdsClient::Stats xds = sources.client->stats();
  counters.xds_accepted = xds.accepted;
  counters.xds_rejected = xds.rejected;
  counters.xds_connected = !sources.ads->connected_to().empty();
  for (const auto& l : sources.server->listeners()) {
    if (l.state == "active") ++counters.listeners_active;
  }
  std::string text = RenderPrometheus(total, counters);
  if (SnapshotPtr snapshot = sources.server->snapshot())
    text += RenderClusterGauges(*snapshot->clusters, absl::Now());
  if (sources.spans) text += sources.spans->PrometheusText();
  return text;
}

}  // namespace

AdminResponse ServeAdminPage(const AdminSources& sources, const std::string& method,
                             const std::string& path) {
  if (method != "GET") return {405, "text/plain", "only GET\n"};
  if (path == "/ready") {
    return sources.server->ready() ? AdminResponse{200, "text/plain", "LIVE\n"}
                                   : AdminResponse{503, "text/plain", "NOT READY\n"};
  }
  if (path == "/config_dump") {
    return {200, "application/json",
            ConfigDump(sources.id, *sources.client->current(), sources.server->listeners())};
  }
  if (path == "/clusters") return {200, "text/plain", Clusters(sources.server->snapshot().get())};
  if (path == "/certs") return Certs(sources.certificate);
  if (path == "/stats/prometheus" || path == "/stats")
    return {200, "text/plain; version=0.0.4", Stats(sources)};
  if (path == "/") {
    return {200, "text/plain",
            "meshproxy admin: /ready /config_dump /clusters /certs /stats/prometheus\n"};
  }
  return {404, "text/plain", absl::StrCat("no admin page ", path, "\n")};
}

}  // namespace mesh::dataplane
