// meshproxy: the mesh's data plane. Subscribes to meshpilot over ADS and serves HTTP/1.1 and TCP
// as an ingress gateway or as a workload's sidecar.
#include <google/protobuf/util/json_util.h>
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/flags.h"
#include "common/log.h"
#include "common/signals.h"
#include "dataplane/admin/admin_server.h"
#include "dataplane/admin/stats.h"
#include "dataplane/health/health_prober.h"
#include "dataplane/server/proxy_server.h"
#include "dataplane/tls/tls_contexts.h"
#include "dataplane/tls/workload_certificate.h"
#include "dataplane/xds/grpc_transport.h"
#include "dataplane/xds/xds_client.h"

ABSL_FLAG(std::vector<std::string>, xds, {"127.0.0.1:15010"},
          "control planes (host:port), tried in order with backoff");
ABSL_FLAG(std::string, role, "sidecar", "gateway or sidecar");
ABSL_FLAG(std::string, id, "", "unique proxy name (default: hostname.pid)");
ABSL_FLAG(std::string, namespace, "default", "the workload's namespace");
ABSL_FLAG(std::vector<std::string>, labels, {}, "the workload's labels, k=v,k=v");
ABSL_FLAG(std::string, service_account, "default", "the workload's service account");
ABSL_FLAG(std::string, address, "127.0.0.1",
          "where others reach this proxy: inbound listeners (and a gateway's ports) bind here");
ABSL_FLAG(std::vector<std::string>, inbound, {},
          "sidecar inbound SERVICE_PORT=LISTEN_PORT:APP_PORT (repeatable)");
ABSL_FLAG(std::string, outbound, "127.0.0.1:15001",
          "sidecar: the HTTP listener apps send requests to; its IP also carries the per-port "
          "outbound listeners");
ABSL_FLAG(std::vector<std::string>, port_map, {},
          "listener port remapping PORT=LOCAL_PORT, e.g. 80=8080 for a privileged port");
ABSL_FLAG(std::string, admin, "127.0.0.1:15000", "admin endpoint");
ABSL_FLAG(int, concurrency, 0, "worker threads (default: one per core)");
ABSL_FLAG(absl::Duration, drain_time, absl::Seconds(5),
          "how long a removed listener's connections may finish before they are closed");
ABSL_FLAG(absl::Duration, header_timeout, absl::Seconds(10),
          "time a client has to send a whole request header (408 after)");
ABSL_FLAG(int64_t, max_header_bytes, 60 * 1024, "largest request header accepted (431 above)");
ABSL_FLAG(absl::Duration, health_interval, absl::Seconds(2),
          "how often a sidecar probes its app ports and reports its health to meshpilot");
ABSL_FLAG(std::string, token_file, "",
          "join token (meshctl token create); with it the proxy gets its workload certificate "
          "from meshpilot's CA, on the --xds addresses, and renews it");
ABSL_FLAG(std::string, xds_root_cert, "",
          "the mesh root certificate (PEM file): the --xds addresses are then meshpilot's TLS port "
          "(--xds-tls), verified against it, and ADS presents the workload certificate (needs "
          "--token-file)");
ABSL_FLAG(std::string, log_level, "info", "debug, info, warn or error");

