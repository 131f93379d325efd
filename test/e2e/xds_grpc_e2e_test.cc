// End to end with a peer nobody here wrote: gRPC's own xDS client (Debian's libgrpc++, in the
// xds_probe binary) dials xds:///echo.default.svc.cluster.local:9000 against the real meshpilot,
// and routes calls to test gRPC servers registered as WorkloadEntries, by our VirtualService and
// DestinationRule.
#include <grpcpp/grpcpp.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "dataplane/xds/grpc_transport.h"
#include "envoy/config/endpoint/v3/endpoint.pb.h"
#include "envoy/service/discovery/v3/discovery.grpc.pb.h"
#include "meshpilot/testing/v1/echo.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "test/support/meshpilot.h"
#include "test/support/temp_dir.h"
#include "test/support/voting_app.h"

namespace mesh {
namespace {

using meshpilot::testing::v1::Echo;
using meshpilot::testing::v1::WhoamiRequest;
using meshpilot::testing::v1::WhoamiResponse;
using nlohmann::json;

class EchoService final : public Echo::Service {
 public:
  explicit EchoService(std::string version) : version_(std::move(version)) {}
  grpc::Status Whoami(grpc::ServerContext*, const WhoamiRequest*, WhoamiResponse* res) override {
    res->set_name("echo");
    res->set_version(version_);
    return grpc::Status::OK;
  }

 private:
  std::string version_;
};

// A test gRPC backend on a free loopback port.
struct Backend {
  explicit Backend(const std::string& version) : service(version) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&service);
    server = builder.BuildAndStart();
    REQUIRE(port > 0);
  }
  ~Backend() {
    server->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(200));
  }
  EchoService service;
  int port = 0;
  std::unique_ptr<grpc::Server> server;
};

const char* kTarget = "xds:///echo.default.svc.cluster.local:9000";

std::string Registration(int v1_port, int v2_port) {
  return absl::StrCat(R"(
apiVersion: v1
kind: Service
metadata: {name: echo}
spec:
  selector: {app: echo}
  ports: [{name: grpc, port: 9000}]
---
apiVersion: networking.istio.io/v1beta1
kind: WorkloadEntry
metadata: {name: echo-v1}
spec: {address: 127.0.0.1, ports: {grpc: )",
                      v1_port, R"(}, labels: {app: echo, version: v1}}
---
apiVersion: networking.istio.io/v1beta1
kind: WorkloadEntry
metadata: {name: echo-v2}
spec: {address: 127.0.0.1, ports: {grpc: )",
                      v2_port, R"(}, labels: {app: echo, version: v2}}
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: echo}
spec:
  host: echo
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
)");
}

std::string VirtualService(int v1_weight, int v2_weight) {
  return absl::StrCat(R"(
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: echo}
spec:
  hosts: [echo]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: echo, subset: v2}}]
  - route:
    - {destination: {host: echo, subset: v1}, weight: )",
                      v1_weight, R"(}
    - {destination: {host: echo, subset: v2}, weight: )",
                      v2_weight, R"(}
)");
}

struct Mesh {
  Mesh()
      : pilot(MESHPILOT_BIN, dir.path() + "/data",
              {"--debounce", "20ms", "--debounce-max", "200ms"}) {
    REQUIRE(pilot.Start());
    bootstrap = json{{"xds_servers",
                      {{{"server_uri", absl::StrCat("127.0.0.1:", pilot.xds_port())},
                        {"channel_creds", {{{"type", "insecure"}}}},
                        {"server_features", {"xds_v3"}}}}},
                     {"node",
                      {{"id", "probe"},
                       {"metadata", {{"NAMESPACE", "default"}, {"LABELS", {{"app", "client"}}}}}}}}
                    .dump();
  }
  void Apply(const std::string& yaml) {
    auto res = pilot.Client().Post("/apply?namespace=default", yaml, "application/yaml");
    REQUIRE(res);
    INFO(res->body);
    REQUIRE(res->status == 200);
  }
  std::vector<std::string> Env() const { return {"GRPC_XDS_BOOTSTRAP_CONFIG=" + bootstrap}; }

