// meshproxy: the mesh's data plane. Subscribes to meshpilot over ADS and serves HTTP/1.1, HTTP/2
// (gRPC, WebSocket) and TCP as an ingress gateway or as a workload's sidecar.
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
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/flags.h"
#include "common/log.h"
#include "common/signals.h"
#include "dataplane/admin/admin_pages.h"
#include "dataplane/health/health_prober.h"
#include "dataplane/server/proxy_server.h"
#include "dataplane/telemetry/span_exporter.h"
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
ABSL_FLAG(std::string, workload_name, "",
          "the workload's name in Istio's metrics (source_workload, destination_workload); "
          "default: its app label, else --id");
ABSL_FLAG(bool, istio_metrics, true,
          "record Istio's standard metrics (istio_requests_total, ...); off leaves meshproxy's "
          "own series only");
ABSL_FLAG(absl::Duration, trace_flush_interval, absl::Seconds(1),
          "how often sampled spans are sent to the collector (in batches of up to 512)");
ABSL_FLAG(std::string, cluster_id, "Kubernetes",
          "the cluster named in Istio's metrics (source_cluster, destination_cluster)");
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
                                       const std::vector<Inbound>& inbound,
                                       const std::string& workload_name) {
  envoy::config::core::v3::Node node;
  node.set_id(id);
  auto& fields = *node.mutable_metadata()->mutable_fields();
  fields["ROLE"].set_string_value(role);
  fields["WORKLOAD_NAME"].set_string_value(workload_name);
  // Where Prometheus scrapes this proxy (meshpilot's service discovery lists it): the admin
  // address, or this workload's address when the admin listens on every interface.
  const std::string admin = absl::GetFlag(FLAGS_admin);
  const size_t colon = admin.rfind(':');
  if (colon != std::string::npos && admin.substr(colon + 1) != "0") {
    std::string host = admin.substr(0, colon);
    if (host.empty() || host == "0.0.0.0") host = address;
    fields["METRICS_ADDRESS"].set_string_value(absl::StrCat(host, admin.substr(colon)));
  }
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

// The command line, checked: everything Run needs before it starts a thread.
struct ProxyFlags {
  std::string id, role;
  bool sidecar = false;
  std::map<std::string, std::string> labels;
  std::vector<Inbound> inbound;
  std::map<uint32_t, uint32_t> port_map;
  boost::asio::ip::address address;
  tcp::endpoint outbound;
  std::string token;         // from --token-file; empty without one
  std::string xds_root_pem;  // from --xds-root-cert; empty without one
};

absl::StatusOr<std::map<std::string, std::string>> ParseLabels(
    const std::vector<std::string>& specs) {
  std::map<std::string, std::string> labels;
  for (const std::string& kv : specs) {
    std::vector<std::string> parts = absl::StrSplit(kv, absl::MaxSplits('=', 1));
    if (parts.size() != 2 || parts[0].empty())
      return absl::InvalidArgumentError(absl::StrCat("--labels ", kv, ": want k=v"));
    labels[parts[0]] = parts[1];
  }
  return labels;
}

absl::StatusOr<std::map<uint32_t, uint32_t>> ParsePortMap(const std::vector<std::string>& specs) {
  std::map<uint32_t, uint32_t> port_map;
  for (const std::string& kv : specs) {
    std::vector<std::string> parts = absl::StrSplit(kv, '=');
    uint32_t from, to;
    if (parts.size() != 2 || !ParsePort(parts[0], &from) || !ParsePort(parts[1], &to))
      return absl::InvalidArgumentError(absl::StrCat("--port-map ", kv, ": want PORT=LOCAL_PORT"));
    port_map[from] = to;
  }
  return port_map;
}

// The first line of `path`, trimmed: the join token.
absl::StatusOr<std::string> ReadToken(const std::string& path) {
  std::ifstream in(path);
  std::string token;
  std::getline(in, token);
  token = std::string(absl::StripAsciiWhitespace(token));
  if (token.empty())
    return absl::InvalidArgumentError(absl::StrCat("--token-file ", path, ": no token in it"));
  return token;
}

absl::StatusOr<std::string> ReadRootCert(const std::string& path, bool have_token) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  if (!in || text.str().find("-----BEGIN CERTIFICATE-----") == std::string::npos)
    return absl::InvalidArgumentError(
        absl::StrCat("--xds-root-cert ", path, ": no PEM certificate in it"));
  if (!have_token) {
    return absl::InvalidArgumentError(
        "--xds-root-cert needs --token-file: ADS over TLS asks for the proxy's workload "
        "certificate");
  }
  return text.str();
}

