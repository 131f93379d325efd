// meshpilot's CA end to end: meshctl makes a join token, a client sends a CSR over gRPC (Istio's
// certificate service on the xDS port) and gets a SPIFFE certificate back.
#include <grpcpp/grpcpp.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "controlplane/ca/authority.h"
#include "envoy/service/discovery/v3/discovery.grpc.pb.h"
#include "istio/v1/auth/ca.grpc.pb.h"
#include "test/support/mesh.h"
#include "test/support/meshpilot.h"
#include "test/support/process.h"
#include "test/support/temp_dir.h"
#include "test/support/voting_app.h"
#include "test/support/x509.h"

namespace mesh::testing {
namespace {

std::string Meshctl(const MeshpilotProcess& pilot, std::vector<std::string> args) {
  std::vector<std::string> argv = {MESHCTL_BIN, "--server", pilot.address(), "--token",
                                   pilot.token()};
  argv.insert(argv.end(), args.begin(), args.end());
  CommandResult r = RunCommand(argv);
  INFO(r.out);
  REQUIRE(r.exit_code == 0);
  return std::string(absl::StripTrailingAsciiWhitespace(r.out));
}

grpc::Status Request(const MeshpilotProcess& pilot, const std::string& token,
                     const std::string& csr, istio::v1::auth::IstioCertificateResponse* out) {
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", pilot.xds_port()),
                                     grpc::InsecureChannelCredentials());
  auto stub = istio::v1::auth::IstioCertificateService::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
  istio::v1::auth::IstioCertificateRequest req;
  req.set_csr(csr);
  return stub->CreateCertificate(&ctx, req, out);
}

TEST_CASE("A join token from meshctl gets a SPIFFE certificate signed by the mesh root") {
  TempDir dir;
  MeshpilotProcess pilot(MESHPILOT_BIN, dir / "data");
  REQUIRE(pilot.Start());
  std::string token =
      Meshctl(pilot, {"token", "create", "-n", "voting", "--service-account", "voting-app"});
  REQUIRE(absl::StartsWith(token, "mpt-"));

  const std::string spiffe = "spiffe://cluster.local/ns/voting/sa/voting-app";
  std::string key;
  istio::v1::auth::IstioCertificateResponse response;
  grpc::Status status = Request(pilot, token, MakeCsr({spiffe}, &key), &response);
  INFO(status.error_message());
  REQUIRE(status.ok());
  REQUIRE(response.cert_chain_size() == 2);
  CHECK(UriSans(response.cert_chain(0)) == std::vector<std::string>{spiffe});
  std::string root = ReadText(dir / "data/ca/root-cert.pem");
  CHECK(response.cert_chain(1) == root);
  CHECK(VerifiesAgainst(response.cert_chain(0), root));
  CHECK(ValiditySeconds(response.cert_chain(0)) == 24 * 3600 + 60);

  // The root survives a restart; the key stays in the data dir only.
  pilot.Terminate();
  REQUIRE(pilot.Restart());
  CHECK(ReadText(dir / "data/ca/root-cert.pem") == root);
  istio::v1::auth::IstioCertificateResponse again;
  REQUIRE(Request(pilot, token, MakeCsr({spiffe}, nullptr), &again).ok());
  CHECK(VerifiesAgainst(again.cert_chain(0), root));
}

TEST_CASE("Bad tokens and CSRs for another identity are refused and logged") {
  TempDir dir;
  MeshpilotProcess pilot(MESHPILOT_BIN, dir / "data");
  REQUIRE(pilot.Start());
  std::string token =
      Meshctl(pilot, {"token", "create", "-n", "voting", "--service-account", "voting-app"});
  istio::v1::auth::IstioCertificateResponse response;
  std::string csr = MakeCsr({"spiffe://cluster.local/ns/voting/sa/voting-app"}, nullptr);

  grpc::Status none = Request(pilot, "", csr, &response);
  CHECK(none.error_code() == grpc::StatusCode::UNAUTHENTICATED);
  grpc::Status wrong = Request(pilot, "mpt-not-a-token", csr, &response);
  CHECK(wrong.error_code() == grpc::StatusCode::UNAUTHENTICATED);
  CHECK(wrong.error_message() == "unknown join token");
  grpc::Status other = Request(
      pilot, token, MakeCsr({"spiffe://cluster.local/ns/voting/sa/admin"}, nullptr), &response);
  CHECK(other.error_code() == grpc::StatusCode::PERMISSION_DENIED);
  CHECK(absl::StrContains(other.error_message(), "sa/admin"));
  grpc::Status garbage = Request(pilot, token, "not a csr", &response);
  CHECK(garbage.error_code() == grpc::StatusCode::INVALID_ARGUMENT);

  std::string log = pilot.Log();
  CHECK(absl::StrContains(log, "ca: refused a certificate for ipv4:127.0.0.1:"));
  CHECK(absl::StrContains(log, ": unknown join token"));
  CHECK(absl::StrContains(log,
                          "this caller may only have spiffe://cluster.local/ns/voting/sa/"
                          "voting-app"));
  auto metrics = pilot.Client().Get("/metrics");
  REQUIRE(metrics);
  CHECK(absl::StrContains(metrics->body, "meshpilot_ca_certificates_total{result=\"refused\"} 4"));

  CommandResult bad_name =
      RunCommand({MESHCTL_BIN, "--server", pilot.address(), "--token", pilot.token(), "token",
                  "create", "-n", "Voting", "--service-account", "a"});
  CHECK(bad_name.exit_code != 0);
  CHECK(absl::StrContains(bad_name.out, "namespace \"Voting\" is not a DNS label"));
}

TEST_CASE("Sidecars get the mesh root over ADS as the SDS secret ROOTCA, never a private key") {
  Mesh mesh;
  mesh.Apply(R"(
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {selector: {app: web}, ports: [{name: http, port: 8080}]}
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: web}
spec:
  host: web
  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}
)");
  Mesh::Proxy& sidecar = mesh.Sidecar("client", "default", "app=client", 9000, FreePort());
  REQUIRE(mesh.WaitReady());
  const std::string root = ReadText(mesh.dir() / "meshpilot/ca/root-cert.pem");
  REQUIRE(!root.empty());
  std::string dump;
  REQUIRE(WaitFor(
      [&] {
        dump = sidecar.Admin("/config_dump");
        return absl::StrContains(dump, "\"name\":\"ROOTCA\"");
      },
      std::chrono::seconds(10)));
  CHECK(absl::StrContains(dump, absl::Base64Escape(root)));
  CHECK(!absl::StrContains(dump, "PRIVATE KEY"));
  CHECK(!absl::StrContains(dump, absl::Base64Escape("-----BEGIN PRIVATE KEY")));
}

