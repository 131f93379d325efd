// AuthorizationPolicy end to end, after Istio's authorization tasks: mesh-demo-app as httpbin in
// namespace foo behind its sidecar, and "sleep" clients (a sidecar each, service account sleep)
// in namespaces foo and bar, all with STRICT mutual TLS, so every request carries a proven
// identity. Each case counts 50 requests each way.
#include <grpcpp/grpcpp.h>
#include <httplib.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <map>
#include <mutex>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "meshpilot/testing/v1/echo.grpc.pb.h"
#include "test/support/jwt_signer.h"
#include "test/support/mesh.h"

namespace mesh::testing {
namespace {

using namespace std::chrono_literals;

constexpr int kRequests = 50;
const std::string kHost = "httpbin.foo.svc.cluster.local:8000";

struct AuthzMesh {
  explicit AuthzMesh(std::vector<std::string> meshpilot_flags = {"--debounce", "10ms"})
      : mesh(std::move(meshpilot_flags)) {
    redis_port = mesh.Redis();
    mesh.Apply(absl::StrCat(R"(
apiVersion: v1
kind: Service
metadata: {name: httpbin, namespace: foo}
spec: {selector: {app: httpbin}, ports: [{name: http, port: 8000}]}
---
apiVersion: v1
kind: Service
metadata: {name: redis, namespace: foo}
spec: {selector: {app: redis}, ports: [{name: tcp-redis, port: 6379, targetPort: )",
                            redis_port, R"(}]}
)",
                            kStrictMtlsYaml),
               "foo");
    httpbin = &mesh.Workload("httpbin", "foo", "app=httpbin", 8000, {"--name", "httpbin"});
    redis = &mesh.Sidecar("redis", "foo", "app=redis", 6379, redis_port);
    sleep_foo = &mesh.Sidecar("sleep-foo", "foo", "app=sleep", 9000, FreePort(), "sleep");
    sleep_bar = &mesh.Sidecar("sleep-bar", "bar", "app=sleep", 9000, FreePort(), "sleep");
    // Six processes come up at once; on a loaded 2-core machine that takes a while.
    REQUIRE(mesh.WaitReady(30s));
    INFO(mesh.Logs());
    REQUIRE(WaitFor([&] { return Send(*sleep_foo, "GET", "/ping").status == 200; }, 15s));
    REQUIRE(WaitFor([&] { return Send(*sleep_bar, "GET", "/ping").status == 200; }, 15s));
  }

  // One request from a sleep client, through its sidecar's HTTP outbound listener, to httpbin.
  static Reply Send(const Mesh::Proxy& from, const std::string& method, const std::string& path,
                    const std::string& token = "") {
    httplib::Client c(from.ip, 15001);
    c.set_connection_timeout(3s);
    c.set_read_timeout(5s);
    httplib::Headers headers = {{"Host", kHost}};
    if (!token.empty()) headers.emplace("Authorization", "Bearer " + token);
    httplib::Result r =
        method == "POST" ? c.Post(path, headers, "x", "text/plain") : c.Get(path, headers);
    Reply out;
    if (r) {
      out.status = r->status;
      out.body = r->body;
    }
    return out;
  }
  // kRequests requests; how many got each status.
  static std::map<int, int> Count(const Mesh::Proxy& from, const std::string& method,
                                  const std::string& path, const std::string& token = "") {
    std::map<int, int> by_status;
    for (int i = 0; i < kRequests; ++i) ++by_status[Send(from, method, path, token).status];
    return by_status;
  }
  // Applies a policy in foo and waits until `probe` shows it in force.
  void Policy(const std::string& yaml, const std::function<bool()>& probe) {
    mesh.Apply(yaml, "foo");
    REQUIRE(WaitFor(probe, 10s));
  }
  // PING to redis through a sleep client's per-port TCP listener: "+PONG", or "" when the
  // connection is closed on it. QUIT makes redis close, so an answer ends without a timeout.
  std::string RedisPing(const Mesh::Proxy& from) {
    std::string out = RawTcp(from.ip, 6379, "PING\r\nQUIT\r\n", false, 3s);
    return out.substr(0, out.find("\r\n"));
  }

  Mesh mesh;
  int redis_port = 0;
  Mesh::Proxy* httpbin = nullptr;
  Mesh::Proxy* redis = nullptr;
  Mesh::Proxy* sleep_foo = nullptr;
  Mesh::Proxy* sleep_bar = nullptr;
};

const std::map<int, int> kAllOk = {{200, kRequests}};
const std::map<int, int> kAllDenied = {{403, kRequests}};

TEST_CASE("Authorization: an empty ALLOW policy denies every request with 403") {
  AuthzMesh m;
  m.Policy(R"(
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-nothing}
spec: {}
)",
           [&] { return AuthzMesh::Send(*m.sleep_foo, "GET", "/ping").status == 403; });
  CHECK(AuthzMesh::Send(*m.sleep_foo, "GET", "/ping").body == "RBAC: access denied\n");
  CHECK(AuthzMesh::Count(*m.sleep_foo, "GET", "/ping") == kAllDenied);
  CHECK(AuthzMesh::Count(*m.sleep_bar, "GET", "/ping") == kAllDenied);
  CHECK(absl::StrContains(m.httpbin->Admin("/stats/prometheus"),
                          "meshproxy_rbac_denied_total{kind=\"request\"}"));
}

TEST_CASE("Authorization: allow GET from a namespace, and by principal") {
  AuthzMesh m;
  m.Policy(R"(
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: get-from-foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  action: ALLOW
  rules:
  - from: [{source: {namespaces: ["foo"]}}]
    to: [{operation: {methods: ["GET"]}}]
)",
           [&] { return AuthzMesh::Send(*m.sleep_bar, "GET", "/ping").status == 403; });
  CHECK(AuthzMesh::Count(*m.sleep_foo, "GET", "/ping") == kAllOk);
  CHECK(AuthzMesh::Count(*m.sleep_foo, "POST", "/echo") == kAllDenied);
  CHECK(AuthzMesh::Count(*m.sleep_bar, "GET", "/ping") == kAllDenied);