absl::StatusOr<ProxyFlags> ReadFlags() {
  ProxyFlags f;
  f.role = absl::GetFlag(FLAGS_role);
  if (f.role != "gateway" && f.role != "sidecar")
    return absl::InvalidArgumentError(absl::StrCat("--role ", f.role, ": want gateway or sidecar"));
  f.sidecar = f.role == "sidecar";
  absl::StatusOr<std::map<std::string, std::string>> labels =
      ParseLabels(absl::GetFlag(FLAGS_labels));
  if (!labels.ok()) return labels.status();
  f.labels = std::move(*labels);
  absl::StatusOr<std::vector<Inbound>> inbound = ParseInbound(absl::GetFlag(FLAGS_inbound));
  if (!inbound.ok()) return inbound.status();
  f.inbound = std::move(*inbound);
  absl::StatusOr<std::map<uint32_t, uint32_t>> port_map =
      ParsePortMap(absl::GetFlag(FLAGS_port_map));
  if (!port_map.ok()) return port_map.status();
  f.port_map = std::move(*port_map);
  boost::system::error_code ec;
  const std::string address = absl::GetFlag(FLAGS_address);
  f.address = boost::asio::ip::make_address(address, ec);
  if (ec)
    return absl::InvalidArgumentError(absl::StrCat("--address ", address, ": not an IP address"));
  absl::StatusOr<tcp::endpoint> outbound = ParseEndpoint("outbound", absl::GetFlag(FLAGS_outbound));
  if (!outbound.ok()) return outbound.status();
  f.outbound = *outbound;
  f.id = absl::GetFlag(FLAGS_id);
  if (f.id.empty()) {
    char host[256] = {};
    gethostname(host, sizeof host - 1);
    f.id = absl::StrCat(host, ".", getpid());
  }
  if (std::string path = absl::GetFlag(FLAGS_token_file); !path.empty()) {
    absl::StatusOr<std::string> token = ReadToken(path);
    if (!token.ok()) return token.status();
    f.token = std::move(*token);
  }
  if (std::string path = absl::GetFlag(FLAGS_xds_root_cert); !path.empty()) {
    absl::StatusOr<std::string> pem = ReadRootCert(path, !f.token.empty());
    if (!pem.ok()) return pem.status();
    f.xds_root_pem = std::move(*pem);
  }
  return f;
}

// The serving options, with where each listener binds. Listeners come as 0.0.0.0:PORT, Istio's
// "this proxy's address".
// The workload's name in Istio's metrics: --workload-name, else its app label, else --id.
std::string WorkloadName(const ProxyFlags& f) {
  std::string workload = absl::GetFlag(FLAGS_workload_name);
  if (!workload.empty()) return workload;
  auto app = f.labels.find("app");
  return app != f.labels.end() && !app->second.empty() ? app->second : f.id;
}

