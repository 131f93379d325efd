// meshpilot: the control plane daemon. Serves the config API on its store (embedded, or etcd
// shared by several replicas), compiles xDS for its proxies, and is the mesh CA.
#include <grpcpp/grpcpp.h>
#include <openssl/rand.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/flags.h"
#include "common/log.h"
#include "common/prometheus.h"
#include "common/signals.h"
#include "controlplane/api/http_server.h"
#include "controlplane/api/resource_service.h"
#include "controlplane/api/rest_server.h"
#include "controlplane/ca/authority.h"
#include "controlplane/ca/ca_service.h"
#include "controlplane/ca/serving_certificate.h"
#include "controlplane/ca/stored_root.h"
#include "controlplane/ca/tokens.h"
#include "controlplane/compiler/authn.h"
#include "controlplane/jwks/fetcher.h"
#include "controlplane/model/config_index.h"
#include "controlplane/store/etcd_store.h"
#include "controlplane/store/record_io.h"
#include "controlplane/store/wal_store.h"
#include "controlplane/traces/trace_api.h"
#include "controlplane/xds/ads_server.h"
#include "controlplane/xds/snapshot_cache.h"
#include "controlplane/xds/workload_sync.h"

#ifndef MESHPILOT_VERSION
#define MESHPILOT_VERSION "dev"
#endif

ABSL_FLAG(std::string, rest, "127.0.0.1:15080",
          "REST API, /metrics and /healthz address (host:port)");
ABSL_FLAG(std::string, monitoring, "127.0.0.1:15014",
          "/metrics without a token, read-only, as istiod's monitoring port (host:port; empty "
          "turns it off)");
ABSL_FLAG(std::string, xds, "127.0.0.1:15010",
          "ADS (xDS v3) over plaintext gRPC (host:port; empty turns it off)");
ABSL_FLAG(std::string, xds_tls, "127.0.0.1:15012",
          "ADS (and the CA service) over TLS with a certificate from the mesh CA; proxies show "
          "their workload certificate (host:port; empty turns it off)");
ABSL_FLAG(std::vector<std::string>, xds_tls_names, {},
          "DNS names and IPs in the TLS port's certificate (default: localhost, 127.0.0.1, ::1, "
          "meshpilot, istiod.istio-system.svc, the host name and the --xds-tls host)");
ABSL_FLAG(bool, allow_plaintext_registration, false,
          "let sidecars on the plaintext xDS port register as endpoints without a proven identity "
          "(unsafe: any client could then receive any service's traffic)");
ABSL_FLAG(int, default_retry_attempts, 2,
          "retries of an HTTP route whose VirtualService sets none (Istio's "
          "meshConfig.defaultHttpRetryPolicy); 0 turns the default off");
ABSL_FLAG(std::string, default_retry_on,
          "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
          "the default policy's retryOn (numbers are status codes to retry; none given: 503)");
ABSL_FLAG(absl::Duration, default_retry_per_try_timeout, absl::ZeroDuration(),
          "the default policy's perTryTimeout (0: the route's timeout)");
ABSL_FLAG(absl::Duration, xds_send_timeout, absl::Seconds(30),
          "close an ADS stream whose proxy has taken no response for this long (0: never)");
ABSL_FLAG(absl::Duration, debounce, absl::Milliseconds(100),
          "quiet period after a config change before pushing");
ABSL_FLAG(absl::Duration, debounce_max, absl::Seconds(1),
          "longest delay of a push after the first change");
ABSL_FLAG(absl::Duration, workload_grace, absl::Seconds(10),
          "how long a disconnected sidecar stays an endpoint of its services");
ABSL_FLAG(std::string, data_dir, "./meshpilot-data", "embedded store, CA keys and admin token");
ABSL_FLAG(std::string, store, "embedded",
          "config store: embedded (a write-ahead log in --data-dir), or etcd://h1:2379,h2:2379 "
          "(etcds:// for TLS; user:password@ before the hosts, or the password in "
          "MESHPILOT_ETCD_PASSWORD) shared by several replicas");
ABSL_FLAG(std::string, etcd_ca, "", "CA certificate (PEM) that etcd's certificates chain to");
ABSL_FLAG(std::string, etcd_cert, "", "client certificate (PEM) for etcd");
ABSL_FLAG(std::string, etcd_key, "", "client key (PEM) for etcd");
ABSL_FLAG(std::string, ca_key_file, "",
          "with etcd: a file whose contents encrypt the CA root key stored in etcd (or set "
          "MESHPILOT_CA_KEY); every replica needs the same");
ABSL_FLAG(std::string, replica_id, "",
          "with etcd: this replica's name, under which its proxies' workloads are published "
          "(default hostname.pid)");
ABSL_FLAG(std::string, token_file, "",
          "admin bearer token file (default <data-dir>/admin.token, created 0600)");