  // Calls n times through gRPC's xDS client; returns calls per backend version ("errors" too).
  std::map<std::string, int> Count(int n, const std::string& header = "") {
    std::vector<std::string> argv = {XDS_PROBE_BIN, kTarget, "count", std::to_string(n)};
    if (!header.empty()) argv.push_back(header);
    testing::CommandResult r = testing::RunCommand(argv, "", Env());
    INFO(r.out);
    REQUIRE(r.exit_code == 0);
    std::map<std::string, int> counts;
    for (absl::string_view line : absl::StrSplit(r.out, '\n', absl::SkipEmpty())) {
      std::vector<std::string> parts = absl::StrSplit(line, ' ');
      int c;
      if (parts.size() == 2 && absl::SimpleAtoi(parts[1], &c)) counts[parts[0]] = c;
    }
    return counts;
  }

  testing::TempDir dir;
  testing::MeshpilotProcess pilot;
  std::string bootstrap;
};

TEST_CASE(
    "gRPC's xDS client splits calls 80/20 by our VirtualService, within 5 points over 1000 calls") {
  Backend v1("v1"), v2("v2");
  Mesh mesh;
  mesh.Apply(Registration(v1.port, v2.port) + "---\n" + VirtualService(80, 20));
  std::map<std::string, int> counts = mesh.Count(1000);
  CHECK(counts["errors"] == 0);
  CHECK(counts["v1"] + counts["v2"] == 1000);
  CHECK(counts["v1"] >= 750);
  CHECK(counts["v1"] <= 850);
}

TEST_CASE("Calls carrying end-user: jason reach v2 only") {
  Backend v1("v1"), v2("v2");
  Mesh mesh;
  mesh.Apply(Registration(v1.port, v2.port) + "---\n" + VirtualService(100, 0));
  std::map<std::string, int> jason = mesh.Count(200, "end-user=jason");
  CHECK(jason["v2"] == 200);
  std::map<std::string, int> others = mesh.Count(200, "end-user=someone");
  CHECK(others["v1"] == 200);
}

TEST_CASE(
    "A VirtualService change moves traffic within a second, and deleting it falls back to the "
    "whole service") {
  Backend v1("v1"), v2("v2");
  Mesh mesh;
  mesh.Apply(Registration(v1.port, v2.port) + "---\n" + VirtualService(100, 0));
  testing::Process probe({XDS_PROBE_BIN, kTarget, "until", "v2", "10"},
                         mesh.dir.path() + "/probe.log", mesh.Env());
  REQUIRE(testing::WaitFor([&] { return absl::StrContains(probe.Log(), "ready v1"); },
                           std::chrono::seconds(10)));
  int64_t applied = std::chrono::duration_cast<std::chrono::microseconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count();
  mesh.Apply(VirtualService(0, 100));
  REQUIRE(testing::WaitFor([&] { return !probe.running(); }, std::chrono::seconds(15)));
  std::string log = probe.Log();
  INFO(log);
  size_t at = log.find("switched ");
  REQUIRE(at != std::string::npos);
  int64_t switched = std::stoll(log.substr(at + 9));
  CHECK(switched - applied < 1'000'000);

  // Without a VirtualService the whole service is one cluster over both versions.
  auto res = mesh.pilot.Client().Delete(
      "/apis/networking.istio.io/v1beta1/namespaces/default/virtualservices/echo");
  REQUIRE(res);
  REQUIRE(res->status == 200);
  // Wait until the fallback reaches the clients, then measure.
  REQUIRE(testing::WaitFor(
      [&] {
        std::map<std::string, int> c = mesh.Count(20);
        return c["v1"] > 0 && c["v2"] > 0;
      },
      std::chrono::seconds(10)));
  std::map<std::string, int> counts = mesh.Count(100);
  CHECK(counts["v1"] > 20);
  CHECK(counts["v2"] > 20);
}

