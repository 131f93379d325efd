#include "dataplane/upstream/cluster_table.h"

#include <catch2/catch.hpp>
#include <set>

#include "absl/strings/str_cat.h"
#include "envoy/extensions/transport_sockets/tls/v3/tls.pb.h"
#include "envoy/extensions/upstreams/http/v3/http_protocol_options.pb.h"

namespace mesh::dataplane {
namespace {

namespace pb = envoy::config::cluster::v3;

const absl::Time kNow = absl::FromUnixSeconds(1'700'000'000);

ProxyConfig Config(pb::Cluster::LbPolicy policy, int hosts) {
  ProxyConfig config;
  pb::Cluster c;
  c.set_name("outbound|80||web");
  c.set_type(pb::Cluster::EDS);
  c.mutable_eds_cluster_config()->set_service_name("outbound|80||web");
  c.set_lb_policy(policy);
  c.mutable_connect_timeout()->set_nanos(250'000'000);
  auto* t = c.mutable_circuit_breakers()->add_thresholds();
  t->mutable_max_connections()->set_value(10);
  t->mutable_max_pending_requests()->set_value(5);
  c.mutable_outlier_detection()->mutable_consecutive_5xx()->set_value(3);
  c.mutable_outlier_detection()->mutable_base_ejection_time()->set_seconds(30);
  config.clusters[c.name()] = c;
  envoy::config::endpoint::v3::ClusterLoadAssignment cla;
  cla.set_cluster_name(c.name());
  auto* group = cla.add_endpoints();
  for (int i = 0; i < hosts; ++i) {
    auto* addr =
        group->add_lb_endpoints()->mutable_endpoint()->mutable_address()->mutable_socket_address();
    addr->set_address(absl::StrCat("10.0.0.", i + 1));
    addr->set_port_value(8080);
  }
  config.endpoints[c.name()] = cla;
  return config;
}

ClusterTablePtr Build(const ProxyConfig& config, const ClusterTable* previous = nullptr) {
  auto t = ClusterTable::Build(config, previous);
  REQUIRE(t.ok());
  return *t;
}

TEST_CASE("Clusters carry their endpoints, limits and outlier settings from CDS and EDS") {
  ClusterTablePtr t = Build(Config(pb::Cluster::ROUND_ROBIN, 3));
  const Cluster* c = t->Find("outbound|80||web");
  REQUIRE(c != nullptr);
  CHECK(c->hosts.size() == 3);
  CHECK(c->connect_timeout == absl::Milliseconds(250));
  CHECK(c->limits.max_connections == 10);
  CHECK(c->limits.max_pending_requests == 5);
  CHECK(c->outlier.enabled);
  CHECK(c->outlier.consecutive_5xx == 3);
  CHECK(c->outlier.base_ejection_time == absl::Seconds(30));
  ProxyConfig maglev = Config(pb::Cluster::MAGLEV, 1);
  CHECK(ClusterTable::Build(maglev, nullptr).status().message() ==
        "cluster outbound|80||web: lb_policy MAGLEV is not supported");
}

TEST_CASE("Round robin cycles over hosts, skips ejected ones, and uses all when all are ejected") {
  ClusterTablePtr t = Build(Config(pb::Cluster::ROUND_ROBIN, 3));
  const Cluster* c = t->Find("outbound|80||web");
  std::vector<std::string> seen;
  for (int i = 0; i < 6; ++i) seen.push_back(c->Pick(0, std::nullopt, kNow)->address);
  CHECK(seen == std::vector<std::string>{"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.1", "10.0.0.2",
                                         "10.0.0.3"});
  c->hosts[1].state->ejected_until_ns = absl::ToUnixNanos(kNow + absl::Seconds(30));
  std::set<std::string> while_ejected;
  for (int i = 0; i < 6; ++i) while_ejected.insert(c->Pick(0, std::nullopt, kNow)->address);
  CHECK(while_ejected == std::set<std::string>{"10.0.0.1", "10.0.0.3"});
  // Once the ejection time has passed the host is back.
  std::set<std::string> later;
  for (int i = 0; i < 6; ++i)
    later.insert(c->Pick(0, std::nullopt, kNow + absl::Seconds(31))->address);
  CHECK(later.size() == 3);
  for (const Host& h : c->hosts)
    h.state->ejected_until_ns = absl::ToUnixNanos(kNow + absl::Seconds(30));
  CHECK(c->Pick(0, std::nullopt, kNow) != nullptr);  // panic: better an ejected host than none
}

TEST_CASE("Least request prefers the less loaded of two random choices") {
  ClusterTablePtr t = Build(Config(pb::Cluster::LEAST_REQUEST, 2));
  const Cluster* c = t->Find("outbound|80||web");
  c->hosts[0].state->active_requests = 10;
  // Draws picking host 0 and host 1 as the two choices, in both orders.
  CHECK(c->Pick(0 | (uint64_t{1} << 32), std::nullopt, kNow)->address == "10.0.0.2");
  CHECK(c->Pick(1 | (uint64_t{0} << 32), std::nullopt, kNow)->address == "10.0.0.2");
}

TEST_CASE("Ring hash keeps a key on one host, and removing a host moves only its keys") {
  ProxyConfig four = Config(pb::Cluster::RING_HASH, 4);
  ClusterTablePtr t = Build(four);
  const Cluster* c = t->Find("outbound|80||web");
  std::map<int, std::string> placed;
  std::map<std::string, int> load;
  for (int k = 0; k < 400; ++k) {
    uint64_t key = HashKey(absl::StrCat("user-", k));
    placed[k] = c->Pick(k, key, kNow)->address;
    CHECK(c->Pick(k * 7 + 1, key, kNow)->address == placed[k]);  // the draw does not matter
    ++load[placed[k]];
  }
  for (const auto& [host, n] : load) CHECK(n > 40);  // spread over all four
  ProxyConfig three = four;
  auto* eps = three.endpoints["outbound|80||web"].mutable_endpoints(0)->mutable_lb_endpoints();
  eps->erase(eps->begin() + 3);  // 10.0.0.4 leaves
  ClusterTablePtr t3 = Build(three, t.get());
  const Cluster* c3 = t3->Find("outbound|80||web");
  for (int k = 0; k < 400; ++k) {
    std::string now_at = c3->Pick(k, HashKey(absl::StrCat("user-", k)), kNow)->address;
    if (placed[k] != "10.0.0.4") CHECK(now_at == placed[k]);
  }
}

TEST_CASE("Host state and round-robin position survive a rebuild for hosts that stay") {
  ProxyConfig config = Config(pb::Cluster::ROUND_ROBIN, 2);
  ClusterTablePtr first = Build(config);
  first->Find("outbound|80||web")->hosts[0].state->active_requests = 3;
  first->Find("outbound|80||web")->Pick(0, std::nullopt, kNow);
  ClusterTablePtr second = Build(config, first.get());
  const Cluster* c = second->Find("outbound|80||web");
  CHECK(c->hosts[0].state->active_requests == 3);
  CHECK(c->hosts[0].state == first->Find("outbound|80||web")->hosts[0].state);
  CHECK(c->Pick(0, std::nullopt, kNow)->address == "10.0.0.2");  // continues where it was
}

TEST_CASE("Cluster TLS: ISTIO_MUTUAL with identities, files, and credentialName refused") {
  namespace tls = envoy::extensions::transport_sockets::tls::v3;
  auto with = [](const tls::UpstreamTlsContext& ctx) {
    ProxyConfig config = Config(pb::Cluster::ROUND_ROBIN, 1);
    config.clusters["outbound|80||web"]
        .mutable_transport_socket()
        ->mutable_typed_config()
        ->PackFrom(ctx);
    auto table = ClusterTable::Build(config, nullptr);
    REQUIRE(table.ok());
    const Cluster* c = (*table)->Find("outbound|80||web");
    REQUIRE(c);
    REQUIRE(c->tls);
    return *c->tls;
  };
  tls::UpstreamTlsContext mesh;
  mesh.set_sni("outbound_.80_._.web");
  mesh.mutable_common_tls_context()->add_tls_certificate_sds_secret_configs()->set_name("default");
  auto* san = mesh.mutable_common_tls_context()
                  ->mutable_combined_validation_context()
                  ->mutable_default_validation_context()
                  ->add_match_typed_subject_alt_names();
  san->set_san_type(tls::SubjectAltNameMatcher::URI);
  san->mutable_matcher()->set_exact("spiffe://cluster.local/ns/default/sa/web");
  UpstreamTls m = with(mesh);
  CHECK(m.istio_mutual);
  CHECK(!m.unsupported);
  CHECK(m.sni == "outbound_.80_._.web");
  CHECK(m.san_uris == std::vector<std::string>{"spiffe://cluster.local/ns/default/sa/web"});

  tls::UpstreamTlsContext files;
  auto* cert = files.mutable_common_tls_context()->add_tls_certificates();
  cert->mutable_certificate_chain()->set_filename("/c.pem");
  cert->mutable_private_key()->set_filename("/k.pem");
  files.mutable_common_tls_context()
      ->mutable_validation_context()
      ->mutable_trusted_ca()
      ->set_filename("/ca.pem");
  UpstreamTls f = with(files);
  CHECK(f.files);
  CHECK(f.verify);
  CHECK(f.cert_file == "/c.pem");
  CHECK(f.ca_file == "/ca.pem");

  tls::UpstreamTlsContext insecure;  // SIMPLE with insecureSkipVerify: no validation context
  UpstreamTls n = with(insecure);
  CHECK(n.files);
  CHECK(!n.verify);

  tls::UpstreamTlsContext secret;  // credentialName
  secret.mutable_common_tls_context()->add_tls_certificate_sds_secret_configs()->set_name(
      "gw-cert");
  CHECK(with(secret).unsupported);
}

}  // namespace
}  // namespace mesh::dataplane

namespace mesh::dataplane {
namespace {

TEST_CASE("A bad EDS endpoint is dropped and counted, and the rest of the cluster is served") {
  ProxyConfig config = Config(pb::Cluster::ROUND_ROBIN, 2);
  auto* group = config.endpoints.begin()->second.mutable_endpoints(0);
  auto add = [&](const std::string& address, uint32_t port) {
    auto* lb = group->add_lb_endpoints();
    auto* addr = lb->mutable_endpoint()->mutable_address()->mutable_socket_address();
    addr->set_address(address);
    addr->set_port_value(port);
    return lb;
  };
  add("10.0.0.9", 0);         // port 0: what a poisoned registration sent
  add("10.0.0.9", 70000);     // over 65535: would wrap to 4464
  add("pong.example", 8080);  // not an IP address
  add("", 8080);
  add("::1", 8080);  // IPv6 is fine
  add("10.0.0.7", 8080)->set_health_status(envoy::config::core::v3::UNHEALTHY);
  add("10.0.0.8", 8080)->set_health_status(envoy::config::core::v3::DRAINING);
  add("10.0.0.6", 8080)->set_health_status(envoy::config::core::v3::HEALTHY);
  ClusterTablePtr t = Build(config);
  const Cluster* c = t->Find("outbound|80||web");
  REQUIRE(c != nullptr);
  std::set<std::string> hosts;
  for (const Host& h : c->hosts) hosts.insert(absl::StrCat(h.address, ":", h.port));
  CHECK(hosts ==
        std::set<std::string>{"10.0.0.1:8080", "10.0.0.2:8080", "::1:8080", "10.0.0.6:8080"});
  CHECK(c->invalid_endpoints == 4);
  CHECK(c->unhealthy_endpoints == 2);
}

TEST_CASE("A cluster's TLS settings are part of its connections' pool key") {
  namespace tls = envoy::extensions::transport_sockets::tls::v3;
  auto with_sans = [](std::vector<std::string> sans) {
    ProxyConfig config = Config(pb::Cluster::ROUND_ROBIN, 1);
    tls::UpstreamTlsContext ctx;
    auto* common = ctx.mutable_common_tls_context();
    common->add_tls_certificate_sds_secret_configs()->set_name("default");
    for (const std::string& san : sans) {
      auto* m = common->mutable_combined_validation_context()
                    ->mutable_default_validation_context()
                    ->add_match_typed_subject_alt_names();
      m->set_san_type(tls::SubjectAltNameMatcher::URI);
      m->mutable_matcher()->set_exact(san);
    }
    auto& c = config.clusters.begin()->second;
    c.mutable_transport_socket()->set_name("envoy.transport_sockets.tls");
    c.mutable_transport_socket()->mutable_typed_config()->PackFrom(ctx);
    return config;
  };
  ClusterTablePtr plain = Build(Config(pb::Cluster::ROUND_ROBIN, 1));
  ClusterTablePtr any = Build(with_sans({}));
  ClusterTablePtr one = Build(with_sans({"spiffe://cluster.local/ns/default/sa/pong"}));
  ClusterTablePtr again = Build(with_sans({"spiffe://cluster.local/ns/default/sa/pong"}));
  const std::string name = "outbound|80||web";
  CHECK(plain->Find(name)->pool_prefix.empty());
  CHECK(any->Find(name)->pool_prefix != plain->Find(name)->pool_prefix);
  CHECK(one->Find(name)->pool_prefix != any->Find(name)->pool_prefix);
  CHECK(one->Find(name)->pool_prefix == again->Find(name)->pool_prefix);
}

}  // namespace
}  // namespace mesh::dataplane

namespace mesh::dataplane {
namespace {

TEST_CASE(
    "A cluster's HttpProtocolOptions choose its upstream protocol, and options meshproxy "
    "cannot honour are refused by field path") {
  namespace uhttp = envoy::extensions::upstreams::http::v3;
  const std::string kKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
  auto with = [&](const uhttp::HttpProtocolOptions& options) {
    ProxyConfig config = Config(pb::Cluster::ROUND_ROBIN, 1);
    (*config.clusters["outbound|80||web"].mutable_typed_extension_protocol_options())[kKey]
        .PackFrom(options);
    return ClusterTable::Build(config, nullptr);
  };
  CHECK(Build(Config(pb::Cluster::ROUND_ROBIN, 1))->Find("outbound|80||web")->protocol ==
        Cluster::Protocol::kHttp11);

  uhttp::HttpProtocolOptions h2;
  h2.mutable_explicit_http_config()
      ->mutable_http2_protocol_options()
      ->mutable_max_concurrent_streams()
      ->set_value(50);
  h2.mutable_common_http_protocol_options()->mutable_idle_timeout()->set_seconds(30);
  auto table = with(h2);
  REQUIRE(table.ok());
  const Cluster* c = (*table)->Find("outbound|80||web");
  CHECK(c->protocol == Cluster::Protocol::kHttp2);
  CHECK(c->max_concurrent_streams == 50);
  CHECK(c->limits.idle_timeout == absl::Seconds(30));

  uhttp::HttpProtocolOptions downstream;
  downstream.mutable_use_downstream_protocol_config()->mutable_http2_protocol_options();
  CHECK((*with(downstream))->Find("outbound|80||web")->protocol == Cluster::Protocol::kDownstream);

  uhttp::HttpProtocolOptions automatic;
  automatic.mutable_auto_config();
  CHECK(with(automatic).status().message() ==
        "cluster outbound|80||web: typed_extension_protocol_options[" + kKey +
            "].auto_config: ALPN-chosen upstream protocol is not supported");
  uhttp::HttpProtocolOptions connect;
  connect.mutable_explicit_http_config()->mutable_http2_protocol_options()->set_allow_connect(true);
  CHECK(with(connect).status().message() ==
        "cluster outbound|80||web: typed_extension_protocol_options[" + kKey +
            "].explicit_http_config.http2_protocol_options.allow_connect: CONNECT over HTTP/2 is "
            "not supported");
}

}  // namespace
}  // namespace mesh::dataplane
