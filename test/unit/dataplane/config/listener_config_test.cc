#include "dataplane/config/listener_config.h"

#include <catch2/catch.hpp>

#include "absl/strings/match.h"
#include "envoy/config/listener/v3/listener.pb.h"
#include "envoy/extensions/filters/http/rbac/v3/rbac.pb.h"
#include "envoy/extensions/filters/http/router/v3/router.pb.h"
#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb.h"
#include "envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.pb.h"
#include "envoy/extensions/transport_sockets/tls/v3/tls.pb.h"
#include "google/protobuf/text_format.h"

namespace mesh::dataplane {
namespace {

namespace hcm = envoy::extensions::filters::network::http_connection_manager::v3;
using envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy;

template <class M>
M Parse(const std::string& text) {
  M m;
  REQUIRE(google::protobuf::TextFormat::ParseFromString(text, &m));
  return m;
}

envoy::config::listener::v3::Listener With(const google::protobuf::Message& filter,
                                           uint32_t port = 80) {
  envoy::config::listener::v3::Listener l;
  l.set_name("0.0.0.0_80");
  l.mutable_address()->mutable_socket_address()->set_address("0.0.0.0");
  l.mutable_address()->mutable_socket_address()->set_port_value(port);
  l.set_traffic_direction(envoy::config::core::v3::OUTBOUND);
  l.add_filter_chains()->add_filters()->mutable_typed_config()->PackFrom(filter);
  return l;
}

TEST_CASE("An HTTP listener names its RDS route config, or carries its routes inline") {
  auto rds = ListenerConfig::FromProto(With(Parse<hcm::HttpConnectionManager>(
      R"(stat_prefix: "s" rds { route_config_name: "http.80" })")));
  REQUIRE(rds.ok());
  CHECK((*rds)->kind == ListenerConfig::Kind::kHttp);
  CHECK((*rds)->rds_name == "http.80");
  CHECK((*rds)->port == 80);
  CHECK((*rds)->direction == ListenerConfig::Direction::kOutbound);

  auto inline_routes = ListenerConfig::FromProto(With(Parse<hcm::HttpConnectionManager>(R"(
      route_config { name: "in" virtual_hosts { name: "a" domains: "*"
        routes { match { prefix: "/" } route { cluster: "inbound|18081||" } } } })")));
  REQUIRE(inline_routes.ok());
  REQUIRE((*inline_routes)->inline_routes);
  CHECK((*inline_routes)->inline_routes->name() == "in");
}

TEST_CASE("An HTTP listener's stream idle timeout: Envoy's 5 minutes, the config's, or none") {
  auto parse = [](const std::string& extra) {
    auto l = ListenerConfig::FromProto(With(Parse<hcm::HttpConnectionManager>(
        R"(stat_prefix: "s" rds { route_config_name: "http.80" } )" + extra)));
    REQUIRE(l.ok());
    return (*l)->stream_idle_timeout;
  };
  CHECK(parse("") == absl::Minutes(5));
  CHECK(parse("stream_idle_timeout { seconds: 30 }") == absl::Seconds(30));
  CHECK(!parse("stream_idle_timeout {}").has_value());
}

TEST_CASE("HTTP RBAC filters are kept in order, and a filter the proxy cannot run is refused") {
  auto rbac = ListenerConfig::FromProto(With(Parse<hcm::HttpConnectionManager>(R"(
    stat_prefix: "s" rds { route_config_name: "http.80" }
    http_filters { name: "envoy.filters.http.rbac" typed_config {
      [type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC] {
        rules { action: DENY policies { key: "p" value {
          permissions { url_path { path { prefix: "/admin" } } } principals { any: true } } } } } } }
    http_filters { name: "envoy.filters.http.rbac" typed_config {
      [type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC] { rules {} } } }
    http_filters { name: "envoy.filters.http.router" typed_config {
      [type.googleapis.com/envoy.extensions.filters.http.router.v3.Router] {} } })")));
  INFO(rbac.status().message());
  REQUIRE(rbac.ok());
  REQUIRE((*rbac)->http_rbac.size() == 2);
  CHECK((*rbac)->http_rbac[0]->action() == RbacPolicy::Action::kDeny);
  CHECK((*rbac)->http_rbac[1]->action() == RbacPolicy::Action::kAllow);  // empty: allows nothing

  auto unknown = ListenerConfig::FromProto(With(Parse<hcm::HttpConnectionManager>(R"(
    stat_prefix: "s" rds { route_config_name: "http.80" }
    http_filters { name: "envoy.filters.http.lua" typed_config {
      [type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy] {} } })")));
  REQUIRE(!unknown.ok());
  CHECK(absl::StrContains(unknown.status().message(),
                          "filter_chains[0].filters[0].http_filters[0]: unsupported filter "
                          "envoy.filters.http.lua"));

  auto bad_cidr = ListenerConfig::FromProto(With(Parse<hcm::HttpConnectionManager>(R"(
    stat_prefix: "s" rds { route_config_name: "http.80" }
    http_filters { name: "envoy.filters.http.rbac" typed_config {
      [type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC] {
        rules { policies { key: "p" value { permissions { any: true }
          principals { direct_remote_ip { address_prefix: "10.0.0" prefix_len { value: 8 } } } } } } } } })")));
  REQUIRE(!bad_cidr.ok());
  CHECK(absl::StrContains(bad_cidr.status().message(),
                          "policies[p].principals[0].direct_remote_ip.address_prefix"));
}

TEST_CASE("A TCP listener picks among weighted clusters, and keeps its idle timeout") {
  auto tcp = ListenerConfig::FromProto(With(Parse<TcpProxy>(R"(
      stat_prefix: "t" weighted_clusters { clusters { name: "redis" weight: 75 }
                                           clusters { name: "mysql" weight: 25 } }
      idle_timeout { seconds: 30 })")));
  REQUIRE(tcp.ok());
  const ListenerConfig& l = **tcp;
  CHECK(l.kind == ListenerConfig::Kind::kTcp);
  CHECK(l.PickTcp(0)->cluster == "redis");
  CHECK(l.PickTcp(74)->cluster == "redis");
  CHECK(l.PickTcp(75)->cluster == "mysql");
  CHECK(l.tcp_idle_timeout == absl::Seconds(30));

  auto by_default = ListenerConfig::FromProto(With(Parse<TcpProxy>(R"(cluster: "c")")));
  REQUIRE(by_default.ok());
  CHECK((*by_default)->tcp_idle_timeout == absl::Hours(1));
  auto disabled = ListenerConfig::FromProto(
      With(Parse<TcpProxy>(R"(cluster: "c" idle_timeout { seconds: 0 })")));
  REQUIRE(disabled.ok());
  CHECK(!(*disabled)->tcp_idle_timeout.has_value());
}

TEST_CASE("Listeners the proxy cannot serve are refused with the field path") {
  auto no_port =
      ListenerConfig::FromProto(With(Parse<TcpProxy>(R"(stat_prefix: "t" cluster: "c")"), 0));
  CHECK(no_port.status().message() ==
        "listener 0.0.0.0_80: address.socket_address: an address and a port are required");
  auto no_cluster = ListenerConfig::FromProto(With(Parse<TcpProxy>(R"(stat_prefix: "t")")));
  CHECK(no_cluster.status().message() ==
        "listener 0.0.0.0_80: filter_chains[0].filters[0]: cluster or weighted_clusters is "
        "required");
  auto bad_regex = ListenerConfig::FromProto(With(Parse<hcm::HttpConnectionManager>(R"(
      route_config { name: "in" virtual_hosts { name: "a" domains: "*"
        routes { match { safe_regex { regex: "[" } } route { cluster: "c" } } } })")));
  CHECK(absl::StartsWith(bad_regex.status().message(),
                         "listener 0.0.0.0_80: filter_chains[0].filters[0].route_config: route "
                         "config in: virtual_hosts[0].routes[0].match.safe_regex.regex"));
  envoy::config::listener::v3::Listener two = With(Parse<TcpProxy>(R"(cluster: "c")"));
  *two.add_filter_chains() = two.filter_chains(0);
  CHECK(ListenerConfig::FromProto(two).status().message() ==
        "listener 0.0.0.0_80: filter_chains: two chains must be one TLS chain (transport_protocol "
        "\"tls\") and one plaintext chain");
}

TEST_CASE("TLS chains: mesh STRICT, PERMISSIVE pairs, and certificates from files") {
  using envoy::extensions::transport_sockets::tls::v3::DownstreamTlsContext;
  auto tcp = Parse<TcpProxy>(R"(cluster: "c")");
  auto mesh_tls = Parse<DownstreamTlsContext>(R"(
      common_tls_context { tls_certificate_sds_secret_configs { name: "default" } }
      require_client_certificate { value: true })");
  envoy::config::listener::v3::Listener strict = With(tcp);
  strict.mutable_filter_chains(0)->mutable_transport_socket()->mutable_typed_config()->PackFrom(
      mesh_tls);
  auto s = ListenerConfig::FromProto(strict);
  REQUIRE(s.ok());
  CHECK((*s)->tls == ListenerConfig::Tls::kStrict);
  CHECK(!(*s)->tls_files);

  envoy::config::listener::v3::Listener permissive = With(tcp);
  *permissive.add_filter_chains() = permissive.filter_chains(0);  // the plaintext chain second
  permissive.mutable_filter_chains(0)->mutable_filter_chain_match()->set_transport_protocol("tls");
  *permissive.mutable_filter_chains(0)->mutable_transport_socket() =
      strict.filter_chains(0).transport_socket();
  auto p = ListenerConfig::FromProto(permissive);
  REQUIRE(p.ok());
  CHECK((*p)->tls == ListenerConfig::Tls::kPermissive);
  CHECK((*p)->tcp_targets[0].cluster == "c");  // served from the plaintext chain's filter

  envoy::config::listener::v3::Listener files = With(tcp);
  files.mutable_filter_chains(0)->mutable_transport_socket()->mutable_typed_config()->PackFrom(
      Parse<DownstreamTlsContext>(R"(
      common_tls_context {
        tls_certificates { certificate_chain { filename: "/etc/gw/cert.pem" }
                           private_key { filename: "/etc/gw/key.pem" } }
        validation_context { trusted_ca { filename: "/etc/gw/ca.pem" } } }
      require_client_certificate { value: true })"));
  auto f = ListenerConfig::FromProto(files);
  REQUIRE(f.ok());
  REQUIRE((*f)->tls_files);
  CHECK((*f)->tls_files->cert_file == "/etc/gw/cert.pem");
  CHECK((*f)->tls_files->ca_file == "/etc/gw/ca.pem");
  CHECK((*f)->tls_files->require_client_certificate);
}

}  // namespace
}  // namespace mesh::dataplane