ABSL_FLAG(std::string, ca_cert, "",
          "the mesh CA's root certificate (default <data-dir>/ca/root-cert.pem, created on first "
          "start)");
ABSL_FLAG(std::string, ca_key, "", "the mesh CA's root key (default <data-dir>/ca/root-key.pem)");
ABSL_FLAG(absl::Duration, cert_ttl, absl::Hours(24),
          "lifetime of the workload certificates issued");
ABSL_FLAG(std::string, log_level, "info", "debug, info, warn or error");
ABSL_FLAG(int64_t, max_body_bytes, 4 << 20, "largest request body accepted (413 above)");
ABSL_FLAG(int64_t, max_documents, 5000, "most documents in one request");
ABSL_FLAG(bool, allow_unenforced_kinds, false,
          "skip (with a note) Istio kinds meshpilot does not enforce, such as EnvoyFilter, "
          "instead of refusing them");
ABSL_FLAG(std::string, access_log_file, "",
          "every proxy's access log, a line per request and TCP connection (Istio's "
          "meshConfig.accessLogFile, e.g. /dev/stdout); empty: none unless a Telemetry resource "
          "turns it on");
ABSL_FLAG(std::string, access_log_encoding, "TEXT",
          "TEXT (Istio's default format) or JSON (meshConfig.accessLogEncoding)");
ABSL_FLAG(absl::Duration, jwks_refresh_interval, absl::Minutes(20),
          "how often the key sets of RequestAuthentication jwksUris are fetched again (Istio's "
          "PILOT_JWT_PUB_KEY_REFRESH_INTERVAL); a failed fetch is retried sooner");
ABSL_FLAG(std::string, jwks_extra_root_ca, "",
          "PEM file of roots trusted for https:// jwksUris besides the system's (Istio's "
          "jwksResolverExtraRootCA)");
ABSL_FLAG(double, trace_sampling, 1.0,
          "percentage of new traces sampled mesh-wide (Istio's "
          "meshConfig.defaultConfig.tracing.sampling); a Telemetry's randomSamplingPercentage "
          "overrides it per namespace or workload");
ABSL_FLAG(std::string, trace_collector, "meshpilot",
          "where proxies send spans unless a Telemetry says otherwise (OTLP/HTTP): meshpilot "
          "(this process, POST /v1/traces on the REST port, queried with Jaeger's API), a "
          "--trace-provider name, an http(s) URL, or none");
ABSL_FLAG(std::vector<std::string>, trace_provider, {},
          "tracing providers a Telemetry may name: NAME=URL of an OTLP/HTTP collector (Istio's "
          "meshConfig.extensionProviders), e.g. jaeger=http://jaeger:4318/v1/traces");
ABSL_FLAG(int64_t, trace_store_max_traces, 10000, "traces meshpilot keeps (the oldest go first)");
ABSL_FLAG(int64_t, trace_store_max_bytes, 64 << 20, "memory for the traces meshpilot keeps");
ABSL_FLAG(int64_t, compact_log_bytes, 64 << 20, "compact the store once its log exceeds this size");

namespace {

using mesh::log::Error;
using mesh::log::Info;

bool SplitHostPort(const std::string& addr, std::string* host, int* port) {
  size_t colon = addr.rfind(':');
  if (colon == std::string::npos) return false;
  *host = addr.substr(0, colon);
  return absl::SimpleAtoi(addr.substr(colon + 1), port) && *port >= 0 && *port <= 65535;
}

std::string HostName() {
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0) return "";
  return name;
}

// The names meshpilot's TLS port answers to when --xds-tls-names is not given.
std::vector<std::string> DefaultServingNames(const std::string& bind_host) {
  std::vector<std::string> names = {"localhost",
                                    "127.0.0.1",
                                    "::1",
                                    "meshpilot",
                                    "meshpilot.istio-system.svc",
                                    "istiod.istio-system.svc"};
  if (std::string host = HostName(); !host.empty()) names.push_back(host);
  if (!bind_host.empty() && bind_host != "0.0.0.0" && bind_host != "::" && bind_host != "[::]")
    names.push_back(bind_host);
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  return names;
}

// The secret that seals the CA key in etcd: --ca-key-file's contents, else MESHPILOT_CA_KEY.
absl::StatusOr<std::string> CaSecret() {
  if (std::string path = absl::GetFlag(FLAGS_ca_key_file); !path.empty()) {
    absl::StatusOr<std::string> text = mesh::store::ReadFile(path);
    if (!text.ok())
      return absl::InvalidArgumentError(absl::StrCat("--ca-key-file ", path, ": cannot be read"));
    std::string secret(absl::StripAsciiWhitespace(*text));
    if (secret.size() < 16)
      return absl::InvalidArgumentError(
          absl::StrCat("--ca-key-file ", path, ": want at least 16 characters"));
    return secret;
  }
  const char* env = std::getenv("MESHPILOT_CA_KEY");
  if (env && std::string(env).size() >= 16) return std::string(env);
  return absl::InvalidArgumentError(
      "with --store etcd the CA key is kept in etcd, encrypted: give --ca-key-file or "
      "MESHPILOT_CA_KEY (at least 16 characters, the same on every replica), or --ca-cert and "
      "--ca-key");
}

