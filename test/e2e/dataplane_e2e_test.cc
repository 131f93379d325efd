// meshproxy end to end: real meshpilot, meshproxy and mesh-demo-app processes on loopback.
#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <map>
#include <random>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "envoy/config/cluster/v3/cluster.pb.h"
#include "envoy/config/listener/v3/listener.pb.h"
#include "envoy/config/route/v3/route.pb.h"
#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb.h"
#include "envoy/service/discovery/v3/discovery.grpc.pb.h"
#include "test/support/mesh.h"

namespace mesh::testing {
namespace {

using namespace std::chrono_literals;

const std::string kPong = std::string(MESH_SOURCE_DIR) + "/examples/pong-canary/";

// The pong canary of examples/pong-canary: a gateway, pong v1 and v2 behind sidecars, 80/20.
struct PongMesh {
  PongMesh() {
    mesh.ApplyFile(kPong + "pong.yaml");
    gateway = &mesh.Gateway();
    v1 = &mesh.Workload("pong-v1", "default", "app=pong,version=v1", 8080,
                        {"--name", "pong", "--version", "v1"});
    v2 = &mesh.Workload("pong-v2", "default", "app=pong,version=v2", 8080,
                        {"--name", "pong", "--version", "v2"});
    mesh.ApplyFile(kPong + "canary-80-20.yaml");
    REQUIRE(mesh.WaitReady());
    // Sidecars register as endpoints as they connect; wait until both versions are served.
    REQUIRE(Settled("pong v2\n", {{"end-user", "jason"}}));
    REQUIRE(WaitFor([&] { return Get("/").body == "pong v1\n"; }, 10s));
  }
  Reply Get(const std::string& path, const httplib::Headers& h = {}) {
    return HttpGet(gateway->port, path, h);
  }
  bool Settled(const std::string& body, const httplib::Headers& h = {}) {
    return WaitFor([&] { return Get("/", h).body == body; }, 10s);
  }
  // Bodies of `n` requests over one keep-alive connection, counted.
  std::map<std::string, int> Count(int n, const httplib::Headers& h = {}) {
    httplib::Client c("127.0.0.1", gateway->port);
    c.set_keep_alive(true);
    std::map<std::string, int> out;
    for (int i = 0; i < n; ++i) {
      auto res = c.Get("/", h);
      ++out[res ? res->body : "<failed>"];
    }
    return out;
  }
  Mesh mesh;
  Mesh::Proxy* gateway = nullptr;
  Mesh::Proxy* v1 = nullptr;
  Mesh::Proxy* v2 = nullptr;
};

// The pong VirtualService on the gateway with these `http` routes (YAML list items).
std::string PongRoutes(const std::string& http) {
  return "apiVersion: networking.istio.io/v1alpha3\nkind: VirtualService\nmetadata: {name: pong}\n"
         "spec:\n  hosts: [\"*\"]\n  gateways: [pong-gateway]\n  http:\n" +
         http;
}

const std::string kAllToV1 = PongRoutes("  - route: [{destination: {host: pong, subset: v1}}]\n");

std::string Raw(int port, const std::string& request, std::chrono::milliseconds timeout = 3s) {
  return RawTcp("127.0.0.1", port, request, false, timeout);
}

TEST_CASE("Gateway: an 80/20 split holds within 5 points over 1,000 requests") {
  PongMesh m;
  std::map<std::string, int> seen = m.Count(1000);
  INFO(m.mesh.Logs());
  CHECK(seen.size() == 2);
  CHECK(seen["pong v1\n"] + seen["pong v2\n"] == 1000);
  CHECK(std::abs(seen["pong v2\n"] - 200) <= 50);
}

TEST_CASE("Gateway: header routing sends end-user jason to v2 only") {
  PongMesh m;
  std::map<std::string, int> jason = m.Count(100, {{"end-user", "jason"}});
  CHECK(jason == std::map<std::string, int>{{"pong v2\n", 100}});
  std::map<std::string, int> alice = m.Count(200, {{"end-user", "alice"}});
  CHECK(alice["pong v1\n"] > 100);  // not the header route: the 80/20 split
}

TEST_CASE("A VirtualService change is served within one second of the apply") {
  PongMesh m;
  m.mesh.Apply(kAllToV1);
  REQUIRE(WaitFor(
      [&] {
        return m.Count(20) == std::map<std::string, int>{{"pong v1\n", 20}};
      },
      10s));
  auto start = std::chrono::steady_clock::now();
  m.mesh.ApplyFile(kPong + "rollout-complete.yaml");
  REQUIRE(m.Settled("pong v2\n"));
  auto took = std::chrono::steady_clock::now() - start;
  CHECK(took < 1s);
  CHECK(m.Count(50) == std::map<std::string, int>{{"pong v2\n", 50}});
}

TEST_CASE("Redirects, prefix and authority rewrites, and header operations are applied") {
  PongMesh m;
  m.mesh.Apply(PongRoutes(R"(  - match: [{uri: {prefix: /old}}]
    redirect: {uri: /new, authority: example.com}
  - match: [{uri: {prefix: /api/}}]
    rewrite: {uri: /echo/, authority: rewritten.local}
    headers:
      request: {set: {x-added: "yes"}, remove: [x-secret]}
      response: {add: {x-served-by: mesh}}
    route: [{destination: {host: pong, subset: v1}}]
  - route: [{destination: {host: pong, subset: v1}}]
)"));
  REQUIRE(WaitFor([&] { return m.Get("/old/page").status == 301; }, 10s));
  Reply redirect = m.Get("/old/page?q=1");
  CHECK(redirect.Header("Location") == "http://example.com/new?q=1");

  REQUIRE(WaitFor([&] { return m.Get("/api/items?x=1").status == 200; }, 10s));
  Reply echo = m.Get("/api/items?x=1", {{"x-secret", "s"}});
  INFO(echo.body);
  CHECK(absl::StrContains(echo.body, "path: /echo/items?x=1\n"));
  CHECK(absl::StrContains(echo.body, "header: host: rewritten.local\n"));
  CHECK(absl::StrContains(echo.body, "header: x-added: yes\n"));
  CHECK(!absl::StrContains(echo.body, "x-secret"));
  CHECK(echo.Header("x-served-by") == "mesh");
}

TEST_CASE("No route answers 404, and a subset without endpoints answers 503") {
  PongMesh m;
  m.mesh.Apply(PongRoutes(R"(  - match: [{uri: {prefix: /v3}}]
    route: [{destination: {host: pong, subset: v3}}]
  - match: [{uri: {exact: /}}]
    route: [{destination: {host: pong, subset: v1}}]
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: pong}
spec:
  host: pong
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: v3, labels: {version: v3}}
)"));
  REQUIRE(WaitFor([&] { return m.Get("/v3").status == 503; }, 10s));
  Reply none = m.Get("/v3");
  CHECK(none.body == "no healthy upstream\n");
  CHECK(none.Header("x-meshproxy-reason") == "no_healthy_upstream");
  Reply missing = m.Get("/elsewhere");
  CHECK(missing.status == 404);
  CHECK(absl::StrContains(missing.body, "no route"));
}

TEST_CASE("Sidecar outbound: HTTP proxy requests, Host headers and per-port listeners") {
  PongMesh m;
  std::string ip = m.v1->ip;
  // As an HTTP proxy.
  httplib::Client via_proxy("pong.default.svc.cluster.local", 8080);
  via_proxy.set_proxy(ip.c_str(), 15001);
  auto res = via_proxy.Get("/ping");
  REQUIRE(res);
  CHECK(absl::StartsWith(res->body, "pong from pong v"));
  // With a Host header, short and qualified.
  for (const char* host : {"pong:8080", "pong.default:8080", "pong.default.svc.cluster.local"}) {
    Reply r = HttpGet(15001, "/ping", {{"Host", host}}, ip);
    INFO(host);
    CHECK(absl::StartsWith(r.body, "pong from pong v"));
  }
  // Istio's per-port outbound listener on the sidecar's IP.
  Reply per_port = HttpGet(8080, "/version", {{"Host", "pong"}}, ip);
  CHECK((per_port.body == "v1\n" || per_port.body == "v2\n"));
  // And the app itself, calling through its sidecar.
  Reply call = HttpGet(m.v1->port, "/call/pong:8080/ping");
  CHECK(absl::StartsWith(call.body, "pong from pong v"));
  // A Host no service has.
  CHECK(HttpGet(15001, "/", {{"Host", "nowhere.example:80"}}, ip).status == 404);
}

TEST_CASE("Voting app: cookie routing picks 2.0, and source labels pick each version's analytics") {
  Mesh mesh;
  mesh.ApplyVotingApp(3);
  Mesh::Proxy& gw = mesh.Gateway();
  auto workload = [&](const std::string& app, const std::string& version) {
    std::string mode = app;
    mesh.Workload(app + "-" + version, "voting", "app=" + app + ",version=" + version, 8080,
                  {"--mode", mode, "--name", app, "--version", version});
  };
  workload("voting-app", "1.0");
  workload("voting-app", "2.0");
  workload("voting-analytics", "1.1");
  workload("voting-analytics", "2.0");
  REQUIRE(mesh.WaitReady());
  auto page = [&](const httplib::Headers& h) { return HttpGet(gw.port, "/", h).body; };
  const std::string v1_page = "<div id=\"version\">voting-app 1.0</div>";
  const std::string v2_page = "<div id=\"version\">voting-app 2.0</div>";
  REQUIRE(WaitFor(
      [&] {
        return absl::StrContains(page({}), "voting-analytics 1.1") &&
               absl::StrContains(page({{"Cookie", "featureflag=on"}}), "voting-analytics 2.0");
      },
      10s));
  INFO(mesh.Logs().substr(0, 4000));
  for (int i = 0; i < 20; ++i) {
    std::string plain = page({});
    CHECK(absl::StrContains(plain, v1_page));
    CHECK(absl::StrContains(plain, "<div id=\"analytics\">voting-analytics 1.1</div>"));
    // The tutorial's cookie regex: featureflag=on anywhere among the cookies.
    std::string flagged = page({{"Cookie", "session=abc; featureflag=on"}});
    CHECK(absl::StrContains(flagged, v2_page));
    CHECK(absl::StrContains(flagged, "<div id=\"analytics\">voting-analytics 2.0</div>"));
    CHECK(absl::StrContains(page({{"Cookie", "featureflag=off"}}), v1_page));
  }
}

TEST_CASE("Hot apply: 100 config changes during a load run fail or reset no request") {
  PongMesh m;
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, failed{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 4; ++t) {
    clients.emplace_back([&, t] {
      httplib::Client c("127.0.0.1", m.gateway->port);
      c.set_keep_alive(t % 2 == 0);  // half the clients reuse connections, half do not
      c.set_read_timeout(5, 0);
      while (!stop) {
        auto res = c.Get("/");
        if (res && res->status == 200 && absl::StartsWith(res->body, "pong v")) {
          ++ok;
        } else {
          ++failed;
        }
      }
    });
  }
  for (int i = 0; i < 100; ++i) {
    int w = i % 2 ? 90 : 10;
    m.mesh.Apply(PongRoutes(
        absl::StrCat("  - match: [{headers: {end-user: {exact: user-", i, "}}}]\n",
                     "    route: [{destination: {host: pong, subset: v2}}]\n",
                     "  - route:\n    - {destination: {host: pong, subset: v1}, weight: ", w, "}\n",
                     "    - {destination: {host: pong, subset: v2}, weight: ", 100 - w, "}\n")));
    std::this_thread::sleep_for(15ms);
  }
  std::this_thread::sleep_for(300ms);
  stop = true;
  for (auto& t : clients) t.join();
  INFO("ok " << ok << " failed " << failed);
  CHECK(failed == 0);
  CHECK(ok > 400);
  // The last change is the one served (once pushed: the load above may have slowed it).
  CHECK(WaitFor([&] { return m.Get("/", {{"end-user", "user-99"}}).body == "pong v2\n"; }, 5s));
}

TEST_CASE("meshpilot killed: proxies serve on their last config, then reconnect and resync") {
  PongMesh m;
  m.mesh.pilot().Kill();
  std::map<std::string, int> seen = m.Count(300);
  CHECK(seen["pong v1\n"] + seen["pong v2\n"] == 300);
  CHECK(m.Count(20, {{"end-user", "jason"}}) == std::map<std::string, int>{{"pong v2\n", 20}});

  REQUIRE(m.mesh.pilot().Restart());
  m.mesh.ApplyFile(kPong + "rollout-complete.yaml");
  // The proxies' backoff is capped at 5 s; then the new config is served.
  INFO(m.mesh.Logs());
  REQUIRE(WaitFor(
      [&] {
        return m.Count(20) == std::map<std::string, int>{{"pong v2\n", 20}};
      },
      15s));
  CHECK(absl::StrContains(m.gateway->Admin("/stats/prometheus"), "meshproxy_xds_connected 1"));
}

TEST_CASE("Admin: ready, config_dump, clusters and Prometheus stats") {
  PongMesh m;
  m.Count(50);
  std::string dump = m.gateway->Admin("/config_dump");
  CHECK(absl::StrContains(dump, "\"type.googleapis.com/envoy.config.listener.v3.Listener\":\""));
  CHECK(absl::StrContains(dump, "\"name\":\"0.0.0.0_80\""));
  CHECK(absl::StrContains(dump, "\"state\":\"active\""));
  CHECK(absl::StrContains(dump, "\"name\":\"http.80\""));
  std::string clusters = m.gateway->Admin("/clusters");
  CHECK(absl::StrContains(
      clusters, absl::StrCat("outbound|8080|v1|pong.default.svc.cluster.local::", m.v1->ip)));
  CHECK(absl::StrContains(clusters, "::health_flags::healthy"));
  std::string stats = m.gateway->Admin("/stats/prometheus");
  INFO(stats);
  CHECK(absl::StrContains(stats, "meshproxy_requests_total{listener=\"0.0.0.0_80\""));
  CHECK(absl::StrContains(stats,
                          "cluster=\"outbound|8080|v1|pong.default.svc.cluster.local\","
                          "response_class=\"2xx\"}"));
  CHECK(absl::StrContains(stats, "meshproxy_upstream_request_duration_milliseconds_bucket{"));
  CHECK(absl::StrContains(stats, "meshproxy_xds_updates_total{result=\"accepted\"}"));
  CHECK(absl::StrContains(stats, "meshproxy_downstream_connections_active"));
}

TEST_CASE("Malformed HTTP is answered 400 or 431 and closed, and never crashes the proxy") {
  PongMesh m;
  int port = m.gateway->port;
  auto status_line = [&](const std::string& req) {
    std::string out = Raw(port, req);
    return out.substr(0, out.find("\r\n"));
  };
  CHECK(status_line("GARBAGE\r\n\r\n") == "HTTP/1.1 400 Bad Request");
  CHECK(status_line("GET / HTTP/9.9\r\nHost: x\r\n\r\n") == "HTTP/1.1 400 Bad Request");
  CHECK(status_line("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: "
                    "chunked\r\n\r\n0\r\n\r\n") == "HTTP/1.1 400 Bad Request");
  CHECK(
      status_line("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n") ==
      "HTTP/1.1 400 Bad Request");
  CHECK(status_line("GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(70000, 'a') +
                    "\r\n\r\n") == "HTTP/1.1 431 Request Header Fields Too Large");
  CHECK(status_line("GET / HTTP/1.1\r\n\r\n") == "HTTP/1.1 400 Bad Request");
  CHECK(status_line("GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n") ==
        "HTTP/1.1 400 Bad Request");
  // Random damage to a valid request, bounded: the proxy answers or closes, and lives.
  std::mt19937 rng(42);
  const std::string valid =
      "POST /echo HTTP/1.1\r\nHost: pong\r\nTransfer-Encoding: "
      "chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
  for (int i = 0; i < 300; ++i) {
    std::string req = valid;
    for (int k = 0; k < 3; ++k) req[rng() % req.size()] = static_cast<char>(rng() % 256);
    Raw(port, req, 200ms);
  }
  CHECK(m.gateway->process->running());
  CHECK(m.Get("/").status == 200);
}

TEST_CASE("Slowloris: a client that never finishes its header is disconnected") {
  Mesh mesh;
  mesh.ApplyFile(kPong + "pong.yaml");
  Mesh::Proxy& gw = mesh.Gateway("ingressgateway", {"--header-timeout", "300ms"});
  mesh.ApplyFile(kPong + "canary-80-20.yaml");
  REQUIRE(mesh.WaitReady());
  auto start = std::chrono::steady_clock::now();
  std::string out = Raw(gw.port, "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: aaaa", 5s);
  auto took = std::chrono::steady_clock::now() - start;
  CHECK(out.empty());
  CHECK(took < 3s);  // closed at the header timeout, not at the test's own limit
}

TEST_CASE("Large bodies stream both ways: a chunked 5 MiB upload and an 8 MiB download") {
  PongMesh m;
  m.mesh.Apply(kAllToV1);
  REQUIRE(WaitFor(
      [&] {
        return m.Count(10) == std::map<std::string, int>{{"pong v1\n", 10}};
      },
      10s));
  httplib::Client c("127.0.0.1", m.gateway->port);
  c.set_read_timeout(20, 0);
  const size_t up = 5 << 20;
  std::string payload(up, 'p');
  size_t offset = 0;
  auto res = c.Post(
      "/echo",
      [&](size_t, httplib::DataSink& sink) {
        size_t n = std::min<size_t>(64 * 1024, up - offset);
        sink.write(payload.data() + offset, n);
        offset += n;
        if (offset == up) sink.done();
        return true;
      },
      "application/octet-stream");
  REQUIRE(res);
  CHECK(absl::StrContains(res->body, absl::StrCat("body-bytes: ", up, "\n")));
  auto big = c.Get("/bytes/8388608");
  REQUIRE(big);
  CHECK(big->body.size() == 8388608);
}

TEST_CASE("A removed listener stops accepting, and comes back when its Gateway does") {
  PongMesh m;
  httplib::Client c = m.mesh.pilot().Client();
  REQUIRE(c.Delete("/apis/networking.istio.io/v1alpha3/namespaces/default/gateways/pong-gateway"));
  REQUIRE(WaitFor([&] { return m.Get("/").status == 0; }, 10s));
  m.mesh.ApplyFile(kPong + "pong.yaml");
  CHECK(WaitFor([&] { return m.Get("/").status == 200; }, 10s));
}

// A control plane that serves one good config and then one the proxy must refuse, and records
// what the proxy says about each.
class FakeAds final : public envoy::service::discovery::v3::AggregatedDiscoveryService::Service {
 public:
  FakeAds(int app_port, int listen_port) : app_port_(app_port), listen_port_(listen_port) {}

