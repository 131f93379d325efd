// Mutual TLS between meshproxy sidecars, end to end: identities from meshpilot's CA, ISTIO_MUTUAL
// clients, STRICT and PERMISSIVE servers.
#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "controlplane/ca/authority.h"
#include "test/support/mesh.h"
#include "test/support/x509.h"

namespace mesh::testing {
namespace {

using namespace std::chrono_literals;

const std::string kIdentity = "spiffe://cluster.local/ns/default/sa/default";

// Service "web" (one pong workload behind a sidecar) and a client workload with its own sidecar;
// clients reach web with ISTIO_MUTUAL. `extra` adds config (a PeerAuthentication, a rule).
struct MtlsMesh {
  explicit MtlsMesh(const std::string& extra,
                    std::vector<std::string> meshpilot_flags = {"--debounce", "10ms"})
      : mesh(std::move(meshpilot_flags)) {
    mesh.Apply(absl::StrCat(R"(
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {selector: {app: web}, ports: [{name: http, port: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: client}
spec: {selector: {app: client}, ports: [{name: http, port: 8080}]}
---
)",
                            extra));
    web = &mesh.Workload("web", "default", "app=web", 8080, {"--name", "web", "--version", "v1"});
    client = &mesh.Workload("client", "default", "app=client", 8080, {"--name", "client"});
    REQUIRE(mesh.WaitReady());
  }
  // `clients` threads calling web through the client's sidecar while `during` runs.
  struct Load {
    int ok = 0, failed = 0;
    std::string first_failure;  // status and body of the first failed call, to say why
  };
  Load CallsDuring(int clients, const std::function<void()>& during) {
    std::atomic<bool> stop{false};
    std::atomic<int> ok{0}, failed{0};
    std::mutex mu;
    std::string first_failure;
    std::vector<std::thread> threads;
    for (int i = 0; i < clients; ++i) {
      threads.emplace_back([&] {
        while (!stop) {
          Reply r = Call("/ping");
          if (r.body == "pong from web v1\n") {
            ++ok;
          } else {
            ++failed;
            std::lock_guard lock(mu);
            if (first_failure.empty())
              first_failure =
                  absl::StrCat(r.status, " ", r.Header("x-meshproxy-reason"), " ", r.body);
          }
        }
      });
    }
    during();
    stop = true;
    for (auto& t : threads) t.join();
    return {ok.load(), failed.load(), first_failure};
  }
  // A call from the client app, through its sidecar, to web.
  Reply Call(const std::string& path) { return HttpGet(client->port, "/call/web:8080" + path); }
  // A plaintext request straight to web's inbound listener, as a workload outside the mesh.
  std::string Plaintext() {
    std::string out = RawTcp(web->ip, web->inbound_port,
                             "GET /ping HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n", false);
    if (out.empty()) return "<refused>";
    return out.substr(out.find("\r\n\r\n") + 4);
  }
  Mesh mesh;
  Mesh::Proxy* web = nullptr;
  Mesh::Proxy* client = nullptr;
};

const char* kIstioMutual = R"(
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: web}
spec:
  host: web
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
)";

std::string PeerAuthentication(const std::string& mode) {
  return absl::StrCat(
      "apiVersion: security.istio.io/v1beta1\nkind: PeerAuthentication\nmetadata: {name: "
      "default}\nspec: {mtls: {mode: ",
      mode, "}}\n");
}

TEST_CASE(
    "Sidecars talk mTLS: the server sees the client's SPIFFE ID, and STRICT refuses plaintext") {
  MtlsMesh m(absl::StrCat(kIstioMutual, "---\n", PeerAuthentication("STRICT")));
  REQUIRE(WaitFor([&] { return m.Call("/ping").body == "pong from web v1\n"; }, 10s));
  Reply echo = m.Call("/echo");
  INFO(echo.body);
  CHECK(absl::StrContains(echo.body, absl::StrCat("header: x-forwarded-client-cert: By=", kIdentity,
                                                  ";URI=", kIdentity, "\n")));
  REQUIRE(WaitFor([&] { return m.Plaintext() == "<refused>"; }, 10s));
  CHECK(absl::StrContains(m.web->process->Log(), "refused (mutual TLS is STRICT)"));
  // A client that claims an identity in a header gets it removed, not believed.
  Reply forged = HttpGet(m.client->port, "/call/web:8080/echo",
                         {{"x-forwarded-client-cert", "URI=spiffe://cluster.local/ns/x/sa/admin"}});
  CHECK(!absl::StrContains(forged.body, "sa/admin"));
}

TEST_CASE("PERMISSIVE takes plaintext and mTLS, and switching to STRICT under load fails no call") {
  MtlsMesh m(absl::StrCat(kIstioMutual, "---\n", PeerAuthentication("PERMISSIVE")));
  REQUIRE(WaitFor([&] { return m.Call("/ping").body == "pong from web v1\n"; }, 10s));
  CHECK(m.Plaintext() == "pong from web v1\n");                        // plaintext accepted
  CHECK(absl::StrContains(m.Call("/echo").body, "URI=" + kIdentity));  // and mTLS

  bool refused = false;
  MtlsMesh::Load load = m.CallsDuring(3, [&] {
    std::this_thread::sleep_for(300ms);
    m.mesh.Apply(PeerAuthentication("STRICT"));
    refused = WaitFor([&] { return m.Plaintext() == "<refused>"; }, 10s);
    std::this_thread::sleep_for(300ms);
  });
  CHECK(refused);
  INFO("ok " << load.ok << " failed " << load.failed << "; first failure: " << load.first_failure);
  CHECK(load.failed == 0);
  CHECK(load.ok > 30);
}

TEST_CASE("A server with another identity than the DestinationRule names is refused and logged") {
  MtlsMesh m(R"(
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: web}
spec:
  host: web
  trafficPolicy:
    tls: {mode: ISTIO_MUTUAL, subjectAltNames: ["spiffe://cluster.local/ns/payments/sa/web"]}
)");
  // A 503 can also mean "no endpoint yet": wait for the one that says why.
  const std::string refusal = absl::StrCat("presented ", kIdentity,
                                           ", not one of the identities its DestinationRule names");
  CHECK(WaitFor(
      [&] {
        return m.Call("/ping").status == 503 &&
               absl::StrContains(m.client->process->Log(), refusal);
      },
      10s));
  CHECK(m.Call("/ping").status == 503);
}