// 32 random bytes, in hex.
absl::StatusOr<std::string> RandomToken() {
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1)
    return absl::InternalError("no randomness for a token");
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<char*>(bytes), sizeof(bytes)));
}

// Reads the admin token, or creates a random one (mode 0600) on first start.
absl::StatusOr<std::string> LoadOrCreateToken(const std::string& path) {
  absl::StatusOr<std::string> existing = mesh::store::ReadFile(path);
  if (existing.ok()) {
    std::string token(absl::StripAsciiWhitespace(*existing));
    if (token.empty())
      return absl::InvalidArgumentError(absl::StrCat("token file ", path, " is empty"));
    return token;
  }
  if (!absl::IsNotFound(existing.status())) return existing.status();
  absl::StatusOr<std::string> token = RandomToken();
  if (!token.ok()) return token.status();
  if (absl::Status s = mesh::store::WriteFileAtomically(path, *token + "\n", 0600); !s.ok())
    return absl::UnavailableError(absl::StrCat("cannot create ", path, ": ", s.message()));
  Info("meshpilot: created admin token in ", path);
  return token;
}

// A start-up failure: logged; exit code 2 for a bad flag, 1 otherwise.
int Fail(const absl::Status& s) {
  Error("meshpilot: ", s.message());
  return absl::IsInvalidArgument(s) ? 2 : 1;
}

struct OpenedStore {
  std::unique_ptr<mesh::store::Store> store;
  mesh::store::WalStore* wal = nullptr;    // when embedded
  mesh::store::EtcdStore* etcd = nullptr;  // when on etcd
};

// The store --store names: the embedded one in `data_dir`, or etcd.
absl::StatusOr<OpenedStore> OpenStore(const std::string& data_dir) {
  OpenedStore out;
  const std::string flag = absl::GetFlag(FLAGS_store);
  if (flag == "embedded") {
    mesh::store::WalStore::Options options;
    options.compact_log_bytes = static_cast<size_t>(absl::GetFlag(FLAGS_compact_log_bytes));
    auto opened = mesh::store::WalStore::Open(data_dir + "/store", options);
    if (!opened.ok())
      return absl::UnavailableError(
          absl::StrCat("cannot open the store: ", opened.status().message()));
    out.wal = opened->get();
    out.store = std::move(*opened);
    return out;
  }
  absl::StatusOr<mesh::store::EtcdStore::Options> options = mesh::store::EtcdStore::ParseUrl(flag);
  if (!options.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--store: ", options.status().message(), " (or embedded)"));
  }
  if (!options->username.empty() && options->password.empty()) {
    if (const char* pw = std::getenv("MESHPILOT_ETCD_PASSWORD")) options->password = pw;
  }
  options->ca_file = absl::GetFlag(FLAGS_etcd_ca);
  options->cert_file = absl::GetFlag(FLAGS_etcd_cert);
  options->key_file = absl::GetFlag(FLAGS_etcd_key);
  auto opened = mesh::store::EtcdStore::Open(*options);
  if (!opened.ok()) {
    return absl::Status(absl::IsInvalidArgument(opened.status()) ? opened.status().code()
                                                                 : absl::StatusCode::kUnavailable,
                        absl::StrCat("cannot reach etcd: ", opened.status().message()));
  }
  out.etcd = opened->get();
  out.store = std::move(*opened);
  return out;
}

// The mesh CA's root: --ca-cert/--ca-key; else, on etcd, the root shared through etcd (its
// root certificate also written to the data dir for proxies); else the data dir's.
absl::StatusOr<std::unique_ptr<mesh::ca::Authority>> OpenAuthority(mesh::store::Store* store,
                                                                   bool shared,
                                                                   const std::string& data_dir) {
  mesh::ca::Authority::Options options;
  options.default_ttl = absl::GetFlag(FLAGS_cert_ttl);
  options.max_ttl = std::max(options.max_ttl, options.default_ttl);
  std::string cert = absl::GetFlag(FLAGS_ca_cert), key = absl::GetFlag(FLAGS_ca_key);
  if (cert.empty() != key.empty())
    return absl::InvalidArgumentError("give both --ca-cert and --ca-key, or neither");
  if (!cert.empty()) return mesh::ca::Authority::LoadOrCreate(cert, key, options);
  if (!shared) {
    return mesh::ca::Authority::LoadOrCreate(data_dir + "/ca/root-cert.pem",
                                             data_dir + "/ca/root-key.pem", options);
  }
  absl::StatusOr<std::string> secret = CaSecret();
  if (!secret.ok()) return secret.status();
  auto authority = mesh::ca::LoadOrCreateInStore(store, *secret, options);
  if (!authority.ok()) return authority.status();
  if (absl::Status s = mesh::store::WriteFileAtomically(data_dir + "/ca/root-cert.pem",
                                                        (*authority)->root_cert_pem(), 0644);
      !s.ok())
    return s;
  return authority;
}

