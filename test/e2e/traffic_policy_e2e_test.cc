// Traffic policies end to end: VirtualService and DestinationRule settings compiled by meshpilot
// and applied by a meshproxy gateway to real mesh-demo-app backends.
#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <map>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "test/support/mesh.h"

namespace mesh::testing {
namespace {

using namespace std::chrono_literals;

using Backends = std::map<std::string, std::vector<std::string>>;

// A gateway in front of service "web", whose endpoints are mesh-demo-app instances named by
// version ("web a\n" answers from version a), registered as WorkloadEntries.
struct PolicyMesh {
  // `backends`: version -> extra app flags.
  explicit PolicyMesh(const Backends& backends, std::vector<std::string> gateway_flags = {}) {
    std::string yaml =
        "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n"
        "  ports: [{name: http, port: 8080}]\n---\n"
        "apiVersion: networking.istio.io/v1alpha3\nkind: Gateway\nmetadata: {name: gw}\nspec:\n"
        "  selector: {istio: ingressgateway}\n"
        "  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]\n";
    for (const auto& [version, flags] : backends) {
      std::vector<std::string> app_flags = {"--name", "web", "--version", version};
      app_flags.insert(app_flags.end(), flags.begin(), flags.end());
      int port = mesh.App("web-" + version, app_flags);
      ports[version] = port;
      absl::StrAppend(&yaml, "---\napiVersion: networking.istio.io/v1alpha3\nkind: WorkloadEntry\n",
                      "metadata: {name: web-", version,
                      "}\nspec: {address: 127.0.0.1, labels: ", "{app: web, version: '", version,
                      "'}, ports: {http: ", port, "}}\n");
    }
    mesh.Apply(yaml);
    gateway = &mesh.Gateway("ingressgateway", gateway_flags);
  }
  // Applies `yaml` and waits until `check` holds.
  void Apply(const std::string& yaml, const std::function<bool()>& check) {
    mesh.Apply(yaml);
    REQUIRE(mesh.WaitReady());
    REQUIRE(WaitFor(check, 10s));
  }
  Reply Get(const std::string& path, const httplib::Headers& h = {}) {
    return HttpGet(gateway->port, path, h);
  }
  int64_t Seen(const std::string& version) {
    int64_t n = -1;
    return absl::SimpleAtoi(HttpGet(ports[version], "/seen").body.substr(0, 20), &n) ? n : -1;
  }
  Mesh mesh;
  Mesh::Proxy* gateway = nullptr;
  std::map<std::string, int> ports;
};

// A DestinationRule for web with `traffic_policy` (YAML indented under trafficPolicy).
std::string WebRule(const std::string& traffic_policy) {
  return "apiVersion: networking.istio.io/v1alpha3\nkind: DestinationRule\nmetadata: {name: web}\n"
         "spec:\n  host: web\n  trafficPolicy:\n" +
         traffic_policy;
}

std::string RouteToWeb(const std::string& extra) {
  return absl::StrCat(
      "apiVersion: networking.istio.io/v1alpha3\nkind: VirtualService\nmetadata: {name: web}\n"
      "spec:\n  hosts: ['*']\n  gateways: [gw]\n  http:\n",
      extra);
}

TEST_CASE("Fault injection: an abort and a delay chosen by header, and an abort percentage") {
  PolicyMesh m(Backends{{"a", {}}});
  m.Apply(RouteToWeb(R"(  - match: [{headers: {x-fault: {exact: abort}}}]
    fault: {abort: {httpStatus: 418, percentage: {value: 100}}}
    route: [{destination: {host: web}}]
  - match: [{headers: {x-fault: {exact: delay}}}]
    fault: {delay: {fixedDelay: 300ms, percentage: {value: 100}}}
    route: [{destination: {host: web}}]
  - match: [{headers: {x-fault: {exact: half}}}]
    fault: {abort: {httpStatus: 503, percent: 50}}
    route: [{destination: {host: web}}]
  - route: [{destination: {host: web}}]
)"),
          [&] {
            return m.Get("/", {{"x-fault", "abort"}}).status == 418;
          });
  Reply aborted = m.Get("/", {{"x-fault", "abort"}});
  CHECK(aborted.body == "fault filter abort\n");

  auto start = std::chrono::steady_clock::now();
  Reply delayed = m.Get("/", {{"x-fault", "delay"}});
  auto took = std::chrono::steady_clock::now() - start;
  CHECK(delayed.body == "web a\n");
  CHECK(took >= 300ms);

  start = std::chrono::steady_clock::now();
  CHECK(m.Get("/").body == "web a\n");
  CHECK(std::chrono::steady_clock::now() - start < 250ms);

  int aborts = 0;
  for (int i = 0; i < 300; ++i) aborts += m.Get("/", {{"x-fault", "half"}}).status == 503;
  CHECK(aborts > 100);  // 150 expected; the bounds are six standard deviations wide
  CHECK(aborts < 200);
}

TEST_CASE("Retries hide an always-failing endpoint: 0 failures over 500 requests") {
  PolicyMesh m(Backends{{"good", {}}, {"bad", {"--fail-status", "503"}}});
  m.Apply(RouteToWeb(R"(  - route: [{destination: {host: web}}]
    retries: {attempts: 3, perTryTimeout: 2s, retryOn: 5xx}
)"),
          [&] { return m.Seen("bad") > 0 || m.Get("/").status == 200; });
  int failures = 0;
  std::string first_failure;
  for (int i = 0; i < 500; ++i) {
    Reply r = m.Get("/");
    if (r.body == "web good\n") continue;
    if (!failures++) first_failure = absl::StrCat(r.status, " ", r.body);
  }
  INFO(first_failure);
  CHECK(failures == 0);
  CHECK(m.Seen("bad") > 100);  // the bad endpoint was tried, and its answers retried elsewhere
}

TEST_CASE("Outlier detection ejects a failing endpoint, then readmits it after baseEjectionTime") {
  PolicyMesh m(Backends{{"good", {}}, {"bad", {"--fail-status", "500"}}});
  m.mesh.Apply(WebRule(
      R"(    outlierDetection: {consecutive5xxErrors: 3, interval: 1s, baseEjectionTime: 2s, maxEjectionPercent: 50}
)"));
  m.Apply(RouteToWeb("  - route: [{destination: {host: web}}]\n"),
          [&] { return m.Get("/").status != 0; });
  const std::string bad_host = absl::StrCat("127.0.0.1:", m.ports["bad"]);
  // Round robin reaches the bad endpoint every other request: three 500s eject it.
  REQUIRE(WaitFor(
      [&] {
        m.Get("/");
        return absl::StrContains(m.gateway->Admin("/clusters"),
                                 bad_host + "::health_flags::/failed_outlier_check");
      },
      10s));
  auto ejected_at = std::chrono::steady_clock::now();
  int failures = 0;
  for (int i = 0; i < 40; ++i) failures += m.Get("/").status != 200;
  CHECK(failures == 0);
  CHECK(absl::StrContains(m.gateway->Admin("/clusters"), bad_host + "::ejections::1"));
  std::string stats = m.gateway->Admin("/stats/prometheus");
  CHECK(absl::StrContains(stats,
                          "meshproxy_outlier_ejections_total{cluster=\"outbound|8080||web."
                          "default.svc.cluster.local\"} 1\n"));
  CHECK(absl::StrContains(stats,
                          "meshproxy_outlier_hosts_ejected{cluster=\"outbound|8080||web."
                          "default.svc.cluster.local\"} 1\n"));
  REQUIRE(WaitFor(
      [&] {
        return absl::StrContains(m.gateway->Admin("/clusters"),
                                 bad_host + "::health_flags::healthy");
      },
      10s));
  auto readmitted_after = std::chrono::steady_clock::now() - ejected_at;
  CHECK(readmitted_after >= 1500ms);  // ejected for baseEjectionTime (2 s), not less
  int64_t before = m.Seen("bad");
  for (int i = 0; i < 4; ++i) m.Get("/");
  CHECK(m.Seen("bad") > before);  // it gets traffic again
}

TEST_CASE("A circuit breaker trips at its limit with a fast 503 that says why") {
  PolicyMesh m(Backends{{"slow", {"--delay", "400ms"}}}, {"--concurrency", "1"});
  m.mesh.Apply(WebRule(R"(    connectionPool:
      tcp: {maxConnections: 1}
      http: {http1MaxPendingRequests: 1}
)"));
  m.Apply(RouteToWeb("  - route: [{destination: {host: web}}]\n"),
          [&] { return m.Get("/").status == 200; });
  std::atomic<int> ok{0}, overflow{0}, other{0};
  std::atomic<int64_t> slowest_overflow_ms{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < 5; ++i) {
    clients.emplace_back([&] {
      auto start = std::chrono::steady_clock::now();
      Reply r = m.Get("/");
      auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::steady_clock::now() - start)
                    .count();
      if (r.status == 200) {
        ++ok;
      } else if (r.status == 503 && r.Header("x-envoy-overloaded") == "true") {
        ++overflow;
        int64_t prev = slowest_overflow_ms;
        while (ms > prev && !slowest_overflow_ms.compare_exchange_weak(prev, ms)) {
        }
      } else {
        ++other;
      }
    });
  }
  for (auto& t : clients) t.join();
  INFO("ok " << ok << " overflow " << overflow << " other " << other);
  CHECK(ok >= 2);        // one on the connection, one pending
  CHECK(overflow >= 1);  // the rest refused
  CHECK(other == 0);
  CHECK(slowest_overflow_ms < 200);  // refused at once, not after the backend's 400 ms
  CHECK(absl::StrContains(m.gateway->Admin("/stats/prometheus"),
                          "meshproxy_upstream_overflows_total{cluster=\"outbound|8080||web."
                          "default.svc.cluster.local\"}"));
}

TEST_CASE("Consistent hash keeps a header value on one endpoint across 200 requests") {
  PolicyMesh m(Backends{{"a", {}}, {"b", {}}, {"c", {}}});
  m.mesh.Apply(WebRule(R"(    loadBalancer: {consistentHash: {httpHeaderName: x-user}}
)"));
  m.Apply(RouteToWeb("  - route: [{destination: {host: web}}]\n"), [&] {
    return absl::StrContains(m.gateway->Admin("/config_dump"), "RING_HASH") &&
           m.Get("/").status == 200;
  });
  std::map<std::string, int> alice;
  for (int i = 0; i < 200; ++i) ++alice[m.Get("/", {{"x-user", "alice"}}).body];
  CHECK(alice.size() == 1);
  std::map<std::string, int> users;
  for (int i = 0; i < 30; ++i) ++users[m.Get("/", {{"x-user", absl::StrCat("user-", i)}}).body];
  CHECK(users.size() >= 2);  // different keys spread over the endpoints

  // httpCookie with a TTL: the first answer sets the cookie, which then keeps the client put.
  m.Apply(R"(
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: web}
spec:
  host: web
  trafficPolicy:
    loadBalancer: {consistentHash: {httpCookie: {name: sticky, ttl: 60s}}}
)",
          [&] { return !m.Get("/").Header("Set-Cookie").empty(); });
  std::string cookie = m.Get("/").Header("Set-Cookie");
  CHECK(absl::StartsWith(cookie, "sticky="));
  std::string value = cookie.substr(0, cookie.find(';'));
  std::map<std::string, int> sticky;
  for (int i = 0; i < 50; ++i) ++sticky[m.Get("/", {{"Cookie", value}}).body];
  CHECK(sticky.size() == 1);
}

TEST_CASE("Least request prefers the idle endpoint") {
  PolicyMesh m(Backends{{"fast", {}}, {"slow", {"--delay", "200ms"}}});
  m.mesh.Apply(WebRule(R"(    loadBalancer: {simple: LEAST_REQUEST}
)"));
  m.Apply(RouteToWeb("  - route: [{destination: {host: web}}]\n"), [&] {
    return absl::StrContains(m.gateway->Admin("/config_dump"), "LEAST_REQUEST") &&
           m.Get("/").status == 200;
  });
  int64_t fast0 = m.Seen("fast"), slow0 = m.Seen("slow");
  std::atomic<bool> stop{false};
  std::vector<std::thread> clients;
  for (int i = 0; i < 4; ++i) {
    clients.emplace_back([&] {
      httplib::Client c("127.0.0.1", m.gateway->port);
      c.set_keep_alive(true);
      while (!stop) c.Get("/");
    });
  }
  std::this_thread::sleep_for(1500ms);
  stop = true;
  for (auto& t : clients) t.join();
  int64_t fast = m.Seen("fast") - fast0, slow = m.Seen("slow") - slow0;
  INFO("fast " << fast << " slow " << slow);
  // Round robin would split requests evenly; least request sends the slow one far fewer.
  CHECK(fast > 5 * slow);
}

TEST_CASE("Mirroring reaches the mirror without changing the answer") {
  PolicyMesh m(Backends{{"a", {}}});
  int shadow = m.mesh.App("shadow", {"--version", "mirror"});
  m.mesh.Apply(absl::StrCat(
      "apiVersion: v1\nkind: Service\nmetadata: {name: shadow}\nspec:\n  selector: {app: shadow}\n"
      "  ports: [{name: http, port: 8080}]\n---\n"
      "apiVersion: networking.istio.io/v1alpha3\nkind: WorkloadEntry\nmetadata: {name: shadow}\n"
      "spec: {address: 127.0.0.1, labels: {app: shadow}, ports: {http: ",
      shadow, "}}\n"));
  m.Apply(RouteToWeb(R"(  - route: [{destination: {host: web}}]
    mirror: {host: shadow}
    mirrorPercentage: {value: 100}
)"),
          [&] { return HttpGet(shadow, "/seen").body != "0\n" || (m.Get("/"), false); });
  int64_t before = 0;
  REQUIRE(absl::SimpleAtoi(HttpGet(shadow, "/seen").body.substr(0, 10), &before));
  for (int i = 0; i < 50; ++i) CHECK(m.Get("/").body == "web a\n");
  CHECK(WaitFor([&] { return HttpGet(shadow, "/seen").body == absl::StrCat(before + 50, "\n"); },
                5s));
}

TEST_CASE("A route timeout answers 504 in time, and a fast answer is untouched") {
  PolicyMesh m(Backends{{"a", {}}});
  m.Apply(RouteToWeb(R"(  - route: [{destination: {host: web}}]
    timeout: 200ms
)"),
          [&] { return m.Get("/?delay_ms=1000").status == 504; });
  auto start = std::chrono::steady_clock::now();
  Reply slow = m.Get("/?delay_ms=1000");
  auto took = std::chrono::steady_clock::now() - start;
  CHECK(slow.status == 504);
  CHECK(slow.body == "upstream request timeout\n");
  CHECK(took < 700ms);
  CHECK(m.Get("/?delay_ms=10").body == "web a\n");
}

TEST_CASE("CORS: a preflight from an allowed origin is answered, others pass untouched") {
  PolicyMesh m(Backends{{"a", {}}});
  m.Apply(RouteToWeb(R"(  - route: [{destination: {host: web}}]
    corsPolicy:
      allowOrigins: [{exact: "https://app.example"}]
      allowMethods: [GET, POST]
      allowHeaders: [x-token]
      maxAge: 24h
      allowCredentials: true
)"),
          [&] {
            return m.Get("/", {{"Origin", "https://app.example"}})
                       .Header("access-control-allow-origin") == "https://app.example";
          });
  httplib::Client c("127.0.0.1", m.gateway->port);
  auto pre = c.Options(
      "/", {{"Origin", "https://app.example"}, {"Access-Control-Request-Method", "POST"}});
  REQUIRE(pre);
  CHECK(pre->status == 200);
  CHECK(pre->get_header_value("access-control-allow-methods") == "GET,POST");
  CHECK(pre->get_header_value("access-control-allow-headers") == "x-token");
  CHECK(pre->get_header_value("access-control-max-age") == "86400");
  CHECK(pre->get_header_value("access-control-allow-credentials") == "true");
  Reply other = m.Get("/", {{"Origin", "https://evil.example"}});
  CHECK(other.body == "web a\n");
  CHECK(other.Header("access-control-allow-origin").empty());
}

TEST_CASE("TCP routes by sourceLabels: voting-app 1.0 reaches Redis, and 2.0 reaches MariaDB") {
  Mesh mesh;
  mesh.ApplyVotingApp(3);
  Mesh::Proxy& gw = mesh.Gateway();
  int redis = mesh.Redis();
  int mariadb = mesh.MariaDb();
  mesh.Sidecar("voting-storage-1-0", "voting", "app=voting-storage,version=1.0", 6379, redis);
  mesh.Sidecar("voting-storage-2-0", "voting", "app=voting-storage,version=2.0", 3306, mariadb);
  auto workload = [&](const std::string& app, const std::string& version,
                      const std::string& storage) {
    mesh.Workload(app + "-" + version, "voting", "app=" + app + ",version=" + version, 8080,
                  {"--mode", app, "--name", app, "--version", version, "--storage", storage});
  };
  workload("voting-app", "1.0", "redis");
  workload("voting-app", "2.0", "mysql");
  workload("voting-analytics", "1.1", "redis");
  workload("voting-analytics", "2.0", "mysql");
  REQUIRE(mesh.WaitReady());
  auto vote = [&](const std::string& choice, const httplib::Headers& h) {
    httplib::Client c("127.0.0.1", gw.port);
    auto res = c.Post("/", h, "vote=" + choice, "application/x-www-form-urlencoded");
    return res ? res->status : 0;
  };
  const httplib::Headers flag = {{"Cookie", "featureflag=on"}};
  INFO(mesh.Logs().substr(0, 6000));
  // Ready when both versions' pages, which read their storage, are served (sidecars become
  // endpoints once they report healthy); only then vote, so each vote counts once.
  REQUIRE(WaitFor(
      [&] {
        return HttpGet(gw.port, "/").status == 200 && HttpGet(gw.port, "/", flag).status == 200;
      },
      15s));
  CHECK(vote("Cats", {}) == 200);
  for (int i = 0; i < 3; ++i) CHECK(vote("Dogs", {}) == 200);
  for (int i = 0; i < 2; ++i) CHECK(vote("Cats", flag) == 200);
  CHECK(vote("Dogs", flag) == 200);

  // Each version's votes are in its own backend, asked directly.
  CommandResult in_redis = RunCommand({"redis-cli", "-h", "127.0.0.1", "-p", std::to_string(redis),
                                       "mget", "votes:Cats", "votes:Dogs"});
  CHECK(in_redis.out == "1\n3\n");
  CommandResult in_mariadb = RunCommand(
      {"mariadb", "--no-defaults", "-h", "127.0.0.1", "-P", std::to_string(mariadb), "-u", "root",
       "-N", "-e", "select choice, count from azurevote.votes order by choice"});
  CHECK(in_mariadb.out == "Cats\t2\nDogs\t1\n");
  // And each version's page shows its own backend's counts.
  CHECK(absl::StrContains(HttpGet(gw.port, "/").body, "Cats: 1/4 (25%) | Dogs: 3/4 (75%)"));
  CHECK(absl::StrContains(HttpGet(gw.port, "/", flag).body, "Cats: 2/3 (67%) | Dogs: 1/3 (33%)"));
}

std::string TcpRoundTrip(const std::string& ip, int port, const std::string& data) {
  return RawTcp(ip, port, data, true);
}

TEST_CASE(
    "TCP: bytes both ways and the half-close pass a gateway TCP port and a sidecar, by weight") {
  Mesh mesh;
  int a = mesh.App("echo-a", {"--mode", "tcp-echo", "--name", "echo", "--version", "a"});
  int b = mesh.App("echo-b", {"--mode", "tcp-echo", "--name", "echo", "--version", "b"});
  int gateway_port = FreePort();
  mesh.Apply(absl::StrCat(R"(
apiVersion: v1
kind: Service
metadata: {name: echo}
spec:
  selector: {app: echo}
  ports: [{name: tcp-echo, port: 9000}]
---
apiVersion: networking.istio.io/v1alpha3
kind: WorkloadEntry
metadata: {name: echo-a}
spec: {address: 127.0.0.1, labels: {app: echo, version: a}, ports: {tcp-echo: )",
                          a, R"(}}
---
apiVersion: networking.istio.io/v1alpha3
kind: WorkloadEntry
metadata: {name: echo-b}
spec: {address: 127.0.0.1, labels: {app: echo, version: b}, ports: {tcp-echo: )",
                          b, R"(}}
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: echo}
spec:
  host: echo
  subsets: [{name: a, labels: {version: a}}, {name: b, labels: {version: b}}]
---
apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata: {name: tcp-gw}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 31400, name: tcp, protocol: TCP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: echo}
spec:
  hosts: [echo]
  gateways: [tcp-gw, mesh]
  tcp:
  - route:
    - {destination: {host: echo, subset: a}, weight: 50}
    - {destination: {host: echo, subset: b}, weight: 50}
)"));
  Mesh::Proxy& gw =
      mesh.Gateway("ingressgateway", {"--port-map", absl::StrCat("31400=", gateway_port)});
  Mesh::Proxy& client = mesh.Sidecar("client", "default", "app=client", 8080, FreePort());
  REQUIRE(mesh.WaitReady());
  const std::string payload(100 * 1024, 'z');  // more than one read's worth
  REQUIRE(WaitFor([&] { return !TcpRoundTrip("127.0.0.1", gateway_port, "x").empty(); }, 10s));
  std::map<std::string, int> seen;
  for (int i = 0; i < 40; ++i) {
    std::string answer = TcpRoundTrip("127.0.0.1", gateway_port, payload);
    ++seen[answer.substr(0, answer.find(':'))];
    CHECK(answer.size() == payload.size() + std::string("echo a: ").size());
  }
  INFO(mesh.Logs().substr(0, 3000));
  CHECK(seen.size() == 2);  // both weighted destinations
  CHECK(seen["echo a"] + seen["echo b"] == 40);
  // The same route on the sidecar's per-port outbound listener.
  REQUIRE(WaitFor([&] { return !TcpRoundTrip(client.ip, 9000, "x").empty(); }, 10s));
  std::string via_sidecar = TcpRoundTrip(client.ip, 9000, "hello");
  CHECK((via_sidecar == "echo a: hello" || via_sidecar == "echo b: hello"));

  // connectionPool.tcp.idleTimeout: a silent connection is closed by the proxy.
  mesh.Apply(R"(
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: echo}
spec:
  host: echo
  trafficPolicy: {connectionPool: {tcp: {idleTimeout: 300ms}}}
  subsets: [{name: a, labels: {version: a}}, {name: b, labels: {version: b}}]
)");
  REQUIRE(WaitFor([&] { return absl::StrContains(gw.Admin("/config_dump"), "\"0.300s\""); }, 10s));
  std::this_thread::sleep_for(100ms);  // the listener's new config reaches the workers
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(gateway_port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval timeout{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  auto start = std::chrono::steady_clock::now();
  char byte;
  ssize_t n = ::recv(fd, &byte, 1, 0);
  auto took = std::chrono::steady_clock::now() - start;
  ::close(fd);
  CHECK(n == 0);  // closed by the proxy, not timed out by the test
  CHECK(took >= 250ms);
  CHECK(took < 3s);
}

}  // namespace
}  // namespace mesh::testing