TEST_CASE("An expired certificate, or one from another CA, is refused and logged") {
  MtlsMesh m(absl::StrCat(kIstioMutual, "---\n", PeerAuthentication("STRICT")));
  REQUIRE(WaitFor([&] { return m.Call("/ping").body == "pong from web v1\n"; }, 10s));
  auto handshake = [&](const ca::Authority& authority, absl::Time signed_at,
                       const std::string& tag) {
    std::string key;
    auto cert =
        authority.Sign(MakeCsr({}, &key), {"default", "default"}, absl::Hours(1), signed_at);
    REQUIRE(cert.ok());
    std::string dir = m.mesh.dir() / tag;
    std::filesystem::create_directories(dir);
    std::ofstream(dir + "/cert.pem") << cert->cert_pem;
    std::ofstream(dir + "/key.pem") << key;
    return RunCommand(
        {"openssl", "s_client", "-connect", absl::StrCat(m.web->ip, ":", m.web->inbound_port),
         "-cert", dir + "/cert.pem", "-key", dir + "/key.pem", "-quiet"},
        "GET /ping HTTP/1.0\r\n\r\n");
  };
  const std::string ca_dir = m.mesh.dir() / "meshpilot/ca";
  auto mesh_ca =
      ca::Authority::LoadOrCreate(ca_dir + "/root-cert.pem", ca_dir + "/root-key.pem", {});
  REQUIRE(mesh_ca.ok());
  CommandResult expired = handshake(**mesh_ca, absl::Now() - absl::Hours(48), "expired");
  CHECK(!absl::StrContains(expired.out, "pong"));
  auto other_ca = ca::Authority::LoadOrCreate(m.mesh.dir() / "other/cert.pem",
                                              m.mesh.dir() / "other/key.pem", {});
  REQUIRE(other_ca.ok());
  CommandResult foreign = handshake(**other_ca, absl::Now(), "foreign");
  CHECK(!absl::StrContains(foreign.out, "pong"));
  std::string log = m.web->process->Log();
  INFO(log);
  CHECK(absl::StrContains(log, "refused: certificate has expired"));
  CHECK(absl::StrContains(log, "refused: unable to get local issuer certificate"));
}