// The gRPC server for ADS and the CA service: plaintext on --xds and/or TLS on --xds-tls (with
// `serving`'s certificate); nullptr when both are off.
absl::StatusOr<std::unique_ptr<grpc::Server>> StartGrpc(
    mesh::xds::AdsServer* ads, mesh::ca::CaService* ca,
    const mesh::ca::ServingCertificate* serving) {
  const std::string plain = absl::GetFlag(FLAGS_xds), tls = absl::GetFlag(FLAGS_xds_tls);
  if (plain.empty() && !serving) {
    mesh::log::Warn("meshpilot: --xds and --xds-tls are both off; no proxy can connect");
    return nullptr;
  }
  grpc::ServerBuilder builder;
  int plain_port = 0, tls_port = 0;
  if (!plain.empty())
    builder.AddListeningPort(plain, grpc::InsecureServerCredentials(), &plain_port);
  if (serving) builder.AddListeningPort(tls, serving->Credentials(), &tls_port);
  builder.RegisterCallbackGenericService(ads);
  builder.RegisterService(ca);
  // Proxies hold their streams open; keepalives find the dead ones.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || (!plain.empty() && plain_port == 0) || (serving && tls_port == 0)) {
    return absl::UnavailableError(absl::StrCat("cannot serve xDS on ", plain,
                                               plain.empty() || !serving ? "" : " and ",
                                               serving ? tls : ""));
  }
  if (plain_port)
    Info("xds: ADS listening on ", plain.substr(0, plain.rfind(':')), ":", plain_port);
  if (tls_port)
    Info("xds: ADS over mTLS listening on ", tls.substr(0, tls.rfind(':')), ":", tls_port);
  return server;
}

// The REST handlers beyond the config API: /debug/syncz, /debug/config_dump, /tokens,
// /debug/tls_check, and the CA's and ADS's metrics.
void AddHandlers(mesh::api::RestServer& server, mesh::xds::AdsServer& ads,
                 mesh::xds::SnapshotCache& cache, mesh::ca::JoinTokens& join_tokens,
                 mesh::ca::CaService& ca_service, const std::string* monitoring_address) {
  // Prometheus HTTP service discovery: every connected proxy's metrics, and meshpilot's own on
  // its monitoring address (labelled as Istio's dashboards expect istiod to be).
  server.AddJsonHandler("/debug/prometheus_sd",
                        [&ads, monitoring_address](const std::map<std::string, std::string>&)
                            -> absl::StatusOr<std::string> {
                          nlohmann::json groups = ads.PrometheusTargets();
                          if (!monitoring_address->empty()) {
                            groups.push_back({{"targets", {*monitoring_address}},
                                              {"labels",
                                               {{"__metrics_path__", "/metrics"},
                                                {"app", "istiod"},
                                                {"component", "pilot"},
                                                {"proxy", "meshpilot"}}}});
                          }
                          return groups.dump();
                        });
  server.AddJsonHandler(
      "/debug/syncz",
      [&ads](const std::map<std::string, std::string>&) -> absl::StatusOr<std::string> {
        return ads.SynczJson();
      });
  server.AddJsonHandler(
      "/debug/config_dump",
      [&ads](const std::map<std::string, std::string>& params) -> absl::StatusOr<std::string> {
        auto it = params.find("proxy");
        if (it == params.end())
          return absl::InvalidArgumentError("the proxy parameter is required");
        return ads.ConfigDump(it->second);
      });
  // POST /tokens {"namespace": NS, "serviceAccount": SA, "ttl": "24h"?}: a join token, shown once.
  server.AddJsonPostHandler(
      "/tokens", [&join_tokens](const std::string& body) -> absl::StatusOr<std::string> {
        nlohmann::json in = nlohmann::json::parse(body, nullptr, false);
        if (!in.is_object() || !in["namespace"].is_string() || !in["serviceAccount"].is_string())
          return absl::InvalidArgumentError("want {\"namespace\": NS, \"serviceAccount\": SA}");
        std::optional<absl::Duration> ttl;
        if (in.contains("ttl")) {
          absl::Duration d;
          if (!in["ttl"].is_string() || !absl::ParseDuration(in["ttl"].get<std::string>(), &d))
            return absl::InvalidArgumentError("ttl: want a duration such as 24h");
          ttl = d;
        }
        mesh::ca::Identity identity{in["namespace"].get<std::string>(),
                                    in["serviceAccount"].get<std::string>()};
        absl::StatusOr<std::string> token = join_tokens.Create(identity, ttl);
        if (!token.ok()) return token.status();
        Info("ca: join token created for ", identity.SpiffeId("cluster.local"));
        return nlohmann::json{{"token", *token},
                              {"namespace", identity.ns},
                              {"serviceAccount", identity.service_account}}
            .dump();
      });
  server.AddJsonHandler(
      "/debug/tls_check",
      [&cache,
       &ads](const std::map<std::string, std::string>& params) -> absl::StatusOr<std::string> {
        auto param = [&](const std::string& name) {
          auto it = params.find(name);
          return it == params.end() ? std::string() : it->second;
        };
        // With ?proxy=ID the client side is read from what that proxy holds.
        mesh::xds::SnapshotPtr proxy;
        if (std::string id = param("proxy"); !id.empty()) {
          absl::StatusOr<mesh::xds::SnapshotPtr> held = ads.ProxySnapshot(id);
          if (!held.ok()) return held.status();
          proxy = *held;
        }
        mesh::xds::SnapshotCache::View view = cache.CurrentView();
        nlohmann::json rows = nlohmann::json::array();
        for (const auto& r : mesh::compiler::TlsCheck(
                 *view.config, *view.registry, param("host"),
                 proxy ? &proxy->resources.Of(mesh::compiler::kClusterType) : nullptr)) {
          rows.push_back({{"host", r.host_port},
                          {"status", r.status},
                          {"server", r.server},
                          {"client", r.client},
                          {"authn_policy", r.authn_policy},
                          {"destination_rule", r.destination_rule}});
        }
        return rows.dump();
      });
  server.AddMetricsSource([&ca_service] { return ca_service.MetricsText(); });
  server.AddMetricsSource([&ads] { return ads.MetricsText(); });
  // What Istio's control-plane dashboard reads besides the xDS numbers.
  server.AddMetricsSource([&cache] {
    mesh::xds::SnapshotCache::View view = cache.CurrentView();
    std::set<std::string> hosts;
    for (const auto& sp : view.registry->ports()) hosts.insert(sp.host);
    using mesh::prometheus::Type;
    return absl::StrCat(Type("pilot_services", "gauge"), "pilot_services ", hosts.size(), "\n",
                        Type("pilot_virt_services", "gauge"), "pilot_virt_services ",
                        view.config->Sorted(mesh::model::Kind::kVirtualService).size(), "\n",
                        Type("istio_build", "gauge"), "istio_build{component=\"pilot\",tag=\"",
                        MESHPILOT_VERSION, "\"} 1\n", mesh::prometheus::ProcessMetrics());
  });
}