TEST_CASE(
    "/debug/syncz shows the proxyless client's ACKed versions and config_dump its resources") {
  Backend v1("v1"), v2("v2");
  Mesh mesh;
  mesh.Apply(Registration(v1.port, v2.port) + "---\n" + VirtualService(80, 20));
  testing::Process probe({XDS_PROBE_BIN, kTarget, "until", "none", "5"},
                         mesh.dir.path() + "/probe.log", mesh.Env());
  REQUIRE(testing::WaitFor([&] { return absl::StrContains(probe.Log(), "ready"); },
                           std::chrono::seconds(10)));
  auto res = mesh.pilot.Client().Get("/debug/syncz");
  REQUIRE(res);
  REQUIRE(res->status == 200);
  json syncz = json::parse(res->body);
  REQUIRE(syncz.size() == 1);
  CHECK(syncz[0]["id"] == "probe");
  for (const char* type : {"type.googleapis.com/envoy.config.listener.v3.Listener",
                           "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
                           "type.googleapis.com/envoy.config.cluster.v3.Cluster",
                           "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"}) {
    INFO(type);
    CHECK(syncz[0]["types"][type]["acked"] == syncz[0]["version"]);
    CHECK(syncz[0]["types"][type]["nack"] == "");
  }
  testing::CommandResult status =
      testing::RunCommand({MESHCTL_BIN, "--server", mesh.pilot.address(), "--token",
                           mesh.pilot.token(), "proxy-status"});
  CHECK(status.exit_code == 0);
  CHECK(absl::StrContains(status.out, "SYNCED   SYNCED   SYNCED   SYNCED"));
  CHECK(absl::StartsWith(status.out, "NAME "));
  auto dump = mesh.pilot.Client().Get("/debug/config_dump?proxy=probe");
  REQUIRE(dump->status == 200);
  CHECK(absl::StrContains(dump->body, "outbound|9000|v2|echo.default.svc.cluster.local"));
  // Every type's ACK of the applied revision is in the commit-to-ACK histogram.
  std::string metrics = mesh.pilot.Client().Get("/metrics")->body;
  CHECK(absl::StrContains(metrics, "meshpilot_xds_commit_to_ack_seconds_count 4\n"));
  CHECK(absl::StrContains(metrics, "meshpilot_xds_connected_proxies 1\n"));
  CHECK(mesh.pilot.Client().Get("/debug/config_dump?proxy=nobody")->status == 404);
}

}  // namespace
}  // namespace mesh

namespace mesh {
namespace {

using envoy::service::discovery::v3::AggregatedDiscoveryService;
using envoy::service::discovery::v3::DiscoveryRequest;
using envoy::service::discovery::v3::DiscoveryResponse;

TEST_CASE(
    "A NACKing client stays on its last version, syncz shows the error, others are unaffected") {
  Backend v1("v1"), v2("v2");
  Mesh mesh;
  mesh.Apply(Registration(v1.port, v2.port) + "---\n" + VirtualService(100, 0));

  // A hand-written ADS client that ACKs the first CDS answer and NACKs every later one.
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", mesh.pilot.xds_port()),
                                     grpc::InsecureChannelCredentials());
  auto stub = AggregatedDiscoveryService::NewStub(channel);
  grpc::ClientContext ctx;
  auto stream = stub->StreamAggregatedResources(&ctx);
  const std::string cds = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
  DiscoveryRequest req;
  req.mutable_node()->set_id("nacker");
  req.set_type_url(cds);
  REQUIRE(stream->Write(req));
  DiscoveryResponse first;
  REQUIRE(stream->Read(&first));
  CHECK(first.resources_size() == 3);  // the whole service and two subsets
  DiscoveryRequest ack;
  ack.set_type_url(cds);
  ack.set_version_info(first.version_info());
  ack.set_response_nonce(first.nonce());
  REQUIRE(stream->Write(ack));