// Who this proxy is in Istio's metrics, and the metadata headers it sends about itself.
dp::telemetry::LocalWorkloadPtr LocalWorkload(const ProxyFlags& f, dp::telemetry::SpanSink* spans) {
  auto local = std::make_shared<dp::telemetry::LocalWorkload>();
  const std::string ns = absl::GetFlag(FLAGS_namespace);
  const std::string sa = absl::GetFlag(FLAGS_service_account);
  local->peer = dp::telemetry::PeerFromLabels(WorkloadName(f), ns, f.labels,
                                              absl::GetFlag(FLAGS_cluster_id), sa);
  // With a join token the proxy proves this identity by mutual TLS.
  if (!f.token.empty())
    local->principal = absl::StrCat("spiffe://cluster.local/ns/", ns, "/sa/", sa);
  local->sidecar = f.sidecar;
  local->metrics = absl::GetFlag(FLAGS_istio_metrics);
  local->span_identity.service_name = absl::StrCat(local->peer.canonical_service, ".", ns);
  local->span_identity.node_id = f.id;
  local->span_identity.canonical_service = local->peer.canonical_service;
  local->span_identity.canonical_revision = local->peer.canonical_revision;
  local->span_identity.ns = ns;
  local->span_identity.cluster_id = local->peer.cluster;
  local->spans = spans;
  local->metadata = dp::telemetry::EncodePeerMetadata(local->peer, f.id);
  local->metadata_id = dp::telemetry::PeerMetadataId(f.sidecar ? "sidecar" : "router",
                                                     f.address.to_string(), f.id, ns);
  return local;
}

dp::ProxyServer::Options ServerOptions(const ProxyFlags& f, dp::telemetry::SpanSink* spans) {
  dp::ProxyServer::Options options;
  int concurrency = absl::GetFlag(FLAGS_concurrency);
  options.concurrency =
      concurrency > 0 ? concurrency : std::max(1u, std::thread::hardware_concurrency());
  options.drain_time = absl::GetFlag(FLAGS_drain_time);
  options.expect_tls = !f.token.empty();
  options.http.header_timeout = absl::GetFlag(FLAGS_header_timeout);
  options.http.max_header_bytes = static_cast<size_t>(absl::GetFlag(FLAGS_max_header_bytes));
  options.local_workload = LocalWorkload(f, spans);
  options.bind = [port_map = f.port_map, sidecar = f.sidecar, address = f.address,
                  outbound =
                      f.outbound](const dp::ListenerConfig& l) -> std::optional<tcp::endpoint> {
    uint32_t port = l.port;
    if (auto it = port_map.find(port); it != port_map.end()) port = it->second;
    if (sidecar && l.name == "virtualOutbound") return outbound;
    boost::asio::ip::address ip = address;
    if (sidecar && l.direction == dp::ListenerConfig::Direction::kOutbound) ip = outbound.address();
    if (l.address != "0.0.0.0" && !l.address.empty()) {
      boost::system::error_code e;
      boost::asio::ip::address configured = boost::asio::ip::make_address(l.address, e);
      if (!e) ip = configured;
    }
    return tcp::endpoint(ip, static_cast<uint16_t>(port));
  };
  return options;
}

// The workload certificate, from meshpilot's CA with the join token; each one issued (and
// renewed) goes to the listeners' TLS.
std::unique_ptr<dp::WorkloadCertificate> MakeCertificate(const ProxyFlags& f,
                                                         dp::ProxyServer& server) {
  if (f.token.empty()) return nullptr;
  dp::WorkloadCertificate::Options options;
  options.servers = absl::GetFlag(FLAGS_xds);
  options.token = f.token;
  options.xds_root_pem = f.xds_root_pem;
  return std::make_unique<dp::WorkloadCertificate>(
      options, [&server](dp::WorkloadCertificate::CredentialsPtr c) {
        absl::StatusOr<dp::TlsContextsPtr> tls = dp::TlsContexts::Make(*c);
        if (!tls.ok()) {
          Error("meshproxy: ", tls.status().message());
          return;
        }
        server.SetTls(*tls);
      });
}