  // Replaced by one that names bar's sleep service account only.
  m.Policy(R"(
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: get-from-foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  rules:
  - from: [{source: {principals: ["cluster.local/ns/bar/sa/sleep"]}}]
)",
           [&] { return AuthzMesh::Send(*m.sleep_foo, "GET", "/ping").status == 403; });
  CHECK(AuthzMesh::Count(*m.sleep_bar, "GET", "/ping") == kAllOk);
  CHECK(AuthzMesh::Count(*m.sleep_bar, "POST", "/echo") == kAllOk);
  CHECK(AuthzMesh::Count(*m.sleep_foo, "GET", "/ping") == kAllDenied);
}

TEST_CASE("Authorization: deny /admin paths, and DENY is evaluated before ALLOW") {
  AuthzMesh m;
  m.Policy(R"(
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-admin}
spec:
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin*"]}}]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow-all}
spec:
  rules: [{}]
)",
           [&] { return AuthzMesh::Send(*m.sleep_foo, "GET", "/admin/users").status == 403; });
  CHECK(AuthzMesh::Count(*m.sleep_foo, "GET", "/admin/users") == kAllDenied);
  CHECK(AuthzMesh::Count(*m.sleep_bar, "GET", "/admin") == kAllDenied);
  CHECK(AuthzMesh::Count(*m.sleep_foo, "GET", "/ping") == kAllOk);
  CHECK(AuthzMesh::Count(*m.sleep_bar, "GET", "/ping?admin=1") == kAllOk);
}

TEST_CASE("Authorization: allow only with a valid JWT that carries a claim") {
  AuthzMesh m;
  auto key = TestKey::Rsa("k1");
  const std::string issuer = "testing@secure.istio.io";
  m.Policy(
      absl::StrCat(R"(
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt-example}
spec:
  selector: {matchLabels: {app: httpbin}}
  jwtRules:
  - issuer: ")",
                   issuer, R"("
    jwks: ')",
                   json{{"keys", {key->jwk}}}.dump(), R"('
)"),
      [&] { return AuthzMesh::Send(*m.sleep_foo, "GET", "/ping", "not.a.jwt").status == 401; });
  const std::string group1 = key->Sign({{"iss", issuer},
                                        {"sub", issuer},
                                        {"exp", absl::ToUnixSeconds(absl::Now()) + 3600},
                                        {"groups", json::array({"group1", "group2"})}});
  const std::string other = key->Sign({{"iss", issuer},
                                       {"sub", issuer},
                                       {"exp", absl::ToUnixSeconds(absl::Now()) + 3600},
                                       {"groups", json::array({"group2"})}});
  const std::string expired = key->Sign({{"iss", issuer},
                                         {"sub", issuer},
                                         {"exp", absl::ToUnixSeconds(absl::Now()) - 3600},
                                         {"groups", json::array({"group1"})}});
  // Authentication alone: an invalid token is 401, no token passes.
  CHECK(AuthzMesh::Send(*m.sleep_foo, "GET", "/ping", expired).body == "Jwt is expired\n");
  CHECK(AuthzMesh::Count(*m.sleep_foo, "GET", "/ping", expired) ==
        std::map<int, int>{{401, kRequests}});
  CHECK(AuthzMesh::Count(*m.sleep_foo, "GET", "/ping") == kAllOk);

  m.Policy(absl::StrCat(R"(
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: require-jwt}
spec:
  selector: {matchLabels: {app: httpbin}}
  action: ALLOW
  rules:
  - from: [{source: {requestPrincipals: [")",
                        issuer, "/", issuer, R"("]}}]
    when: [{key: "request.auth.claims[groups]", values: ["group1"]}]
)"),
           [&] { return AuthzMesh::Send(*m.sleep_foo, "GET", "/ping").status == 403; });
  CHECK(AuthzMesh::Count(*m.sleep_foo, "GET", "/ping", group1) == kAllOk);
  CHECK(AuthzMesh::Count(*m.sleep_bar, "GET", "/ping", group1) == kAllOk);
  CHECK(AuthzMesh::Count(*m.sleep_foo, "GET", "/ping") == kAllDenied);
  CHECK(AuthzMesh::Count(*m.sleep_foo, "GET", "/ping", other) == kAllDenied);
  CHECK(AuthzMesh::Count(*m.sleep_foo, "GET", "/ping", expired) ==
        std::map<int, int>{{401, kRequests}});
  CHECK(absl::StrContains(m.httpbin->Admin("/stats/prometheus"), "meshproxy_jwt_refused_total"));
}