  // A proxyless gRPC client on the same control plane.
  testing::Process probe({XDS_PROBE_BIN, kTarget, "until", "v2", "10"},
                         mesh.dir.path() + "/probe.log", mesh.Env());
  REQUIRE(testing::WaitFor([&] { return absl::StrContains(probe.Log(), "ready v1"); },
                           std::chrono::seconds(10)));

  // A change that adds a cluster: the nacker rejects it.
  mesh.Apply(VirtualService(0, 100) + R"(---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: echo}
spec:
  host: echo
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: v3, labels: {version: v3}}
)");
  DiscoveryResponse second;
  REQUIRE(stream->Read(&second));
  CHECK(second.version_info() != first.version_info());
  DiscoveryRequest nack;
  nack.set_type_url(cds);
  nack.set_version_info(first.version_info());  // still on the last good version
  nack.set_response_nonce(second.nonce());
  nack.mutable_error_detail()->set_code(3);
  nack.mutable_error_detail()->set_message("cluster outbound|9000|v3|echo: rejected by test");
  REQUIRE(stream->Write(nack));

  // The gRPC client moves to v2 regardless.
  REQUIRE(testing::WaitFor([&] { return !probe.running(); }, std::chrono::seconds(15)));
  CHECK(absl::StrContains(probe.Log(), "switched"));

  json nacker, prober;
  REQUIRE(testing::WaitFor(
      [&] {
        json syncz = json::parse(mesh.pilot.Client().Get("/debug/syncz")->body);
        for (const json& s : syncz) {
          if (s["id"] == "nacker") nacker = s;
        }
        return nacker.is_object() && nacker["types"][cds]["nack"] != "";
      },
      std::chrono::seconds(5)));
  CHECK(nacker["types"][cds]["nack"] == "cluster outbound|9000|v3|echo: rejected by test");
  CHECK(nacker["types"][cds]["acked"] == first.version_info());
  CHECK(nacker["types"][cds]["sent"] == second.version_info());
  auto metrics = mesh.pilot.Client().Get("/metrics");
  CHECK(absl::StrContains(metrics->body, "meshpilot_xds_nacks_total 1\n"));
  ctx.TryCancel();
}

}  // namespace
}  // namespace mesh