TEST_CASE("A proxy with a join token gets its certificate and renews it before it expires") {
  Mesh mesh({"--debounce", "10ms", "--cert-ttl", "3s"});
  auto token_for = [&](const std::string& sa) {
    auto res = mesh.pilot().Client().Post(
        "/tokens", absl::StrCat("{\"namespace\":\"default\",\"serviceAccount\":\"", sa, "\"}"),
        "application/json");
    REQUIRE(res);
    REQUIRE(res->status == 200);
    std::string token = nlohmann::json::parse(res->body)["token"];
    std::string path = mesh.dir() / (sa + ".token");
    std::ofstream(path) << token << "\n";
    return path;
  };
  Mesh::Proxy& good =
      mesh.RawProxy("web", {"--role", "sidecar", "--namespace", "default", "--labels", "app=web",
                            "--service-account", "web", "--token-file", token_for("web")});
  std::string bad_path = mesh.dir() / "bad.token";
  std::ofstream(bad_path) << "mpt-wrong\n";
  Mesh::Proxy& bad = mesh.RawProxy(
      "intruder", {"--role", "sidecar", "--namespace", "default", "--token-file", bad_path});
  REQUIRE(WaitFor([&] { return good.Ready(); }, std::chrono::seconds(10)));
  nlohmann::json first;
  REQUIRE(WaitFor(
      [&] {
        first = nlohmann::json::parse(good.Admin("/certs"), nullptr, false);
        return first.is_object() &&
               first["spiffe_id"] == "spiffe://cluster.local/ns/default/sa/web";
      },
      std::chrono::seconds(10)));
  // Renewed at two thirds of its 3 s: a later notAfter, well before the first one passes.
  nlohmann::json later;
  REQUIRE(WaitFor(
      [&] {
        later = nlohmann::json::parse(good.Admin("/certs"), nullptr, false);
        return later.is_object() && later["not_after"] != first["not_after"];
      },
      std::chrono::seconds(10)));
  CHECK(later["renewals"].get<int>() >= 2);
  CHECK(later["last_error"] == "");
  CHECK(!absl::StrContains(good.Admin("/certs"), "PRIVATE KEY"));

  // A wrong token: refused, logged on both sides, and the proxy keeps running on its config.
  REQUIRE(WaitFor([&] { return absl::StrContains(bad.Admin("/certs"), "unknown join token"); },
                  std::chrono::seconds(10)));
  CHECK(!bad.Ready());  // never ready without its identity, but alive and retrying
  CHECK(bad.process->running());
  CHECK(absl::StrContains(mesh.pilot().Log(), "ca: refused a certificate"));
}