// The store's metrics (and the embedded store's own counters when `wal` is set).
void AddStoreMetrics(mesh::api::RestServer& server, mesh::store::Store* store,
                     mesh::model::ConfigIndex* index, mesh::store::WalStore* wal) {
  server.AddMetricsSource([store, index] {
    return absl::StrCat("# TYPE meshpilot_store_revision gauge\nmeshpilot_store_revision ",
                        store->Revision(),
                        "\n# TYPE meshpilot_index_revision gauge\nmeshpilot_index_revision ",
                        index->Current()->revision(), "\n");
  });
  if (wal)
    server.AddMetricsSource([wal] {
      mesh::store::WalStore::Stats st = wal->GetStats();
      return absl::StrCat(
          "# TYPE meshpilot_store_commits_total counter\nmeshpilot_store_commits_total ",
          st.commits, "\n",
          "# TYPE meshpilot_store_syncs_total counter\nmeshpilot_store_syncs_total ", st.syncs,
          "\n",
          "# TYPE meshpilot_store_compactions_total counter\nmeshpilot_store_compactions_total ",
          st.compactions, "\n",
          "# TYPE meshpilot_store_log_bytes gauge\nmeshpilot_store_log_bytes ", st.log_bytes, "\n");
    });
}

// The built-in tracing provider: this process's REST port, reached with the ingest token.
mesh::compiler::MeshConfig::TraceProvider MeshpilotCollector(const std::string& rest_host,
                                                             int rest_port,
                                                             const std::string& ingest_token) {
  const bool wildcard = rest_host == "0.0.0.0" || rest_host == "::" || rest_host == "[::]";
  return {"meshpilot",
          absl::StrCat("http://", wildcard ? HostName() : rest_host, ":", rest_port, "/v1/traces"),
          {{"authorization", "Bearer " + ingest_token}}};
}