TEST_CASE(
    "Gateway TLS: SIMPLE and MUTUAL servers from certificate files, HTTP/2 by ALPN, and "
    "httpsRedirect") {
  Mesh mesh;
  // Server and client certificates from a CA of the test's own, as files.
  auto test_ca =
      ca::Authority::LoadOrCreate(mesh.dir() / "gwca/cert.pem", mesh.dir() / "gwca/key.pem", {});
  REQUIRE(test_ca.ok());
  auto issue = [&](const std::string& name) {
    std::string key;
    auto cert = (*test_ca)->Sign(MakeCsr({}, &key), {"gateway", name});
    REQUIRE(cert.ok());
    std::ofstream(mesh.dir() / (name + "-cert.pem")) << cert->cert_pem;
    std::ofstream(mesh.dir() / (name + "-key.pem")) << key;
  };
  issue("server");
  issue("client");
  int app = mesh.App("web-a", {"--name", "web", "--version", "a"});
  int http = FreePort(), https = FreePort(), mutual = FreePort();
  const std::string files = absl::StrCat("serverCertificate: ", mesh.dir() / "server-cert.pem",
                                         ", privateKey: ", mesh.dir() / "server-key.pem");
  mesh.Apply(absl::StrCat(R"(
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {selector: {app: web}, ports: [{name: http, port: 8080}]}
---
apiVersion: networking.istio.io/v1alpha3
kind: WorkloadEntry
metadata: {name: web-a}
spec: {address: 127.0.0.1, labels: {app: web}, ports: {http: )",
                          app, R"(}}
---
apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata: {name: gw}
spec:
  selector: {istio: ingressgateway}
  servers:
  - {port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"], tls: {httpsRedirect: true}}
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["*"]
    tls: {mode: SIMPLE, )",
                          files, R"(}
  - port: {number: 8443, name: https-mutual, protocol: HTTPS}
    hosts: ["*"]
    tls: {mode: MUTUAL, )",
                          files, ", caCertificates: ", mesh.dir() / "gwca/cert.pem", R"(}
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: web}
spec:
  hosts: ["*"]
  gateways: [gw]
  http: [{route: [{destination: {host: web}}]}]
)"));
  mesh.Gateway("ingressgateway",
               {"--port-map", absl::StrCat("80=", http), "--port-map", absl::StrCat("443=", https),
                "--port-map", absl::StrCat("8443=", mutual)});
  REQUIRE(mesh.WaitReady());
  auto curl = [&](std::vector<std::string> args) {
    std::vector<std::string> argv = {"curl", "-s", "-k", "-m", "5"};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv);
  };
  REQUIRE(WaitFor(
      [&] { return curl({absl::StrCat("https://127.0.0.1:", https, "/")}).out == "web a\n"; },
      10s));
  Reply redirect = HttpGet(http, "/page?x=1");
  CHECK(redirect.status == 301);
  CHECK(redirect.Header("Location") == "https://127.0.0.1/page?x=1");
  CHECK(absl::StrContains(curl({absl::StrCat("https://127.0.0.1:", https, "/echo")}).out,
                          "header: x-forwarded-proto: https"));
  // HTTP/2 over TLS, chosen by ALPN: curl --http2 gets h2, and HTTP/1.1 still works beside it.
  CHECK(curl({"--http2", "-o", "/dev/null", "-w", "%{http_version} %{http_code}",
              absl::StrCat("https://127.0.0.1:", https, "/")})
            .out == "2 200");
  CHECK(curl({"--http1.1", "-o", "/dev/null", "-w", "%{http_version} %{http_code}",
              absl::StrCat("https://127.0.0.1:", https, "/")})
            .out == "1.1 200");
  // MUTUAL: no client certificate, no answer; the test CA's client certificate, the app.
  CHECK(curl({absl::StrCat("https://127.0.0.1:", mutual, "/")}).out != "web a\n");
  CHECK(curl({"--cert", mesh.dir() / "client-cert.pem", "--key", mesh.dir() / "client-key.pem",
              absl::StrCat("https://127.0.0.1:", mutual, "/")})
            .out == "web a\n");

  // A DestinationRule MUTUAL with files towards a TLS server (the gateway's own MUTUAL port):
  // /via-tls goes out with the client certificate and comes back in on 8443.
  mesh.Apply(absl::StrCat(R"(
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata: {name: tlsweb}
spec:
  hosts: [tlsweb.example]
  ports: [{number: 8443, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 127.0.0.1, ports: {http: )",
                          mutual, R"(}}]
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: tlsweb}
spec:
  host: tlsweb.example
  trafficPolicy:
    tls: {mode: MUTUAL, clientCertificate: )",
                          mesh.dir() / "client-cert.pem",
                          ", privateKey: ", mesh.dir() / "client-key.pem",
                          ", caCertificates: ", mesh.dir() / "gwca/cert.pem", R"(}
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: web}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - match: [{uri: {prefix: /via-tls}}]
    rewrite: {uri: /}
    route: [{destination: {host: tlsweb.example, port: {number: 8443}}}]
  - route: [{destination: {host: web}}]
)"));
  CHECK(WaitFor(
      [&] {
        return curl({absl::StrCat("https://127.0.0.1:", https, "/via-tls")}).out == "web a\n";
      },
      10s));
}

TEST_CASE("Certificates rotate under mTLS load without a failed call") {
  // 3 s certificates: both sidecars renew about every 2 s during the run.
  MtlsMesh m(absl::StrCat(kIstioMutual, "---\n", PeerAuthentication("STRICT")),
             {"--debounce", "10ms", "--cert-ttl", "3s"});
  REQUIRE(WaitFor([&] { return m.Call("/ping").body == "pong from web v1\n"; }, 10s));
  std::string before = m.web->Admin("/certs");
  MtlsMesh::Load load = m.CallsDuring(2, [] { std::this_thread::sleep_for(5s); });
  INFO("ok " << load.ok << " failed " << load.failed << "; first failure: " << load.first_failure);
  CHECK(load.failed == 0);
  CHECK(load.ok > 50);
  CHECK(m.web->Admin("/certs") != before);  // the server's certificate did change meanwhile
}

TEST_CASE("tls-check for a connected proxy reads the client side from the clusters it holds") {
  MtlsMesh m(absl::StrCat(kIstioMutual, "---\n", PeerAuthentication("STRICT")));
  REQUIRE(WaitFor([&] { return m.Call("/ping").body == "pong from web v1\n"; }, 10s));
  auto rows = [&](const std::string& proxy) {
    auto res = m.mesh.pilot().Client().Get("/debug/tls_check?host=web.&proxy=" + proxy);
    REQUIRE(res);
    return std::make_pair(res->status, res->body);
  };
  auto [status, body] = rows("client");
  INFO(body);
  CHECK(status == 200);
  CHECK(absl::StrContains(body, R"("client":"mTLS")"));
  CHECK(absl::StrContains(body, R"("status":"OK")"));
  // The rule switches to DISABLE: once the client's sidecar holds it, tls-check says CONFLICT.
  m.mesh.Apply(R"(
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: web}
spec:
  host: web
  trafficPolicy: {tls: {mode: DISABLE}}
)");
  REQUIRE(
      WaitFor([&] { return absl::StrContains(rows("client").second, R"("client":"HTTP")"); }, 10s));
  CHECK(absl::StrContains(rows("client").second, R"("status":"CONFLICT")"));
  CHECK(m.Call("/ping").status != 200);  // and STRICT web indeed refuses it
  CHECK(rows("nobody").first == 404);
}

}  // namespace
}  // namespace mesh::testing