TEST_CASE("ADS over mTLS takes proxies by their certificate, with plaintext xDS turned off") {
  Mesh mesh({"--debounce", "10ms", "--xds", ""});
  const MeshpilotProcess& pilot = mesh.pilot();
  // A proxy without an identity reaches the CA on the TLS port, then opens ADS with its
  // certificate; meshpilot knows the stream by that identity.
  Mesh::Proxy& web = mesh.RawProxy("web", {"--role", "sidecar", "--namespace", "default",
                                           "--token-file", mesh.TokenFile("web", "default")});
  REQUIRE(WaitFor([&] { return web.Ready(); }, std::chrono::seconds(10)));
  auto syncz = [&] { return nlohmann::json::parse(pilot.Client().Get("/debug/syncz")->body); };
  nlohmann::json streams = syncz();
  REQUIRE(streams.size() == 1);
  CHECK(streams[0]["id"] == "web");
  CHECK(streams[0]["identity"] == "spiffe://cluster.local/ns/default/sa/default");
  CHECK(RawTcp("127.0.0.1", pilot.xds_port(), "", true) == "<connect failed>");

  // A certificate of namespace "other" posing as a proxy of "default": refused and logged.
  Mesh::Proxy& impostor =
      mesh.RawProxy("impostor", {"--role", "sidecar", "--namespace", "default", "--token-file",
                                 mesh.TokenFile("imp", "other")});
  // A proxy that trusts another root than meshpilot's certificate chains to: never connects.
  auto other_ca =
      ca::Authority::LoadOrCreate(mesh.dir() / "other/cert.pem", mesh.dir() / "other/key.pem", {});
  REQUIRE(other_ca.ok());
  Mesh::Proxy& wrong_root =
      mesh.RawProxy("wrong-root", {"--role", "sidecar", "--namespace", "default", "--token-file",
                                   mesh.TokenFile("wr", "default"), "--xds-root-cert",
                                   mesh.dir() / "other/cert.pem"});
  REQUIRE(WaitFor(
      [&] {
        return absl::StrContains(pilot.Log(),
                                 "node impostor claims ns/default/sa/default but its certificate "
                                 "is spiffe://cluster.local/ns/other/sa/default");
      },
      std::chrono::seconds(10)));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  CHECK(!impostor.Ready());
  CHECK(!wrong_root.Ready());
  CHECK(
      absl::StrContains(wrong_root.Admin("/certs"), "CA at"));  // it cannot even get a certificate
  CHECK(syncz().size() == 1);
  CHECK(absl::StrContains(pilot.Client().Get("/metrics")->body,
                          "meshpilot_xds_refused_streams_total "));

  // A TLS client that shows no certificate may not open ADS.
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = ReadText(pilot.root_cert_path());
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", pilot.xds_tls_port()),
                                     grpc::SslCredentials(ssl));
  auto stub = envoy::service::discovery::v3::AggregatedDiscoveryService::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  auto stream = stub->StreamAggregatedResources(&ctx);
  envoy::service::discovery::v3::DiscoveryRequest req;
  req.mutable_node()->set_id("anonymous");
  req.set_type_url("type.googleapis.com/envoy.config.cluster.v3.Cluster");
  stream->Write(req);
  envoy::service::discovery::v3::DiscoveryResponse res;
  CHECK(!stream->Read(&res));
  grpc::Status status = stream->Finish();
  CHECK(status.error_code() == grpc::StatusCode::UNAUTHENTICATED);
  CHECK(status.error_message() == "ADS over TLS needs the proxy's workload certificate");
  CHECK(web.Ready());
}

TEST_CASE("meshctl tls-check prints the tutorial's table, and a plaintext client is a CONFLICT") {
  Mesh mesh;
  mesh.ApplyVotingApp(1);
  mesh.ApplyFile(std::string(MESH_MANIFESTS_DIR) + "/istio/voting-policy.yaml", "voting");
  // Step 1 with the STRICT Policy but no ISTIO_MUTUAL DestinationRule yet: clients send plaintext.
  std::string before = Meshctl(mesh.pilot(), {"tls-check", "voting-analytics"});
  INFO(before);
  CHECK(absl::StrContains(before, "HOST:PORT"));
  CHECK(absl::StrContains(before, "AUTHN POLICY"));
  std::vector<std::string> row =
      absl::StrSplit(before.substr(before.find('\n') + 1), ' ', absl::SkipEmpty());
  CHECK(row == std::vector<std::string>{"voting-analytics.voting.svc.cluster.local:8080",
                                        "CONFLICT", "mTLS", "HTTP", "default/voting", "-"});
  mesh.ApplyVotingApp(2);
  std::string after = Meshctl(mesh.pilot(), {"tls-check", "voting-analytics"});
  row = absl::StrSplit(after.substr(after.find('\n') + 1), ' ', absl::SkipEmpty());
  CHECK(row == std::vector<std::string>{"voting-analytics.voting.svc.cluster.local:8080", "OK",
                                        "mTLS", "mTLS", "default/voting",
                                        "voting-analytics/voting"});
}

}  // namespace
}  // namespace mesh::testing