namespace mesh {
namespace {

using model_labels_t = std::map<std::string, std::string>;

// A raw ADS stream, for the tests that play a proxy by hand.
struct RawStream {
  RawStream(int xds_port, const std::string& id, const std::map<std::string, std::string>& meta,
            const model_labels_t& labels = {}) {
    channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", xds_port),
                                  grpc::InsecureChannelCredentials());
    stub = AggregatedDiscoveryService::NewStub(channel);
    stream = stub->StreamAggregatedResources(&ctx);
    node.set_id(id);
    auto& fields = *node.mutable_metadata()->mutable_fields();
    for (const auto& [k, v] : meta) fields[k].set_string_value(v);
    auto& label_fields = *fields["LABELS"].mutable_struct_value()->mutable_fields();
    for (const auto& [k, v] : labels) label_fields[k].set_string_value(v);
  }
  bool Subscribe(const std::string& type, const std::vector<std::string>& names) {
    DiscoveryRequest req;
    *req.mutable_node() = node;
    req.set_type_url(type);
    for (const auto& n : names) req.add_resource_names(n);
    return stream->Write(req);
  }
  // Istio's health report: this workload can serve (or, with a reason, cannot).
  bool ReportHealth(const std::string& unhealthy_reason = "") {
    DiscoveryRequest req;
    req.set_type_url("istio.io/health");
    if (!unhealthy_reason.empty()) req.mutable_error_detail()->set_message(unhealthy_reason);
    return stream->Write(req);
  }
  bool Ack(const DiscoveryResponse& res, const std::vector<std::string>& names) {
    DiscoveryRequest req;
    req.set_type_url(res.type_url());
    req.set_version_info(res.version_info());
    req.set_response_nonce(res.nonce());
    for (const auto& n : names) req.add_resource_names(n);
    return stream->Write(req);
  }
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<AggregatedDiscoveryService::Stub> stub;
  grpc::ClientContext ctx;
  std::unique_ptr<grpc::ClientReaderWriter<DiscoveryRequest, DiscoveryResponse>> stream;
  envoy::config::core::v3::Node node;
};

TEST_CASE(
    "A connected sidecar becomes an endpoint of the services that select it, and leaves after the "
    "grace period") {
  Backend v1("v1");
  testing::TempDir dir;
  testing::MeshpilotProcess pilot(
      MESHPILOT_BIN, dir.path() + "/data",
      // Hand-written plaintext streams stand in for sidecars here; registration without an
      // identity has to be allowed for them (the identity tests run real proxies over TLS).
      {"--debounce", "20ms", "--debounce-max", "200ms", "--workload-grace", "300ms",
       "--allow-plaintext-registration"});
  REQUIRE(pilot.Start());
  REQUIRE(pilot.Client()
              .Post("/apply?namespace=default",
                    "apiVersion: v1\nkind: Service\nmetadata: {name: echo}\n"
                    "spec: {selector: {app: echo}, ports: [{name: grpc, port: 9000}]}\n",
                    "application/yaml")
              ->status == 200);
  const std::string eds = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
  const std::string cluster = "outbound|9000||echo.default.svc.cluster.local";
  RawStream watcher(pilot.xds_port(), "watcher", {{"NAMESPACE", "default"}});
  REQUIRE(watcher.Subscribe(eds, {cluster}));
  DiscoveryResponse res;
  REQUIRE(watcher.stream->Read(&res));
  auto endpoint_count = [](const DiscoveryResponse& r) {
    envoy::config::endpoint::v3::ClusterLoadAssignment cla;
    if (r.resources_size() != 1 || !r.resources(0).UnpackTo(&cla)) return -1;
    int n = 0;
    for (const auto& group : cla.endpoints()) n += group.lb_endpoints_size();
    return n;
  };
  CHECK(endpoint_count(res) == 0);
  REQUIRE(watcher.Ack(res, {cluster}));

  // Poisoned registrations (port 0, a port over 65535, an address that is no IP) never reach
  // EDS: the first endpoint the watcher sees is the good sidecar's.
  std::vector<std::unique_ptr<RawStream>> poisoned;
  for (const auto& [ips, ports] : std::vector<std::pair<std::string, std::string>>{
           {"127.0.0.1", "9000=0"}, {"127.0.0.1", "9000=70000"}, {"echo.example", "9000=9000"}}) {
    poisoned.push_back(
        std::make_unique<RawStream>(pilot.xds_port(), "poison-" + ports,
                                    std::map<std::string, std::string>{{"ROLE", "sidecar"},
                                                                       {"NAMESPACE", "default"},
                                                                       {"INSTANCE_IPS", ips},
                                                                       {"INBOUND_PORTS", ports}},
                                    model_labels_t{{"app", "echo"}}));
    REQUIRE(poisoned.back()->Subscribe("type.googleapis.com/envoy.config.cluster.v3.Cluster", {}));
  }
  auto registrations = [&] { return pilot.Registrations(); };
  REQUIRE(testing::WaitFor([&] { return registrations().size() == 4; }, std::chrono::seconds(5)));
  std::map<std::string, std::string> reasons = registrations();
  CHECK(reasons["poison-9000=0"] ==
        "not registered: metadata.INBOUND_PORTS[0] \"9000=0\": ports must be between 1 and 65535");
  CHECK(reasons["poison-9000=70000"] ==
        "not registered: metadata.INBOUND_PORTS[0] \"9000=70000\": ports must be between 1 and "
        "65535");
  CHECK(reasons["poison-9000=9000"] ==
        "not registered: metadata.INSTANCE_IPS[0] \"echo.example\": not an IP address");

  auto sidecar = std::make_unique<RawStream>(
      pilot.xds_port(), "echo-v1-sidecar",
      std::map<std::string, std::string>{{"ROLE", "sidecar"},
                                         {"NAMESPACE", "default"},
                                         {"INSTANCE_IPS", "127.0.0.1"},
                                         {"INBOUND_PORTS", absl::StrCat("9000=", v1.port)}},
      model_labels_t{{"app", "echo"}, {"version", "v1"}});
  REQUIRE(sidecar->Subscribe("type.googleapis.com/envoy.config.cluster.v3.Cluster", {}));
  // Registered, but not in anyone's load balancing until it reports itself healthy.
  REQUIRE(watcher.stream->Read(&res));
  REQUIRE(endpoint_count(res) == 1);
  auto health_of = [](const DiscoveryResponse& r) {
    envoy::config::endpoint::v3::ClusterLoadAssignment cla;
    r.resources(0).UnpackTo(&cla);
    return cla.endpoints(0).lb_endpoints(0).health_status();
  };
  CHECK(health_of(res) == envoy::config::core::v3::UNHEALTHY);
  REQUIRE(watcher.Ack(res, {cluster}));
  REQUIRE(sidecar->ReportHealth());
  REQUIRE(watcher.stream->Read(&res));
  REQUIRE(endpoint_count(res) == 1);
  CHECK(health_of(res) == envoy::config::core::v3::HEALTHY);
  envoy::config::endpoint::v3::ClusterLoadAssignment cla;
  res.resources(0).UnpackTo(&cla);
  CHECK(cla.endpoints(0).lb_endpoints(0).endpoint().address().socket_address().port_value() ==
        static_cast<uint32_t>(v1.port));
  REQUIRE(watcher.Ack(res, {cluster}));

  // gRPC's client reaches the backend through the auto-registered endpoint.
  std::string bootstrap =
      json{{"xds_servers",
            {{{"server_uri", absl::StrCat("127.0.0.1:", pilot.xds_port())},
              {"channel_creds", {{{"type", "insecure"}}}},
              {"server_features", {"xds_v3"}}}}},
           {"node", {{"id", "probe"}, {"metadata", {{"NAMESPACE", "default"}}}}}}
          .dump();
  testing::CommandResult r = testing::RunCommand({XDS_PROBE_BIN, kTarget, "count", "20"}, "",
                                                 {"GRPC_XDS_BOOTSTRAP_CONFIG=" + bootstrap});
  CHECK(absl::StrContains(r.out, "v1 20\n"));

  auto closed = std::chrono::steady_clock::now();
  sidecar->ctx.TryCancel();
  sidecar.reset();
  REQUIRE(watcher.stream->Read(&res));
  double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - closed).count();
  CHECK(endpoint_count(res) == 0);
  CHECK(waited >= 0.25);  // the grace period, not the disconnect, removed it
  watcher.ctx.TryCancel();
}

}  // namespace
}  // namespace mesh