namespace {

using mesh::log::Error;
using mesh::log::Info;
namespace dp = mesh::dataplane;
using tcp = boost::asio::ip::tcp;

struct Inbound {
  uint32_t service_port = 0, listen_port = 0, app_port = 0;
};

bool ParsePort(absl::string_view s, uint32_t* out) {
  return absl::SimpleAtoi(s, out) && *out > 0 && *out < 65536;
}

absl::StatusOr<std::vector<Inbound>> ParseInbound(const std::vector<std::string>& specs) {
  std::vector<Inbound> out;
  for (const std::string& spec : specs) {
    // SERVICE_PORT=LISTEN_PORT:APP_PORT
    std::vector<std::string> kv = absl::StrSplit(spec, '=');
    Inbound in;
    std::vector<std::string> ports =
        kv.size() == 2 ? absl::StrSplit(kv[1], ':') : std::vector<std::string>{};
    if (kv.size() != 2 || ports.size() != 2 || !ParsePort(kv[0], &in.service_port) ||
        !ParsePort(ports[0], &in.listen_port) || !ParsePort(ports[1], &in.app_port)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--inbound ", spec, ": want SERVICE_PORT=LISTEN_PORT:APP_PORT"));
    }
    out.push_back(in);
  }
  return out;
}

absl::StatusOr<tcp::endpoint> ParseEndpoint(const std::string& flag, const std::string& value) {
  size_t colon = value.rfind(':');
  uint32_t port = 0;
  boost::system::error_code ec;
  boost::asio::ip::address ip;
  if (colon != std::string::npos) ip = boost::asio::ip::make_address(value.substr(0, colon), ec);
  if (colon == std::string::npos || ec || !ParsePort(value.substr(colon + 1), &port))
    return absl::InvalidArgumentError(absl::StrCat("--", flag, " ", value, ": want IP:PORT"));
  return tcp::endpoint(ip, static_cast<uint16_t>(port));
}

envoy::config::core::v3::Node MakeNode(const std::string& id, const std::string& role,
                                       const std::map<std::string, std::string>& labels,
                                       const std::string& address,
                                       const std::vector<Inbound>& inbound) {
  envoy::config::core::v3::Node node;
  node.set_id(id);
  auto& fields = *node.mutable_metadata()->mutable_fields();
  fields["ROLE"].set_string_value(role);
  fields["NAMESPACE"].set_string_value(absl::GetFlag(FLAGS_namespace));
  fields["SERVICE_ACCOUNT"].set_string_value(absl::GetFlag(FLAGS_service_account));
  fields["INSTANCE_IPS"].set_string_value(address);
  auto& label_fields = *fields["LABELS"].mutable_struct_value()->mutable_fields();
  for (const auto& [k, v] : labels) label_fields[k].set_string_value(v);
  std::vector<std::string> inbound_ports, app_ports;
  for (const Inbound& in : inbound) {
    inbound_ports.push_back(absl::StrCat(in.service_port, "=", in.listen_port));
    app_ports.push_back(absl::StrCat(in.listen_port, "=", in.app_port));
  }
  if (!inbound.empty()) {
    fields["INBOUND_PORTS"].set_string_value(absl::StrJoin(inbound_ports, ","));
    fields["APP_PORTS"].set_string_value(absl::StrJoin(app_ports, ","));
  }
  return node;
}

std::string ToJson(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  if (!google::protobuf::util::MessageToJsonString(m, &out, options).ok()) return "null";
  return out;
}

// /config_dump: every applied resource, as JSON, with the version of its type.
std::string ConfigDump(const std::string& id, const dp::ProxyConfig& config,
                       const std::vector<dp::ProxyServer::ListenerStatus>& listeners) {
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
std::string Clusters(const dp::Snapshot* snapshot) {
  std::string out;
  if (!snapshot) return out;
  absl::Time now = absl::Now();
  for (const auto& [name, c] : snapshot->clusters->clusters()) {
    for (const dp::Host& h : c.hosts) {
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

int Run() {
  mesh::log::Level level;
  if (!mesh::log::ParseLevel(absl::GetFlag(FLAGS_log_level), &level)) {
    Error("meshproxy: --log-level ", absl::GetFlag(FLAGS_log_level), ": unknown level");
    return 2;
  }
  mesh::log::SetLevel(level);
  const std::string role = absl::GetFlag(FLAGS_role);
  if (role != "gateway" && role != "sidecar") {
    Error("meshproxy: --role ", role, ": want gateway or sidecar");
    return 2;
  }
  std::map<std::string, std::string> labels;
  for (const std::string& kv : absl::GetFlag(FLAGS_labels)) {
    std::vector<std::string> parts = absl::StrSplit(kv, absl::MaxSplits('=', 1));
    if (parts.size() != 2 || parts[0].empty()) {
      Error("meshproxy: --labels ", kv, ": want k=v");
      return 2;
    }
    labels[parts[0]] = parts[1];
  }
  absl::StatusOr<std::vector<Inbound>> inbound = ParseInbound(absl::GetFlag(FLAGS_inbound));
  if (!inbound.ok()) {
    Error("meshproxy: ", inbound.status().message());
    return 2;
  }
  std::map<uint32_t, uint32_t> port_map;
  for (const std::string& kv : absl::GetFlag(FLAGS_port_map)) {
    std::vector<std::string> parts = absl::StrSplit(kv, '=');
    uint32_t from, to;
    if (parts.size() != 2 || !ParsePort(parts[0], &from) || !ParsePort(parts[1], &to)) {
      Error("meshproxy: --port-map ", kv, ": want PORT=LOCAL_PORT");
      return 2;
    }
    port_map[from] = to;
  }
  boost::system::error_code ec;
  const std::string address_flag = absl::GetFlag(FLAGS_address);
  boost::asio::ip::address address = boost::asio::ip::make_address(address_flag, ec);
  if (ec) {
    Error("meshproxy: --address ", address_flag, ": not an IP address");
    return 2;
  }
  absl::StatusOr<tcp::endpoint> outbound = ParseEndpoint("outbound", absl::GetFlag(FLAGS_outbound));
  if (!outbound.ok()) {
    Error("meshproxy: ", outbound.status().message());
    return 2;
  }
  std::string id = absl::GetFlag(FLAGS_id);
  if (id.empty()) {
    char host[256] = {};
    gethostname(host, sizeof host - 1);
    id = absl::StrCat(host, ".", getpid());
  }

  const sigset_t signals = mesh::signals::BlockStopSignals();

  dp::ProxyServer::Options options;
  int concurrency = absl::GetFlag(FLAGS_concurrency);
  options.concurrency =
      concurrency > 0 ? concurrency : std::max(1u, std::thread::hardware_concurrency());
  options.drain_time = absl::GetFlag(FLAGS_drain_time);
  options.expect_tls = !absl::GetFlag(FLAGS_token_file).empty();
  options.http.header_timeout = absl::GetFlag(FLAGS_header_timeout);
  options.http.max_header_bytes = static_cast<size_t>(absl::GetFlag(FLAGS_max_header_bytes));
  // Where each listener binds. Listeners come as 0.0.0.0:PORT, Istio's "this proxy's address".
  const bool sidecar = role == "sidecar";
  const tcp::endpoint outbound_ep = *outbound;
  options.bind = [=](const dp::ListenerConfig& l) -> std::optional<tcp::endpoint> {
    uint32_t port = l.port;
    if (auto it = port_map.find(port); it != port_map.end()) port = it->second;
    if (sidecar && l.name == "virtualOutbound") return outbound_ep;
    boost::asio::ip::address ip = address;
    if (sidecar && l.direction == dp::ListenerConfig::Direction::kOutbound)
      ip = outbound_ep.address();
    if (l.address != "0.0.0.0" && !l.address.empty()) {
      boost::system::error_code e;
      boost::asio::ip::address configured = boost::asio::ip::make_address(l.address, e);
      if (!e) ip = configured;
    }
    return tcp::endpoint(ip, static_cast<uint16_t>(port));
  };
  std::string xds_root_pem;
  if (std::string path = absl::GetFlag(FLAGS_xds_root_cert); !path.empty()) {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    xds_root_pem = text.str();
    if (!in || xds_root_pem.find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
      Error("meshproxy: --xds-root-cert ", path, ": no PEM certificate in it");
      return 2;
    }
    if (absl::GetFlag(FLAGS_token_file).empty()) {
      Error(
          "meshproxy: --xds-root-cert needs --token-file: ADS over TLS asks for the proxy's "
          "workload certificate");
      return 2;
    }
  }
  dp::ProxyServer server(options);
  std::unique_ptr<dp::WorkloadCertificate> certificate;
  if (std::string path = absl::GetFlag(FLAGS_token_file); !path.empty()) {
    std::ifstream in(path);
    std::string token;
    std::getline(in, token);
    token = std::string(absl::StripAsciiWhitespace(token));
    if (token.empty()) {
      Error("meshproxy: --token-file ", path, ": no token in it");
      return 2;
    }
    dp::WorkloadCertificate::Options cert_options;
    cert_options.servers = absl::GetFlag(FLAGS_xds);
    cert_options.token = token;
    cert_options.xds_root_pem = xds_root_pem;
    certificate = std::make_unique<dp::WorkloadCertificate>(
        cert_options, [&server](dp::WorkloadCertificate::CredentialsPtr c) {
          absl::StatusOr<dp::TlsContextsPtr> tls = dp::TlsContexts::Make(*c);
          if (!tls.ok()) {
            Error("meshproxy: ", tls.status().message());
            return;
          }
          server.SetTls(*tls);
        });
  }

  dp::XdsClient client(MakeNode(id, role, labels, address.to_string(), *inbound),
                       [&](dp::ProxyConfigPtr config) { return server.Apply(std::move(config)); });
  dp::AdsConnection::Options ads_options;
  if (!xds_root_pem.empty()) {
    ads_options.credentials = [&]() -> std::shared_ptr<grpc::ChannelCredentials> {
      dp::WorkloadCertificate::CredentialsPtr c = certificate->current();
      if (!c) return nullptr;
      return dp::ControlPlaneCredentials(xds_root_pem, c->cert_pem, c->key_pem);
    };
  }
  dp::AdsConnection ads(absl::GetFlag(FLAGS_xds), &client, ads_options);

  dp::AdminServer admin([&](const std::string& method, const std::string& path,
                            const std::string&) -> dp::AdminResponse {
    if (method != "GET") return {405, "text/plain", "only GET\n"};
    if (path == "/ready") {
      return server.ready() ? dp::AdminResponse{200, "text/plain", "LIVE\n"}
                            : dp::AdminResponse{503, "text/plain", "NOT READY\n"};
    }
    if (path == "/config_dump") {
      return {200, "application/json", ConfigDump(id, *client.current(), server.listeners())};
    }
    if (path == "/clusters") return {200, "text/plain", Clusters(server.snapshot().get())};
    if (path == "/certs") {
      // The workload certificate's identity and lifetime; never the key.
      if (!certificate) return {404, "text/plain", "no --token-file: no workload certificate\n"};
      dp::WorkloadCertificate::CredentialsPtr c = certificate->current();
      std::string out = absl::StrCat(
          "{\"spiffe_id\":\"", c ? c->spiffe_id : "", "\",\"not_before\":\"",
          c ? absl::FormatTime(absl::RFC3339_sec, c->not_before, absl::UTCTimeZone()) : "",
          "\",\"not_after\":\"",
          c ? absl::FormatTime(absl::RFC3339_sec, c->not_after, absl::UTCTimeZone()) : "",
          "\",\"renewals\":", certificate->renewals(), ",\"last_error\":\"",
          absl::CEscape(certificate->last_error()), "\"}\n");
      return {200, "application/json", out};
    }
    if (path == "/stats/prometheus" || path == "/stats") {
      dp::WorkerStats total;
      std::vector<std::future<dp::WorkerStats>> parts;
      for (dp::Worker* w : server.workers()) parts.push_back(w->CollectStats());
      for (auto& p : parts) total.Merge(p.get());
      dp::ProxyCounters counters;
      dp::XdsClient::Stats xds = client.stats();
      counters.xds_accepted = xds.accepted;
      counters.xds_rejected = xds.rejected;
      counters.xds_connected = !ads.connected_to().empty();
      for (const auto& l : server.listeners()) {
        if (l.state == "active") ++counters.listeners_active;
      }
      std::string text = dp::RenderPrometheus(total, counters);
      if (dp::SnapshotPtr snapshot = server.snapshot())
        text += dp::RenderClusterGauges(*snapshot->clusters, absl::Now());
      return {200, "text/plain; version=0.0.4", text};
    }
    if (path == "/") {
      return {200, "text/plain",
              "meshproxy admin: /ready /config_dump /clusters /certs /stats/prometheus\n"};
    }
    return {404, "text/plain", absl::StrCat("no admin page ", path, "\n")};
  });
  absl::StatusOr<int> admin_port = admin.Start(absl::GetFlag(FLAGS_admin));
  if (!admin_port.ok()) {
    Error("meshproxy: ", admin_port.status().message());
    return 1;
  }
  // A sidecar tells meshpilot whether its workload can serve; until it says so, meshpilot keeps
  // it out of every other proxy's load balancing.
  std::unique_ptr<dp::HealthProber> health;
  if (role == "sidecar") {
    dp::HealthProber::Options health_options;
    for (const Inbound& in : *inbound) health_options.app_ports.push_back(in.app_port);
    health_options.interval = absl::GetFlag(FLAGS_health_interval);
    if (certificate)
      health_options.has_identity = [&] { return certificate->current() != nullptr; };
    health = std::make_unique<dp::HealthProber>(
        health_options, [&client, &id](bool healthy, const std::string& reason) {
          Info("meshproxy: ", id, healthy ? " healthy" : " unhealthy: ", reason);
          client.ReportHealth(healthy, reason);
        });
  }
  server.Start();
  ads.Start();
  if (certificate) certificate->Start();
  if (health) health->Start();
  Info("meshproxy: ready version=", MESHPILOT_VERSION, " id=", id, " role=", role,
       " admin=", absl::GetFlag(FLAGS_admin).substr(0, absl::GetFlag(FLAGS_admin).rfind(':')), ":",
       *admin_port, " workers=", options.concurrency);
  int sig = mesh::signals::WaitForStopSignal(signals);
  Info("meshproxy: signal ", sig, ", draining for up to ",
       absl::FormatDuration(options.drain_time));
  // Leave the control plane first (this workload stops being an endpoint), then let what is in
  // flight finish.
  if (health) health->Stop();
  ads.Stop();
  server.DrainAll(options.drain_time);
  if (certificate) certificate->Stop();
  admin.Stop();
  server.Stop();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "meshproxy: the mesh's data plane.\n  meshproxy --xds 127.0.0.1:15010 --role "
      "gateway|sidecar --id NAME [--labels k=v,...] [--inbound 8080=18081:9081] ...\n"
      "Flag names take '-' or '_' alike (--port-map, --port_map).");
  mesh::flags::ParseCommandLine(argc, argv, {"inbound", "port_map", "labels", "xds"});
  return Run();
}