// The tracing providers (meshConfig.extensionProviders) and the default one, from flags.
absl::Status TracingFromFlags(const std::string& rest_host, int rest_port,
                              const std::string& ingest_token, mesh::compiler::MeshConfig* mesh) {
  mesh->trace_sampling = absl::GetFlag(FLAGS_trace_sampling);
  if (mesh->trace_sampling < 0 || mesh->trace_sampling > 100)
    return absl::InvalidArgumentError("--trace-sampling must be a percentage (0 to 100)");
  mesh->trace_providers.push_back(MeshpilotCollector(rest_host, rest_port, ingest_token));
  auto is_url = [](const std::string& s) {
    return absl::StartsWith(s, "http://") || absl::StartsWith(s, "https://");
  };
  for (const std::string& p : absl::GetFlag(FLAGS_trace_provider)) {
    size_t eq = p.find('=');
    if (eq == std::string::npos || eq == 0 || !is_url(p.substr(eq + 1)))
      return absl::InvalidArgumentError(
          absl::StrCat("--trace-provider must be NAME=http(s)://..., not ", p));
    mesh->trace_providers.push_back({p.substr(0, eq), p.substr(eq + 1), {}});
  }
  std::string collector = absl::GetFlag(FLAGS_trace_collector);
  if (is_url(collector)) {
    mesh->trace_providers.push_back({"default", collector, {}});
    collector = "default";
  }
  if (collector == "none") collector.clear();
  bool known = collector.empty();
  for (const auto& p : mesh->trace_providers) known = known || p.name == collector;
  if (!known) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--trace-collector must be meshpilot, none, a URL or a --trace-provider name, not ",
        collector));
  }
  mesh->default_trace_provider = collector;
  return absl::OkStatus();
}

// Istio's meshConfig, from flags: defaultHttpRetryPolicy, accessLogFile and accessLogEncoding.
absl::StatusOr<mesh::compiler::MeshConfig> MeshConfigFromFlags() {
  mesh::compiler::MeshConfig mesh;
  if (int attempts = absl::GetFlag(FLAGS_default_retry_attempts); attempts > 0) {
    mesh::model::HTTPRetry retry = mesh::compiler::IstioDefaultHttpRetry();
    retry.attempts = attempts;
    if (std::string on = absl::GetFlag(FLAGS_default_retry_on); !on.empty()) retry.retry_on = on;
    if (absl::Duration d = absl::GetFlag(FLAGS_default_retry_per_try_timeout);
        d > absl::ZeroDuration())
      retry.per_try_timeout = d;
    mesh.default_http_retry = retry;
  } else {
    mesh.default_http_retry.reset();
  }
  mesh.access_log_file = absl::GetFlag(FLAGS_access_log_file);
  const std::string encoding = absl::AsciiStrToUpper(absl::GetFlag(FLAGS_access_log_encoding));
  if (encoding != "TEXT" && encoding != "JSON")
    return absl::InvalidArgumentError("--access-log-encoding must be TEXT or JSON");
  mesh.access_log_json = encoding == "JSON";
  return mesh;
}

// The key sets behind the RequestAuthentication jwksUris that config names, fetched and handed
// to the snapshot cache as they change; GET /debug/jwksz shows how each fetch went.
struct JwksResolver {
  std::unique_ptr<mesh::jwks::Fetcher> fetcher;
  std::unique_ptr<mesh::model::ConfigIndex::Subscription> subscription;
};
JwksResolver StartJwks(mesh::model::ConfigIndex* index, mesh::xds::SnapshotCache* cache,
                       mesh::api::RestServer* server) {
  JwksResolver out;
  mesh::jwks::Fetcher::Options options;
  options.fetch =
      mesh::jwks::HttpFetch({.extra_roots_file = absl::GetFlag(FLAGS_jwks_extra_root_ca)});
  options.refresh = std::max(absl::GetFlag(FLAGS_jwks_refresh_interval), absl::Seconds(1));
  options.on_change = [cache](auto keys) { cache->SetFetchedJwks(std::move(keys)); };
  out.fetcher = std::make_unique<mesh::jwks::Fetcher>(std::move(options));
  mesh::jwks::Fetcher* fetcher = out.fetcher.get();
  auto follow = [index, fetcher](int64_t) {
    std::set<std::string> uris;
    auto config = index->Current();
    for (const mesh::model::Object* o : config->Sorted(mesh::model::Kind::kRequestAuthentication)) {
      for (const auto& rule : std::get<mesh::model::RequestAuthentication>(o->spec).jwt_rules) {
        if (!rule.jwks_uri.empty()) uris.insert(rule.jwks_uri);
      }
    }
    fetcher->SetUris(uris);
  };
  follow(0);
  out.subscription = index->Subscribe(follow);
  server->AddJsonHandler(
      "/debug/jwksz",
      [fetcher](const std::map<std::string, std::string>&) -> absl::StatusOr<std::string> {
        return fetcher->StatusJson();
      });
  server->AddMetricsSource([fetcher] { return fetcher->MetricsText(); });
  return out;
}