  grpc::Status StreamAggregatedResources(
      grpc::ServerContext* ctx,
      grpc::ServerReaderWriter<envoy::service::discovery::v3::DiscoveryResponse,
                               envoy::service::discovery::v3::DiscoveryRequest>* stream) override {
    envoy::service::discovery::v3::DiscoveryRequest req;
    while (stream->Read(&req)) {
      const std::string& type = req.type_url();
      bool first = req.response_nonce().empty();
      if (type == kCluster && first) stream->Write(Response(kCluster, "1", Cluster()));
      if (type == kListener && first) stream->Write(Response(kListener, "1", Listener("^/.*$")));
      if (type == kListener && req.version_info() == "1" && !sent_bad_) {
        sent_bad_ = true;  // ACK of version 1: now an invalid regex
        stream->Write(Response(kListener, "2", Listener("(unclosed")));
      }
      if (type == kListener && req.has_error_detail()) {
        std::lock_guard lock(mu_);
        nack_ = req.error_detail().message();
        nack_version_ = req.version_info();
      }
    }
    return grpc::Status::OK;
  }
  std::pair<std::string, std::string> Nack() {
    std::lock_guard lock(mu_);
    return {nack_, nack_version_};
  }

 private:
  static constexpr char kCluster[] = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
  static constexpr char kListener[] = "type.googleapis.com/envoy.config.listener.v3.Listener";