dp::AdsConnection::Options AdsOptions(const ProxyFlags& f, dp::WorkloadCertificate* certificate) {
  dp::AdsConnection::Options options;
  if (f.xds_root_pem.empty()) return options;
  options.credentials = [pem = f.xds_root_pem,
                         certificate]() -> std::shared_ptr<grpc::ChannelCredentials> {
    dp::WorkloadCertificate::CredentialsPtr c = certificate->current();
    if (!c) return nullptr;
    return dp::ControlPlaneCredentials(pem, c->cert_pem, c->key_pem);
  };
  return options;
}

// A sidecar tells meshpilot whether its workload can serve; until it says so, meshpilot keeps it
// out of every other proxy's load balancing. A gateway has no workload: null.
std::unique_ptr<dp::HealthProber> MakeHealthProber(const ProxyFlags& f, dp::XdsClient& client,
                                                   dp::WorkloadCertificate* certificate) {
  if (!f.sidecar) return nullptr;
  dp::HealthProber::Options options;
  for (const Inbound& in : f.inbound) options.app_ports.push_back(in.app_port);
  options.interval = absl::GetFlag(FLAGS_health_interval);
  if (certificate)
    options.has_identity = [certificate] { return certificate->current() != nullptr; };
  return std::make_unique<dp::HealthProber>(
      options, [&client, id = f.id](bool healthy, const std::string& reason) {
        Info("meshproxy: ", id, healthy ? " healthy" : " unhealthy: ", reason);
        client.ReportHealth(healthy, reason);
      });
}

int Run() {
  mesh::log::Level level;
  if (!mesh::log::ParseLevel(absl::GetFlag(FLAGS_log_level), &level)) {
    Error("meshproxy: --log-level ", absl::GetFlag(FLAGS_log_level), ": unknown level");
    return 2;
  }
  mesh::log::SetLevel(level);
  absl::StatusOr<ProxyFlags> flags = ReadFlags();
  if (!flags.ok()) {
    Error("meshproxy: ", flags.status().message());
    return 2;
  }
  const ProxyFlags& f = *flags;

  // Before any thread starts, so only the wait below receives the stop signals.
  const sigset_t signals = mesh::signals::BlockStopSignals();

  // Sampled spans, to the collectors the listeners' tracing names (OTLP/HTTP, batched).
  dp::telemetry::SpanExporter spans({.flush_interval = absl::GetFlag(FLAGS_trace_flush_interval)});
  const dp::ProxyServer::Options options = ServerOptions(f, &spans);
  dp::ProxyServer server(options);
  std::unique_ptr<dp::WorkloadCertificate> certificate = MakeCertificate(f, server);
  dp::XdsClient client(
      MakeNode(f.id, f.role, f.labels, f.address.to_string(), f.inbound, WorkloadName(f)),
      [&](dp::ProxyConfigPtr config) { return server.Apply(std::move(config)); });
  dp::AdsConnection ads(absl::GetFlag(FLAGS_xds), &client, AdsOptions(f, certificate.get()));
  const dp::AdminSources admin_sources{f.id, &server, &client, &ads, certificate.get(), &spans};
  dp::AdminServer admin(
      [&](const std::string& method, const std::string& path, const std::string&) {
        return dp::ServeAdminPage(admin_sources, method, path);
      });
  absl::StatusOr<int> admin_port = admin.Start(absl::GetFlag(FLAGS_admin));
  if (!admin_port.ok()) {
    Error("meshproxy: ", admin_port.status().message());
    return 1;
  }
  std::unique_ptr<dp::HealthProber> health = MakeHealthProber(f, client, certificate.get());

  server.Start();
  ads.Start();
  if (certificate) certificate->Start();
  if (health) health->Start();
  const std::string admin_flag = absl::GetFlag(FLAGS_admin);
  Info("meshproxy: ready version=", MESHPILOT_VERSION, " id=", f.id, " role=", f.role,
       " admin=", admin_flag.substr(0, admin_flag.rfind(':')), ":", *admin_port,
       " workers=", options.concurrency);

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