// A JWKS endpoint of the test's own on loopback: serves `body` at /jwks, or 503 while `down`.
struct JwksEndpoint {
  JwksEndpoint() {
    server.Get("/jwks", [this](const httplib::Request&, httplib::Response& res) {
      std::lock_guard lock(mu);
      if (down) {
        res.status = 503;
        return;
      }
      res.set_content(body, "application/json");
    });
    port = server.bind_to_any_port("127.0.0.1");
    thread = std::thread([this] { server.listen_after_bind(); });
  }
  ~JwksEndpoint() {
    server.stop();
    thread.join();
  }
  void Serve(const json& keys) {
    std::lock_guard lock(mu);
    body = json{{"keys", keys}}.dump();
    down = false;
  }
  void Fail() {
    std::lock_guard lock(mu);
    down = true;
  }
  std::string uri() const { return absl::StrCat("http://127.0.0.1:", port, "/jwks"); }

  httplib::Server server;
  std::thread thread;
  int port = 0;
  std::mutex mu;
  std::string body;
  bool down = false;
};

TEST_CASE("Authorization: keys behind a jwksUri are fetched, rotated, and kept when it fails") {
  JwksEndpoint jwks;
  auto key1 = TestKey::Ec("k1"), key2 = TestKey::Rsa("k2");
  jwks.Serve(json::array({key1->jwk}));
  AuthzMesh m({"--debounce", "10ms", "--jwks-refresh-interval", "1s"});
  const std::string issuer = "https://issuer.example";
  const json claims = {
      {"iss", issuer}, {"sub", "alice"}, {"exp", absl::ToUnixSeconds(absl::Now()) + 3600}};
  const std::string token1 = key1->Sign(claims), token2 = key2->Sign(claims);
  m.Policy(absl::StrCat(R"(
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt-uri}
spec:
  selector: {matchLabels: {app: httpbin}}
  jwtRules:
  - issuer: ")",
                        issuer, R"("
    jwksUri: ")",
                        jwks.uri(), R"("
)"),
           // Before the policy, any token passes; once in force, token2's key is not served.
           [&] {
             return AuthzMesh::Send(*m.sleep_foo, "GET", "/ping", token2).status == 401 &&
                    AuthzMesh::Send(*m.sleep_foo, "GET", "/ping", token1).status == 200;
           });
  CHECK(AuthzMesh::Count(*m.sleep_foo, "GET", "/ping", token1) == kAllOk);
  CHECK(AuthzMesh::Count(*m.sleep_foo, "GET", "/ping", token2) ==
        std::map<int, int>{{401, kRequests}});

  // The issuer rotates to key2: within a refresh or two, key2's tokens pass and key1's do not.
  jwks.Serve(json::array({key2->jwk}));
  REQUIRE(WaitFor(
      [&] { return AuthzMesh::Send(*m.sleep_foo, "GET", "/ping", token2).status == 200; }, 10s));
  CHECK(AuthzMesh::Count(*m.sleep_foo, "GET", "/ping", token2) == kAllOk);
  CHECK(AuthzMesh::Count(*m.sleep_foo, "GET", "/ping", token1) ==
        std::map<int, int>{{401, kRequests}});

  // The endpoint fails: the last good keys stay, and proxy-status and the log say so.
  jwks.Fail();
  auto status = [&] {
    return RunCommand({MESHCTL_BIN, "--server", m.mesh.pilot().address(), "--token",
                       m.mesh.pilot().token(), "proxy-status"});
  };
  REQUIRE(WaitFor([&] { return absl::StrContains(status().out, "HTTP status 503"); }, 10s));
  CommandResult shown = status();
  INFO(shown.out);
  CHECK(shown.exit_code == 0);
  CHECK(absl::StrContains(shown.out, absl::StrCat("WARNING: jwksUri ", jwks.uri())));
  CHECK(absl::StrContains(shown.out, "stay in use by httpbin"));
  CHECK(absl::StrContains(m.mesh.pilot().Log(), "keeping the keys fetched"));
  CHECK(AuthzMesh::Count(*m.sleep_foo, "GET", "/ping", token2) == kAllOk);
  CHECK(AuthzMesh::Count(*m.sleep_foo, "GET", "/ping") == kAllOk);  // no token: passes
}