  template <class M>
  envoy::service::discovery::v3::DiscoveryResponse Response(const std::string& type,
                                                            const std::string& version,
                                                            const M& resource) {
    envoy::service::discovery::v3::DiscoveryResponse r;
    r.set_type_url(type);
    r.set_version_info(version);
    r.set_nonce(absl::StrCat("n", ++nonce_));
    r.add_resources()->PackFrom(resource);
    return r;
  }
  envoy::config::cluster::v3::Cluster Cluster() {
    envoy::config::cluster::v3::Cluster c;
    c.set_name("app");
    c.set_type(envoy::config::cluster::v3::Cluster::STATIC);
    auto* addr = c.mutable_load_assignment()
                     ->add_endpoints()
                     ->add_lb_endpoints()
                     ->mutable_endpoint()
                     ->mutable_address()
                     ->mutable_socket_address();
    c.mutable_load_assignment()->set_cluster_name("app");
    addr->set_address("127.0.0.1");
    addr->set_port_value(app_port_);
    return c;
  }
  envoy::config::listener::v3::Listener Listener(const std::string& regex) {
    namespace hcm = envoy::extensions::filters::network::http_connection_manager::v3;
    hcm::HttpConnectionManager m;
    m.set_stat_prefix("fake");
    auto* vh = m.mutable_route_config()->add_virtual_hosts();
    m.mutable_route_config()->set_name("fake");
    vh->set_name("all");
    vh->add_domains("*");
    auto* route = vh->add_routes();
    route->mutable_match()->mutable_safe_regex()->set_regex(regex);
    route->mutable_route()->set_cluster("app");
    envoy::config::listener::v3::Listener l;
    l.set_name("0.0.0.0_80");
    l.mutable_address()->mutable_socket_address()->set_address("0.0.0.0");
    l.mutable_address()->mutable_socket_address()->set_port_value(80);
    auto* f = l.add_filter_chains()->add_filters();
    f->set_name("envoy.filters.network.http_connection_manager");
    f->mutable_typed_config()->PackFrom(m);
    return l;
  }