namespace mesh {
namespace {

TEST_CASE(
    "Names subscribed before they exist are answered when they appear, clusters before endpoints, "
    "listeners before routes, and only changes are pushed") {
  testing::TempDir dir;
  testing::MeshpilotProcess pilot(MESHPILOT_BIN, dir.path() + "/data",
                                  {"--debounce", "20ms", "--debounce-max", "200ms"});
  REQUIRE(pilot.Start());
  const std::string lds = "type.googleapis.com/envoy.config.listener.v3.Listener";
  const std::string rds = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
  const std::string cds = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
  const std::string eds = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
  const std::string name = "late.default.svc.cluster.local:80";
  const std::string cluster = "outbound|80||late.default.svc.cluster.local";
  RawStream s(pilot.xds_port(), "early", {{"NAMESPACE", "default"}});
  std::map<std::string, std::vector<std::string>> names = {
      {lds, {name}}, {rds, {name}}, {cds, {cluster}}, {eds, {cluster}}};
  for (const auto& type : {cds, eds, lds, rds}) {
    REQUIRE(s.Subscribe(type, names[type]));
    DiscoveryResponse res;
    REQUIRE(s.stream->Read(&res));
    CHECK(res.type_url() == type);
    CHECK(res.resources_size() == 0);  // nothing of that name yet
    REQUIRE(s.Ack(res, names[type]));
  }
  REQUIRE(pilot.Client()
              .Post("/apply?namespace=default",
                    "apiVersion: v1\nkind: Service\nmetadata: {name: late}\nspec: {ports: [{name: "
                    "http, port: 80}]}\n",
                    "application/yaml")
              ->status == 200);
  std::vector<std::string> order;
  for (int i = 0; i < 4; ++i) {
    DiscoveryResponse res;
    REQUIRE(s.stream->Read(&res));
    CHECK(res.resources_size() == 1);
    order.push_back(res.type_url());
    REQUIRE(s.Ack(res, names[res.type_url()]));
  }
  CHECK(order == std::vector<std::string>{cds, eds, lds, rds});

  // A change elsewhere pushes nothing to this stream: its sent versions stay where they were.
  REQUIRE(pilot.Client()
              .Post("/apply?namespace=default",
                    "apiVersion: v1\nkind: Service\nmetadata: {name: other}\nspec: {ports: [{name: "
                    "http, port: 80}]}\n",
                    "application/yaml")
              ->status == 200);
  json stream_state;
  REQUIRE(testing::WaitFor(
      [&] {
        json syncz = json::parse(pilot.Client().Get("/debug/syncz")->body);
        stream_state = syncz[0];
        return stream_state["version"] == "2";  // the stream's class has moved to revision 2
      },
      std::chrono::seconds(5)));
  for (const auto& type : {cds, eds, lds, rds}) {
    INFO(type);
    CHECK(stream_state["types"][type]["sent"] == "1");
    CHECK(stream_state["types"][type]["acked"] == "1");
  }
  s.ctx.TryCancel();
}

}  // namespace
}  // namespace mesh