// --monitoring: /metrics (the REST server's text) and /healthz, without a token, on an address
// of their own; nullptr when off.
absl::StatusOr<std::unique_ptr<mesh::api::HttpServer>> StartMonitoring(
    const mesh::api::RestServer& rest, std::string* bound_address) {
  const std::string addr = absl::GetFlag(FLAGS_monitoring);
  if (addr.empty()) return nullptr;
  mesh::api::HttpServer::Options options;
  if (!SplitHostPort(addr, &options.host, &options.port))
    return absl::InvalidArgumentError(absl::StrCat("--monitoring must be host:port, not ", addr));
  options.handler_threads = 2;
  options.max_body_bytes = 0;
  auto server = std::make_unique<mesh::api::HttpServer>(options);
  server->Route("GET", "/metrics", [&rest](mesh::api::HttpRequest&, mesh::api::HttpResponse& res) {
    res.set_content(rest.MetricsText(), "text/plain; version=0.0.4");
  });
  server->Route("GET", "/healthz", [](mesh::api::HttpRequest&, mesh::api::HttpResponse& res) {
    res.set_content("ok\n", "text/plain");
  });
  absl::StatusOr<int> port = server->Start();
  if (!port.ok())
    return absl::Status(port.status().code(),
                        absl::StrCat("--monitoring: ", port.status().message()));
  Info("meshpilot: monitoring (/metrics) on ", options.host, ":", *port);
  *bound_address = absl::StrCat(options.host, ":", *port);
  return server;
}

// meshpilot's own certificate for --xds-tls; nullptr when that port is off.
absl::StatusOr<std::unique_ptr<mesh::ca::ServingCertificate>> StartServing(
    const mesh::ca::Authority* authority, const std::string& data_dir) {
  const std::string addr = absl::GetFlag(FLAGS_xds_tls);
  if (addr.empty()) return nullptr;
  std::string host;
  int port;
  if (!SplitHostPort(addr, &host, &port))
    return absl::InvalidArgumentError(absl::StrCat("--xds-tls must be host:port, not ", addr));
  mesh::ca::ServingCertificate::Options options;
  options.dir = data_dir + "/xds-tls";
  options.names = absl::GetFlag(FLAGS_xds_tls_names);
  if (options.names.empty()) options.names = DefaultServingNames(host);
  options.ttl = std::max(absl::GetFlag(FLAGS_cert_ttl), absl::Hours(1));
  auto started = mesh::ca::ServingCertificate::Start(authority, options);
  if (!started.ok()) {
    return absl::Status(started.status().code(),
                        absl::StrCat("--xds-tls: ", started.status().message()));
  }
  return started;
}