  const int app_port_, listen_port_;
  int nonce_ = 0;
  bool sent_bad_ = false;
  std::mutex mu_;
  std::string nack_, nack_version_;
};

TEST_CASE("A NACKed update leaves the proxy serving its last good config") {
  TempDir dir;
  int app_port = FreePort(), gateway_port = FreePort(), admin_port = FreePort();
  Process app(
      {MESH_DEMO_APP_BIN, "--listen", absl::StrCat("127.0.0.1:", app_port), "--version", "good"},
      dir / "app.log");
  FakeAds ads(app_port, gateway_port);
  int xds_port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &xds_port);
  builder.RegisterService(&ads);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  REQUIRE(server);
  Process proxy({MESHPROXY_BIN, "--xds", absl::StrCat("127.0.0.1:", xds_port), "--role", "gateway",
                 "--id", "gw", "--port-map", absl::StrCat("80=", gateway_port), "--admin",
                 absl::StrCat("127.0.0.1:", admin_port)},
                dir / "proxy.log");
  REQUIRE(WaitFor([&] { return !ads.Nack().first.empty(); }, 10s));
  auto [nack, version] = ads.Nack();
  CHECK(version == "1");  // the NACK names the version still applied
  CHECK(absl::StrContains(nack, "listener 0.0.0.0_80: filter_chains[0].filters[0].route_config"));
  CHECK(absl::StrContains(nack, "safe_regex.regex"));
  INFO(proxy.Log());
  // The listener of the good version opens (it may still be binding when the NACK is seen) and
  // serves on through the refused update.
  CHECK(WaitFor([&] { return HttpGet(gateway_port, "/version").body == "good\n"; }, 10s));
  for (int i = 0; i < 5; ++i) CHECK(HttpGet(gateway_port, "/version").body == "good\n");
  CHECK(absl::StrContains(HttpGet(admin_port, "/stats/prometheus").body,
                          "meshproxy_xds_updates_total{result=\"rejected\"} 1"));
  server->Shutdown(std::chrono::system_clock::now() + 1s);
}

}  // namespace
}  // namespace mesh::testing