namespace mesh {
namespace {

TEST_CASE(
    "meshproxy's xDS client syncs a gateway's config, skipping a dead control plane first in its "
    "list") {
  testing::TempDir dir;
  testing::MeshpilotProcess pilot(MESHPILOT_BIN, dir.path() + "/data", {"--debounce", "20ms"});
  REQUIRE(pilot.Start());
  const std::string m = MESH_MANIFESTS_DIR;
  for (const std::string& f : testing::VotingAppSteps()[0]) {
    REQUIRE(pilot.Client()
                .Post("/apply?namespace=voting", testing::ReadText(m + "/" + f), "application/yaml")
                ->status == 200);
  }
  envoy::config::core::v3::Node node;
  node.set_id("ingress-1");
  auto& fields = *node.mutable_metadata()->mutable_fields();
  fields["ROLE"].set_string_value("gateway");
  fields["NAMESPACE"].set_string_value("istio-system");
  (*fields["LABELS"].mutable_struct_value()->mutable_fields())["istio"].set_string_value(
      "ingressgateway");
  std::mutex mu;
  dataplane::ProxyConfigPtr latest;
  dataplane::XdsClient client(node, [&](dataplane::ProxyConfigPtr c) {
    std::lock_guard lock(mu);
    latest = c;
    return absl::OkStatus();
  });
  int dead = testing::FreePort();
  dataplane::AdsConnection::Options options;
  options.initial_backoff = absl::Milliseconds(20);
  dataplane::AdsConnection connection(
      {absl::StrCat("127.0.0.1:", dead), absl::StrCat("127.0.0.1:", pilot.xds_port())}, &client,
      options);
  connection.Start();
  auto synced = [&] {
    std::lock_guard lock(mu);
    return latest && latest->routes.count("http.80") && latest->clusters.size() == 3 &&
           latest->endpoints.size() == 3;
  };
  REQUIRE(testing::WaitFor(synced, std::chrono::seconds(10)));
  CHECK(connection.connected_to() == absl::StrCat("127.0.0.1:", pilot.xds_port()));
  {
    std::lock_guard lock(mu);
    CHECK(latest->listeners.count("0.0.0.0_80") == 1);
    const dataplane::Route* r = latest->routes.at("http.80")->Match({"GET", "20.0.0.1", "/", {}});
    REQUIRE(r != nullptr);
    CHECK(r->targets[0].cluster == "outbound|8080||voting-app.voting.svc.cluster.local");
  }
  // The control plane sees every type acknowledged.
  REQUIRE(testing::WaitFor(
      [&] {
        testing::CommandResult status = testing::RunCommand(
            {MESHCTL_BIN, "--server", pilot.address(), "--token", pilot.token(), "proxy-status"});
        return absl::StrContains(status.out, "ingress-1") &&
               absl::StrContains(status.out, "SYNCED   SYNCED   SYNCED   SYNCED");
      },
      std::chrono::seconds(5)));
  CHECK(client.stats().rejected == 0);

  // meshpilot stops: the proxy keeps its config; meshpilot returns: it resyncs.
  pilot.Kill();
  REQUIRE(testing::WaitFor(
      [&] {
        return connection.connected_to().empty() ||
               connection.connected_to().find(std::to_string(dead)) != std::string::npos;
      },
      std::chrono::seconds(5)));
  CHECK(client.current()->routes.count("http.80") == 1);
  connection.Stop();
}

}  // namespace
}  // namespace mesh

