#include "dataplane/upstream/cluster_table.h"

#include <algorithm>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/ip_address.h"
#include "envoy/extensions/transport_sockets/tls/v3/tls.pb.h"
#include "envoy/extensions/upstreams/http/v3/http_protocol_options.pb.h"

namespace mesh::dataplane {
namespace {

namespace pb = envoy::config::cluster::v3;

absl::Duration ToDuration(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

}  // namespace

uint64_t HashKey(absl::string_view key) {
  // FNV-1a, 64 bit: stable across processes, so every proxy puts a key at the same point.
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : key) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  // Final mix (from SplitMix64) so that similar keys spread over the ring.
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ULL;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebULL;
  return h ^ (h >> 31);
}

const Host* Cluster::Pick(uint64_t random, std::optional<uint64_t> hash, absl::Time now) const {
  if (hosts.empty()) return nullptr;
  // On the request path: no allocation, and one pass when no host is ejected.
  size_t healthy = 0;
  for (const Host& h : hosts) healthy += h.state->Ejected(now) ? 0 : 1;
  bool panic = healthy == 0;
  auto usable = [&](size_t i) { return panic || !hosts[i].state->Ejected(now); };
  auto nth_usable = [&](uint64_t n) -> const Host* {
    if (panic || healthy == hosts.size()) return &hosts[n % hosts.size()];
    uint64_t skip = n % healthy;
    for (const Host& h : hosts) {
      if (h.state->Ejected(now)) continue;
      if (skip-- == 0) return &h;
    }
    return &hosts[0];  // not reached: `healthy` hosts were counted above
  };
  switch (policy) {
    case Policy::kRoundRobin: return nth_usable(next->fetch_add(1, std::memory_order_relaxed));
    case Policy::kRandom: return nth_usable(random);
    case Policy::kLeastRequest: {
      // Power of two choices, as Envoy's default least-request balancer, over two distinct
      // hosts when there are two: the busier one never wins by being drawn twice.
      uint64_t n = panic || healthy == hosts.size() ? hosts.size() : healthy;
      if (n == 1) return nth_usable(0);
      uint64_t i = random % n, j = (random >> 32) % (n - 1);
      if (j >= i) ++j;
      const Host* a = nth_usable(i);
      const Host* b = nth_usable(j);
      return b->state->active_requests.load(std::memory_order_relaxed) <
                     a->state->active_requests.load(std::memory_order_relaxed)
                 ? b
                 : a;
    }
    case Policy::kRingHash: {
      if (!hash || ring.empty()) return nth_usable(random);
      auto it = std::lower_bound(ring.begin(), ring.end(), std::make_pair(*hash, size_t{0}));
      for (size_t step = 0; step < ring.size(); ++step, ++it) {
        if (it == ring.end()) it = ring.begin();
        if (usable(it->second)) return &hosts[it->second];
      }
      return nth_usable(random);
    }
  }
  return nullptr;
}

bool UsableEndpoint(const std::string& address, uint32_t port) {
  return port > 0 && port <= 65535 && IsIpAddress(address);
}

namespace {

// The cluster's upstream HTTP protocol from typed_extension_protocol_options. Options this proxy
// cannot honour are refused by field path, so the update is NACKed rather than half applied.
absl::Status ReadProtocolOptions(const envoy::config::cluster::v3::Cluster& pc, Cluster* c) {
  namespace uhttp = envoy::extensions::upstreams::http::v3;
  constexpr absl::string_view kName = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
  for (const auto& [key, any] : pc.typed_extension_protocol_options()) {
    const std::string path =
        absl::StrCat("cluster ", pc.name(), ": typed_extension_protocol_options[", key, "]");
    if (key != kName) return absl::InvalidArgumentError(absl::StrCat(path, ": not supported"));
    uhttp::HttpProtocolOptions options;
    if (!any.UnpackTo(&options))
      return absl::InvalidArgumentError(absl::StrCat(path, ": is not an HttpProtocolOptions"));
    const auto& common = options.common_http_protocol_options();
    if (common.has_idle_timeout()) c->limits.idle_timeout = ToDuration(common.idle_timeout());
    if (common.has_max_requests_per_connection())
      c->limits.max_requests_per_connection = common.max_requests_per_connection().value();
    const envoy::config::core::v3::Http2ProtocolOptions* h2 = nullptr;
    std::string h2_path;
    switch (options.upstream_protocol_options_case()) {
      case uhttp::HttpProtocolOptions::kExplicitHttpConfig:
        if (options.explicit_http_config().has_http2_protocol_options()) {
          c->protocol = Cluster::Protocol::kHttp2;
          h2 = &options.explicit_http_config().http2_protocol_options();
          h2_path = ".explicit_http_config.http2_protocol_options";
        }
        break;
      case uhttp::HttpProtocolOptions::kUseDownstreamProtocolConfig:
        c->protocol = Cluster::Protocol::kDownstream;
        h2 = &options.use_downstream_protocol_config().http2_protocol_options();
        h2_path = ".use_downstream_protocol_config.http2_protocol_options";
        break;
      case uhttp::HttpProtocolOptions::kAutoConfig:
        return absl::InvalidArgumentError(
            absl::StrCat(path, ".auto_config: ALPN-chosen upstream protocol is not supported"));
      default: break;
    }
    if (!h2) continue;
    if (h2->has_max_concurrent_streams())
      c->max_concurrent_streams = h2->max_concurrent_streams().value();
    // What meshproxy's HTTP/2 client does not let config change: refused, never ignored.
    if (h2->allow_connect())
      return absl::InvalidArgumentError(
          absl::StrCat(path, h2_path, ".allow_connect: CONNECT over HTTP/2 is not supported"));
    for (auto [set, field] :
         {std::pair{h2->has_hpack_table_size(), "hpack_table_size"},
          std::pair{h2->has_initial_stream_window_size(), "initial_stream_window_size"},
          std::pair{h2->has_initial_connection_window_size(), "initial_connection_window_size"}}) {
      if (set)
        return absl::InvalidArgumentError(
            absl::StrCat(path, h2_path, ".", field, ": not supported by meshproxy"));
    }
  }
  return absl::OkStatus();
}

absl::Status ReadPolicy(const pb::Cluster& pc, Cluster* c) {
  switch (pc.lb_policy()) {
    case pb::Cluster::ROUND_ROBIN: c->policy = Cluster::Policy::kRoundRobin; break;
    case pb::Cluster::LEAST_REQUEST: c->policy = Cluster::Policy::kLeastRequest; break;
    case pb::Cluster::RANDOM: c->policy = Cluster::Policy::kRandom; break;
    case pb::Cluster::RING_HASH: c->policy = Cluster::Policy::kRingHash; break;
    default:
      return absl::InvalidArgumentError(absl::StrCat("cluster ", pc.name(), ": lb_policy ",
                                                     pb::Cluster::LbPolicy_Name(pc.lb_policy()),
                                                     " is not supported"));
  }
  return absl::OkStatus();
}

void ReadLimits(const pb::Cluster& pc, Cluster* c) {
  if (pc.has_connect_timeout()) c->connect_timeout = ToDuration(pc.connect_timeout());
  for (const auto& t : pc.circuit_breakers().thresholds()) {
    if (t.priority() != 0) continue;  // DEFAULT priority only
    if (t.has_max_connections()) c->limits.max_connections = t.max_connections().value();
    if (t.has_max_pending_requests())
      c->limits.max_pending_requests = t.max_pending_requests().value();
    if (t.has_max_requests()) c->limits.max_requests = t.max_requests().value();
    if (t.has_max_retries()) c->limits.max_retries = t.max_retries().value();
  }
  if (pc.common_http_protocol_options().has_idle_timeout())
    c->limits.idle_timeout = ToDuration(pc.common_http_protocol_options().idle_timeout());
  if (pc.has_max_requests_per_connection())
    c->limits.max_requests_per_connection = pc.max_requests_per_connection().value();
}

// The cluster's UpstreamTlsContext: the mesh identity (ISTIO_MUTUAL), or certificates from files
// (SIMPLE or MUTUAL); SDS names other than the mesh's (credentialName) cannot be served.
UpstreamTls ReadUpstreamTls(const google::protobuf::Any& typed) {
  namespace tls = envoy::extensions::transport_sockets::tls::v3;
  tls::UpstreamTlsContext ctx;
  UpstreamTls t;
  if (!typed.UnpackTo(&ctx)) {
    t.unsupported = true;
    return t;
  }
  const tls::CommonTlsContext& common = ctx.common_tls_context();
  t.sni = ctx.sni();
  t.istio_mutual = common.tls_certificate_sds_secret_configs_size() == 1 &&
                   common.tls_certificate_sds_secret_configs(0).name() == "default";
  if (!t.istio_mutual) {
    t.unsupported = common.tls_certificate_sds_secret_configs_size() > 0 ||
                    common.has_combined_validation_context();
    t.files = !t.unsupported;
    if (common.tls_certificates_size() > 0) {
      t.cert_file = common.tls_certificates(0).certificate_chain().filename();
      t.key_file = common.tls_certificates(0).private_key().filename();
    }
    t.ca_file = common.validation_context().trusted_ca().filename();
    t.verify = common.has_validation_context();
  }
  for (const auto& m : common.combined_validation_context()
                           .default_validation_context()
                           .match_typed_subject_alt_names()) {
    if (m.san_type() == tls::SubjectAltNameMatcher::URI && !m.matcher().exact().empty())
      t.san_uris.push_back(m.matcher().exact());
  }
  return t;
}

OutlierSettings ReadOutlier(const envoy::config::cluster::v3::OutlierDetection& od) {
  OutlierSettings o;
  o.enabled = true;
  bool enforce_5xx =
      !od.has_enforcing_consecutive_5xx() || od.enforcing_consecutive_5xx().value() > 0;
  o.consecutive_5xx =
      enforce_5xx ? (od.has_consecutive_5xx() ? od.consecutive_5xx().value() : 5) : 0;
  if (od.has_consecutive_gateway_failure() &&
      (!od.has_enforcing_consecutive_gateway_failure() ||
       od.enforcing_consecutive_gateway_failure().value() > 0)) {
    o.consecutive_gateway_errors = od.consecutive_gateway_failure().value();
  }
  if (od.has_interval()) o.interval = ToDuration(od.interval());
  if (od.has_base_ejection_time()) o.base_ejection_time = ToDuration(od.base_ejection_time());
  if (od.has_max_ejection_percent()) o.max_ejection_percent = od.max_ejection_percent().value();
  return o;
}

// The cluster's endpoints: inline for STATIC, else the EDS assignment of its service name.
const envoy::config::endpoint::v3::ClusterLoadAssignment* FindAssignment(
    const pb::Cluster& pc, const ProxyConfig& config) {
  if (pc.type() == pb::Cluster::STATIC) return &pc.load_assignment();
  const std::string& service = pc.eds_cluster_config().service_name().empty()
                                   ? pc.name()
                                   : pc.eds_cluster_config().service_name();
  auto it = config.endpoints.find(service);
  return it == config.endpoints.end() ? nullptr : &it->second;
}

// The hosts of the services in Istio's cluster metadata (filter "istio", list "services").
std::vector<std::string> ServiceHosts(const pb::Cluster& pc) {
  std::vector<std::string> out;
  const auto& filters = pc.metadata().filter_metadata();
  auto istio = filters.find("istio");
  if (istio == filters.end()) return out;
  auto services = istio->second.fields().find("services");
  if (services == istio->second.fields().end() || !services->second.has_list_value()) return out;
  for (const auto& v : services->second.list_value().values()) {
    if (!v.has_struct_value()) continue;
    auto host = v.struct_value().fields().find("host");
    if (host != v.struct_value().fields().end() && host->second.has_string_value())
      out.push_back(host->second.string_value());
  }
  return out;
}

// The workload Istio's EDS metadata names (filter "istio", field "workload"), if any.
telemetry::PeerInfoPtr EndpointPeer(const envoy::config::endpoint::v3::LbEndpoint& lb) {
  const auto& filters = lb.metadata().filter_metadata();
  auto istio = filters.find("istio");
  if (istio == filters.end()) return nullptr;
  auto workload = istio->second.fields().find("workload");
  if (workload == istio->second.fields().end() || !workload->second.has_string_value())
    return nullptr;
  std::optional<telemetry::PeerInfo> peer =
      telemetry::PeerFromEndpointWorkload(workload->second.string_value());
  return peer ? std::make_shared<const telemetry::PeerInfo>(std::move(*peer)) : nullptr;
}

// The usable, healthy endpoints of `cla` as hosts; a host the previous table had keeps its
// state (outlier ejection, active requests).
void ReadHosts(const envoy::config::endpoint::v3::ClusterLoadAssignment& cla, const Cluster* before,
               Cluster* c) {
  absl::flat_hash_map<std::pair<std::string, uint32_t>, std::shared_ptr<HostState>> old_states;
  if (before) {
    for (const Host& old : before->hosts) old_states[{old.address, old.port}] = old.state;
  }
  for (const auto& group : cla.endpoints()) {
    for (const auto& lb : group.lb_endpoints()) {
      const auto& addr = lb.endpoint().address().socket_address();
      if (!UsableEndpoint(addr.address(), addr.port_value())) {
        ++c->invalid_endpoints;
        continue;
      }
      if (lb.health_status() == envoy::config::core::v3::UNHEALTHY ||
          lb.health_status() == envoy::config::core::v3::DRAINING ||
          lb.health_status() == envoy::config::core::v3::TIMEOUT) {
        ++c->unhealthy_endpoints;
        continue;
      }
      Host h;
      h.address = addr.address();
      h.port = addr.port_value();
      h.weight = lb.has_load_balancing_weight() ? lb.load_balancing_weight().value() : 1;
      auto it = old_states.find({h.address, h.port});
      h.state = it != old_states.end() ? it->second : std::make_shared<HostState>();
      h.pool_key = absl::StrCat(c->pool_prefix, h.address, ":", h.port);
      h.peer = EndpointPeer(lb);
      c->hosts.push_back(std::move(h));
    }
  }
}

// Each host gets 160 points per unit of weight (ketama's replication), so its points do not
// depend on the other hosts and a host leaving moves only its own keys. An explicit
// minimum_ring_size raises the points per weight (and then, as in Envoy, a change in the total
// weight can move some keys).
void BuildRing(const pb::Cluster& pc, Cluster* c) {
  uint64_t total_weight = 0;
  for (const Host& h : c->hosts) total_weight += std::max<uint32_t>(h.weight, 1);
  uint64_t per_weight = 160;
  if (pc.ring_hash_lb_config().has_minimum_ring_size() && total_weight > 0) {
    uint64_t min_ring = pc.ring_hash_lb_config().minimum_ring_size().value();
    per_weight = std::max<uint64_t>(per_weight, (min_ring + total_weight - 1) / total_weight);
  }
  for (size_t i = 0; i < c->hosts.size(); ++i) {
    uint64_t points = per_weight * std::max<uint32_t>(c->hosts[i].weight, 1);
    for (uint64_t p = 0; p < points; ++p) {
      c->ring.emplace_back(
          HashKey(absl::StrCat(c->hosts[i].address, ":", c->hosts[i].port, "_", p)), i);
    }
  }
  std::sort(c->ring.begin(), c->ring.end());
}

}  // namespace

absl::StatusOr<std::shared_ptr<const ClusterTable>> ClusterTable::Build(
    const ProxyConfig& config, const ClusterTable* previous) {
  auto table = std::make_shared<ClusterTable>();
  for (const auto& [name, pc] : config.clusters) {
    Cluster c;
    c.name = name;
    if (absl::Status s = ReadPolicy(pc, &c); !s.ok()) return s;
    ReadLimits(pc, &c);
    if (absl::Status s = ReadProtocolOptions(pc, &c); !s.ok()) return s;
    if (pc.has_transport_socket()) {
      UpstreamTls t = ReadUpstreamTls(pc.transport_socket().typed_config());
      // Connections are pooled per TLS setting too: one pool never mixes identities.
      c.pool_prefix = absl::StrCat("tls|", t.istio_mutual ? "mesh" : "files", "|", t.sni, "|",
                                   absl::StrJoin(t.san_uris, ","), "|", t.ca_file, "|", t.cert_file,
                                   "|", t.key_file, "|", t.verify ? "verify" : "", "|");
      c.tls = std::move(t);
    }
    if (pc.has_outlier_detection()) c.outlier = ReadOutlier(pc.outlier_detection());
    c.service_hosts = ServiceHosts(pc);
    const Cluster* before = previous ? previous->Find(name) : nullptr;
    c.next = before ? before->next : std::make_shared<std::atomic<uint64_t>>(0);
    c.state = before ? before->state : std::make_shared<ClusterState>();
    if (const auto* cla = FindAssignment(pc, config)) ReadHosts(*cla, before, &c);
    if (c.policy == Cluster::Policy::kRingHash) BuildRing(pc, &c);
    table->clusters_.emplace(name, std::move(c));
  }
  return std::shared_ptr<const ClusterTable>(std::move(table));
}

const Cluster* ClusterTable::Find(const std::string& name) const {
  auto it = clusters_.find(name);
  return it == clusters_.end() ? nullptr : &it->second;
}

}  // namespace mesh::dataplane
