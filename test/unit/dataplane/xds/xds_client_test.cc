#include "dataplane/xds/xds_client.h"

#include <catch2/catch.hpp>

#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb.h"

namespace mesh::dataplane {
namespace {

using envoy::service::discovery::v3::DiscoveryRequest;
using envoy::service::discovery::v3::DiscoveryResponse;
namespace hcm = envoy::extensions::filters::network::http_connection_manager::v3;

constexpr char kListener[] = "type.googleapis.com/envoy.config.listener.v3.Listener";
constexpr char kRoute[] = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
constexpr char kCluster[] = "type.googleapis.com/envoy.config.cluster.v3.Cluster";

// Records what the client sends.
struct FakeTransport : AdsTransport {
  bool Send(const DiscoveryRequest& r) override {
    sent.push_back(r);
    return true;
  }
  std::vector<DiscoveryRequest> sent;
};

DiscoveryResponse Listeners(const std::string& version, const std::string& route_name,
                            const std::string& nonce) {
  envoy::config::listener::v3::Listener l;
  l.set_name("0.0.0.0_80");
  l.mutable_address()->mutable_socket_address()->set_address("0.0.0.0");
  l.mutable_address()->mutable_socket_address()->set_port_value(80);
  hcm::HttpConnectionManager m;
  m.mutable_rds()->set_route_config_name(route_name);
  l.add_filter_chains()->add_filters()->mutable_typed_config()->PackFrom(m);
  DiscoveryResponse r;
  r.set_type_url(kListener);
  r.set_version_info(version);
  r.set_nonce(nonce);
  r.add_resources()->PackFrom(l);
  return r;
}

DiscoveryResponse Routes(const std::string& version, const std::string& regex,
                         const std::string& nonce) {
  envoy::config::route::v3::RouteConfiguration rc;
  rc.set_name("http.80");
  auto* vh = rc.add_virtual_hosts();
  vh->set_name("all");
  vh->add_domains("*");
  auto* route = vh->add_routes();
  route->mutable_match()->mutable_safe_regex()->set_regex(regex);
  route->mutable_route()->set_cluster("outbound|80||web");
  DiscoveryResponse r;
  r.set_type_url(kRoute);
  r.set_version_info(version);
  r.set_nonce(nonce);
  r.add_resources()->PackFrom(rc);
  return r;
}

TEST_CASE("The client subscribes, follows route names from listeners, ACKs what it applies") {
  FakeTransport t;
  int published = 0;
  envoy::config::core::v3::Node node;
  node.set_id("gw-1");
  XdsClient client(node, [&](ProxyConfigPtr) {
    ++published;
    return absl::OkStatus();
  });
  client.OnConnect(&t);
  REQUIRE(t.sent.size() == 2);
  CHECK(t.sent[0].type_url() == kCluster);
  CHECK(t.sent[0].node().id() == "gw-1");
  CHECK(t.sent[1].type_url() == kListener);
  CHECK(!t.sent[1].has_node());  // the node goes with the first request only

  client.OnResponse(Listeners("1", "http.80", "n1"));
  REQUIRE(t.sent.size() == 4);
  CHECK(t.sent[2].type_url() == kListener);  // the ACK
  CHECK(t.sent[2].version_info() == "1");
  CHECK(t.sent[2].response_nonce() == "n1");
  CHECK(!t.sent[2].has_error_detail());
  CHECK(t.sent[3].type_url() == kRoute);  // then the route config the listener names
  CHECK(std::vector<std::string>(t.sent[3].resource_names().begin(),
                                 t.sent[3].resource_names().end()) ==
        std::vector<std::string>{"http.80"});

  client.OnResponse(Routes("1", "/.*", "n2"));
  CHECK(client.current()->routes.count("http.80") == 1);
  CHECK(client.current()->versions.at(kRoute) == "1");
  CHECK(published == 2);
}

TEST_CASE(
    "An invalid update is NACKed with a precise error and the last good config keeps serving") {
  FakeTransport t;
  XdsClient client({}, nullptr);
  client.OnConnect(&t);
  client.OnResponse(Listeners("1", "http.80", "n1"));
  client.OnResponse(Routes("1", "/ok", "n2"));
  RouteTablePtr good = client.current()->routes.at("http.80");
  t.sent.clear();

  client.OnResponse(Routes("2", "(", "n3"));
  REQUIRE(t.sent.size() == 1);
  const DiscoveryRequest& nack = t.sent[0];
  CHECK(nack.type_url() == kRoute);
  CHECK(nack.version_info() == "1");  // still on the last good version
  CHECK(nack.response_nonce() == "n3");
  CHECK(nack.error_detail().message() ==
        "route config http.80: virtual_hosts[0].routes[0].match.safe_regex.regex: invalid regex "
        "\"(\": missing ): (");
  CHECK(client.current()->routes.at("http.80") == good);
  CHECK(client.current()->versions.at(kRoute) == "1");
  CHECK(client.stats().rejected == 1);
}

TEST_CASE("A reconnect resubscribes with the versions held, and the config survives the outage") {
  FakeTransport first, second;
  XdsClient client({}, nullptr);
  client.OnConnect(&first);
  client.OnResponse(Listeners("7", "http.80", "n1"));
  client.OnDisconnect();
  CHECK(client.current()->listeners.count("0.0.0.0_80") == 1);  // still serving
  client.OnConnect(&second);
  REQUIRE(second.sent.size() == 3);
  CHECK(second.sent[0].type_url() == kCluster);
  CHECK(second.sent[0].has_node());  // a new stream introduces itself again
  CHECK(second.sent[1].type_url() == kListener);
  CHECK(second.sent[1].version_info() == "7");
  CHECK(second.sent[1].response_nonce().empty());
  CHECK(second.sent[2].type_url() == kRoute);
}

TEST_CASE("Listeners without a port, and unsupported filters, are rejected") {
  FakeTransport t;
  XdsClient client({}, nullptr);
  client.OnConnect(&t);
  DiscoveryResponse r = Listeners("1", "http.80", "n1");
  envoy::config::listener::v3::Listener l;
  r.resources(0).UnpackTo(&l);
  l.mutable_address()->mutable_socket_address()->set_port_value(0);
  r.mutable_resources(0)->PackFrom(l);
  client.OnResponse(r);
  CHECK(t.sent.back().error_detail().message() ==
        "listener 0.0.0.0_80: address.socket_address: an address and a port are required");
  CHECK(client.current()->listeners.empty());

  l.mutable_address()->mutable_socket_address()->set_port_value(80);
  l.mutable_filter_chains(0)->mutable_filters(0)->mutable_typed_config()->set_type_url(
      "type.googleapis.com/envoy.extensions.filters.network.redis_proxy.v3.RedisProxy");
  r.mutable_resources(0)->PackFrom(l);
  r.set_nonce("n2");
  client.OnResponse(r);
  CHECK(t.sent.back().error_detail().message() ==
        "listener 0.0.0.0_80: filter_chains[0].filters[0]: unsupported filter "
        "type.googleapis.com/envoy.extensions.filters.network.redis_proxy.v3.RedisProxy");
  CHECK(client.current()->listeners.empty());
}

TEST_CASE("A config the proxy cannot serve is NACKed with the proxy's reason and not adopted") {
  FakeTransport t;
  XdsClient client({}, [](ProxyConfigPtr) {
    return absl::InvalidArgumentError("listener 0.0.0.0_80: cannot bind");
  });
  client.OnConnect(&t);
  client.OnResponse(Listeners("1", "http.80", "n1"));
  CHECK(t.sent.back().error_detail().message() == "listener 0.0.0.0_80: cannot bind");
  CHECK(t.sent.back().version_info().empty());
  CHECK(client.current()->listeners.empty());
  CHECK(client.stats().rejected == 1);
}

TEST_CASE(
    "Clusters with mesh TLS make the client ask for ROOTCA over SDS, but not the workload key") {
  FakeTransport t;
  XdsClient client({}, nullptr);
  client.OnConnect(&t);
  namespace tls = envoy::extensions::transport_sockets::tls::v3;
  envoy::config::cluster::v3::Cluster c;
  c.set_name("outbound|80||web");
  c.set_type(envoy::config::cluster::v3::Cluster::EDS);
  c.mutable_eds_cluster_config()->mutable_eds_config()->mutable_ads();
  tls::UpstreamTlsContext ctx;
  ctx.mutable_common_tls_context()->add_tls_certificate_sds_secret_configs()->set_name("default");
  ctx.mutable_common_tls_context()
      ->mutable_combined_validation_context()
      ->mutable_validation_context_sds_secret_config()
      ->set_name("ROOTCA");
  c.mutable_transport_socket()->mutable_typed_config()->PackFrom(ctx);
  DiscoveryResponse r;
  r.set_type_url(kCluster);
  r.set_version_info("1");
  r.set_nonce("n1");
  r.add_resources()->PackFrom(c);
  client.OnResponse(r);
  const std::string kSecret =
      "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
  const DiscoveryRequest* sds = nullptr;
  for (const auto& req : t.sent) {
    if (req.type_url() == kSecret) sds = &req;
  }
  REQUIRE(sds);
  CHECK(std::vector<std::string>(sds->resource_names().begin(), sds->resource_names().end()) ==
        std::vector<std::string>{"ROOTCA"});

  tls::Secret root;
  root.set_name("ROOTCA");
  DiscoveryResponse bad;
  bad.set_type_url(kSecret);
  bad.set_version_info("1");
  bad.set_nonce("n2");
  root.mutable_validation_context();  // no CA certificate in it
  bad.add_resources()->PackFrom(root);
  client.OnResponse(bad);
  CHECK(t.sent.back().error_detail().message() ==
        "secret ROOTCA: validation_context.trusted_ca.inline_bytes: a CA certificate is required");
  root.mutable_validation_context()->mutable_trusted_ca()->set_inline_bytes("-----BEGIN CERT");
  DiscoveryResponse good = bad;
  good.set_nonce("n3");
  good.mutable_resources(0)->PackFrom(root);
  client.OnResponse(good);
  CHECK(client.current()->secrets.count("ROOTCA") == 1);
}

}  // namespace
}  // namespace mesh::dataplane