namespace mesh {
namespace {

TEST_CASE(
    "A stream that never takes its responses is closed after the send timeout, and keeps "
    "only its latest response per type meanwhile") {
  testing::TempDir dir;
  testing::MeshpilotProcess pilot(MESHPILOT_BIN, dir.path() + "/data",
                                  {"--debounce", "10ms", "--xds-send-timeout", "1s"});
  REQUIRE(pilot.Start());
  // Enough clusters that a few state-of-the-world pushes overflow gRPC's flow-control windows.
  auto services = [](int port) {
    std::string yaml;
    for (int i = 0; i < 300; ++i) {
      absl::StrAppend(&yaml, "---\napiVersion: v1\nkind: Service\nmetadata: {name: svc-", i,
                      "}\nspec: {selector: {app: a", i, "}, ports: [{name: http, port: ", port,
                      "}, {name: http-admin-port-with-a-long-name, port: ", port + 1, "}]}\n");
    }
    return yaml;
  };
  auto apply = [&](int port) {
    auto res = pilot.Client().Post("/apply?namespace=default", services(port), "application/yaml");
    return res && res->status == 200;
  };
  REQUIRE(apply(8000));
  RawStream stuck(pilot.xds_port(), "stuck", {{"NAMESPACE", "default"}});
  REQUIRE(stuck.Subscribe("type.googleapis.com/envoy.config.cluster.v3.Cluster", {}));
  // Never read; keep the config changing.
  for (int i = 1; i <= 40; ++i) {
    REQUIRE(apply(8000 + 2 * i));
    std::this_thread::sleep_for(std::chrono::milliseconds(60));
  }
  auto syncz = [&] { return pilot.Client().Get("/debug/syncz")->body; };
  int next = 9000;
  REQUIRE(testing::WaitFor(
      [&] {
        if (!apply(next += 2)) return false;
        return !absl::StrContains(syncz(), "\"stuck\"");
      },
      std::chrono::seconds(10)));
  CHECK(absl::StrContains(pilot.Client().Get("/metrics")->body,
                          "meshpilot_xds_stalled_streams_total 1"));
  CHECK(absl::StrContains(pilot.Log(), "xds: node stuck"));
  // The client sees its stream end.
  DiscoveryResponse res;
  while (stuck.stream->Read(&res)) {
  }
  CHECK_FALSE(stuck.stream->Finish().ok());
}

}  // namespace
}  // namespace mesh