int Run() {
  mesh::log::Level level;
  if (!mesh::log::ParseLevel(absl::GetFlag(FLAGS_log_level), &level)) {
    Error("meshpilot: --log-level must be debug, info, warn or error");
    return 2;
  }
  mesh::log::SetLevel(level);

  std::string host;
  int port;
  if (!SplitHostPort(absl::GetFlag(FLAGS_rest), &host, &port)) {
    Error("meshpilot: --rest must be host:port, not ", absl::GetFlag(FLAGS_rest));
    return 2;
  }
  std::string data_dir = absl::GetFlag(FLAGS_data_dir);
  std::string token_path = absl::GetFlag(FLAGS_token_file);
  if (token_path.empty()) token_path = data_dir + "/admin.token";

  // Before any thread starts, so only the wait below receives the stop signals.
  const sigset_t signals = mesh::signals::BlockStopSignals();

  absl::StatusOr<OpenedStore> opened = OpenStore(data_dir);
  if (!opened.ok()) return Fail(opened.status());
  std::unique_ptr<mesh::store::Store> store = std::move(opened->store);
  mesh::store::WalStore* wal = opened->wal;
  mesh::store::EtcdStore* etcd = opened->etcd;
  absl::StatusOr<std::string> token = LoadOrCreateToken(token_path);
  if (!token.ok()) return Fail(token.status());
  auto index = mesh::model::ConfigIndex::Start(store.get());
  if (!index.ok()) {
    return Fail(
        absl::UnavailableError(absl::StrCat("cannot index the store: ", index.status().message())));
  }
  mesh::api::ServiceOptions service_options;
  service_options.yaml.max_documents = static_cast<size_t>(absl::GetFlag(FLAGS_max_documents));
  service_options.decode.allow_unenforced_kinds = absl::GetFlag(FLAGS_allow_unenforced_kinds);
  absl::StatusOr<mesh::compiler::MeshConfig> mesh_config = MeshConfigFromFlags();
  if (!mesh_config.ok()) return Fail(mesh_config.status());
  // What proxies present to export spans here: good for POST /v1/traces and nothing else.
  absl::StatusOr<std::string> ingest_token = RandomToken();
  if (!ingest_token.ok()) return Fail(ingest_token.status());
  if (absl::Status s = TracingFromFlags(host, port, *ingest_token, &*mesh_config); !s.ok())
    return Fail(s);
  service_options.decode.tracing_providers.emplace();
  for (const auto& p : mesh_config->trace_providers)
    service_options.decode.tracing_providers->insert(p.name);
  mesh::api::ResourceService service(store.get(), index->get(), service_options);

  mesh::api::RestOptions rest;
  rest.host = host;
  rest.port = port;
  rest.admin_token = *token;
  rest.ingest_token = *ingest_token;
  rest.max_body_bytes = static_cast<size_t>(absl::GetFlag(FLAGS_max_body_bytes));
  rest.version = MESHPILOT_VERSION;
  mesh::api::RestServer server(&service, rest);
  auto authority = OpenAuthority(store.get(), etcd != nullptr, data_dir);
  if (!authority.ok()) return Fail(authority.status());
  mesh::ca::JoinTokens join_tokens(store.get());
  mesh::ca::CaService ca_service(authority->get(), &join_tokens);
  mesh::xds::SnapshotCache::Options cache_options;
  cache_options.debounce = absl::GetFlag(FLAGS_debounce);
  cache_options.debounce_max = absl::GetFlag(FLAGS_debounce_max);
  cache_options.workload_grace = absl::GetFlag(FLAGS_workload_grace);
  cache_options.root_cert_pem = (*authority)->root_cert_pem();
  cache_options.mesh = *std::move(mesh_config);
  mesh::xds::SnapshotCache cache(index->get(), cache_options);
  mesh::xds::AdsServer ads(
      &cache, {.allow_plaintext_registration = absl::GetFlag(FLAGS_allow_plaintext_registration),
               .send_timeout = absl::GetFlag(FLAGS_xds_send_timeout)});
  std::unique_ptr<mesh::xds::WorkloadSync> workload_sync;
  if (etcd) {
    // Replicas share their sidecars' workloads, each under a lease of the grace period.
    mesh::xds::WorkloadSync::Options sync_options;
    sync_options.replica = absl::GetFlag(FLAGS_replica_id);
    if (sync_options.replica.empty())
      sync_options.replica = absl::StrCat(HostName(), ".", getpid());
    sync_options.ttl = std::max(absl::GetFlag(FLAGS_workload_grace), absl::Seconds(2));
    auto started = mesh::xds::WorkloadSync::Start(etcd, &cache, sync_options);
    if (!started.ok()) {
      return Fail(absl::UnavailableError(
          absl::StrCat("cannot share workloads through etcd: ", started.status().message())));
    }
    workload_sync = std::move(*started);
  }
  auto serving = StartServing(authority->get(), data_dir);
  if (!serving.ok()) return Fail(serving.status());
  absl::StatusOr<std::unique_ptr<grpc::Server>> grpc_server =
      StartGrpc(&ads, &ca_service, serving->get());
  if (!grpc_server.ok()) return Fail(grpc_server.status());
  std::string monitoring_address;  // set before the REST server answers anything
  AddHandlers(server, ads, cache, join_tokens, ca_service, &monitoring_address);
  AddStoreMetrics(server, store.get(), index->get(), wal);
  mesh::traces::TraceStore traces(
      {.max_traces = static_cast<size_t>(absl::GetFlag(FLAGS_trace_store_max_traces)),
       .max_bytes = static_cast<size_t>(absl::GetFlag(FLAGS_trace_store_max_bytes))});
  mesh::traces::AddTraceApi(server, &traces);
  JwksResolver jwks = StartJwks(index->get(), &cache, &server);
  auto monitoring = StartMonitoring(server, &monitoring_address);
  if (!monitoring.ok()) return Fail(monitoring.status());
  absl::StatusOr<int> bound = server.Start();
  if (!bound.ok()) return Fail(bound.status());
  if (port == 0) {
    // Proxies reach the collector on the port the REST server picked.
    std::vector<mesh::compiler::MeshConfig::TraceProvider> providers =
        cache_options.mesh.trace_providers;
    providers[0] = MeshpilotCollector(host, *bound, *ingest_token);
    cache.SetTraceProviders(std::move(providers));
  }
  Info("meshpilot: ready version=", MESHPILOT_VERSION, " rest=", host, ":", *bound,
       " data_dir=", data_dir, " store=", etcd ? "etcd" : "embedded",
       " revision=", store->Revision());

  int sig = mesh::signals::WaitForStopSignal(signals);
  Info("meshpilot: signal ", sig, ", stopping");
  server.Stop();
  if (*monitoring) (*monitoring)->Stop();
  if (*grpc_server)
    (*grpc_server)->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "meshpilot: service-mesh control plane.\n  meshpilot [--rest 127.0.0.1:15080] [--data-dir "
      "DIR]\n"
      "Flag names take '-' or '_' alike (--data-dir, --data_dir).");
  mesh::flags::ParseCommandLine(argc, argv);
  return Run();
}