TEST_CASE("Authorization: a TCP policy on a port closes the connections it does not allow") {
  AuthzMesh m;
  REQUIRE(WaitFor([&] { return m.RedisPing(*m.sleep_bar) == "+PONG"; }, 15s));
  m.Policy(absl::StrCat(R"(
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: redis-from-foo}
spec:
  selector: {matchLabels: {app: redis}}
  rules:
  - from: [{source: {namespaces: ["foo"]}}]
    to: [{operation: {ports: [")",
                        m.redis_port, R"("]}}]
)"),
           [&] { return m.RedisPing(*m.sleep_bar).empty(); });
  int foo_ok = 0, bar_closed = 0;
  for (int i = 0; i < kRequests; ++i) {
    foo_ok += m.RedisPing(*m.sleep_foo) == "+PONG";
    bar_closed += m.RedisPing(*m.sleep_bar).empty();
  }
  CHECK(foo_ok == kRequests);
  CHECK(bar_closed == kRequests);
  CHECK(absl::StrContains(m.redis->Admin("/stats/prometheus"),
                          "meshproxy_rbac_denied_total{kind=\"connection\"}"));
}

TEST_CASE("Authorization: a policy change takes effect within 1 s and fails no allowed request") {
  AuthzMesh m;
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, failed{0};
  std::thread allowed([&] {
    while (!stop) {
      (AuthzMesh::Send(*m.sleep_foo, "GET", "/ping").status == 200 ? ok : failed)++;
    }
  });
  std::this_thread::sleep_for(300ms);
  const auto applied = std::chrono::steady_clock::now();
  m.mesh.Apply(R"(
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: foo-only}
spec:
  rules: [{from: [{source: {namespaces: ["foo"]}}]}]
)",
               "foo");
  const bool denied =
      WaitFor([&] { return AuthzMesh::Send(*m.sleep_bar, "GET", "/ping").status == 403; }, 5s);
  const auto took = std::chrono::steady_clock::now() - applied;
  std::this_thread::sleep_for(300ms);
  stop = true;
  allowed.join();
  REQUIRE(denied);
  INFO("in force after " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                         << " ms; allowed ok " << ok << ", failed " << failed);
  CHECK(took < 1s);
  CHECK(failed == 0);
  CHECK(ok > 20);
}

TEST_CASE("Authorization: a denied gRPC call fails with PERMISSION_DENIED, others go through") {
  Mesh mesh;
  const int app = mesh.App("echo-app", {"--mode", "grpc", "--version", "v1"});
  mesh.Apply(absl::StrCat(R"(
apiVersion: v1
kind: Service
metadata: {name: echo}
spec: {selector: {app: echo}, ports: [{name: grpc, port: 9000}]}
)",
                          kStrictMtlsYaml, R"(---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-say}
spec:
  selector: {matchLabels: {app: echo}}
  action: DENY
  rules: [{to: [{operation: {paths: ["/meshpilot.testing.v1.Echo/Say"]}}]}]
)"));
  mesh.Sidecar("echo", "default", "app=echo", 9000, app);
  Mesh::Proxy& client = mesh.Sidecar("client", "default", "app=client", 9001, FreePort());
  REQUIRE(mesh.WaitReady());
  grpc::ChannelArguments args;
  args.SetString(GRPC_ARG_DEFAULT_AUTHORITY, "echo:9000");
  auto stub = meshpilot::testing::v1::Echo::NewStub(
      grpc::CreateCustomChannel(client.outbound, grpc::InsecureChannelCredentials(), args));
  auto whoami = [&] {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + 3s);
    meshpilot::testing::v1::WhoamiResponse res;
    return stub->Whoami(&context, {}, &res);
  };
  REQUIRE(WaitFor([&] { return whoami().ok(); }, 15s));
  for (int i = 0; i < 10; ++i) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + 3s);
    meshpilot::testing::v1::EchoRequest req;
    req.set_message("hello");
    meshpilot::testing::v1::EchoResponse res;
    grpc::Status say = stub->Say(&context, req, &res);
    CHECK(say.error_code() == grpc::StatusCode::PERMISSION_DENIED);
    CHECK(say.error_message() == "RBAC: access denied");
    CHECK(whoami().ok());
  }
}

}  // namespace
}  // namespace mesh::testing
