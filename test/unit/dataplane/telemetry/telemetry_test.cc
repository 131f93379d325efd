#include <catch2/catch.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "dataplane/telemetry/istio_metrics.h"
#include "dataplane/telemetry/peer.h"
#include "dataplane/telemetry/request_telemetry.h"

namespace mesh::dataplane::telemetry {
namespace {

LocalWorkload Local(const std::string& workload, const std::string& ns,
                    std::map<std::string, std::string> labels, bool sidecar = true) {
  LocalWorkload local;
  local.peer = PeerFromLabels(workload, ns, labels, "Kubernetes", "default");
  local.principal = absl::StrCat("spiffe://cluster.local/ns/", ns, "/sa/default");
  local.sidecar = sidecar;
  local.metadata = EncodePeerMetadata(local.peer, workload + "-1");
  local.metadata_id = PeerMetadataId("sidecar", "10.0.0.1", workload + "-1", ns);
  return local;
}

// The one istio_requests_total line of `text` (empty when there is not exactly one).
std::string RequestsLine(const std::string& text) {
  std::string found;
  int n = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::StartsWith(line, "istio_requests_total{")) {
      found = std::string(line);
      ++n;
    }
  }
  return n == 1 ? found : "";
}

TEST_CASE("Telemetry: canonical names follow Istio's label precedence") {
  PeerInfo p = PeerFromLabels("reviews-v2", "bookinfo", {{"app", "reviews"}, {"version", "v2"}},
                              "Kubernetes");
  CHECK(p.canonical_service == "reviews");
  CHECK(p.canonical_revision == "v2");
  p = PeerFromLabels("w", "ns",
                     {{"app", "a"},
                      {"app.kubernetes.io/name", "k8s-name"},
                      {"service.istio.io/canonical-name", "canon"},
                      {"app.kubernetes.io/version", "3"}},
                     "c");
  CHECK(p.canonical_service == "canon");
  CHECK(p.canonical_revision == "3");
  p = PeerFromLabels("lonely", "ns", {}, "c");
  CHECK(p.canonical_service == "lonely");
  CHECK(p.canonical_revision == "latest");
  CHECK(p.app.empty());
}

TEST_CASE("Telemetry: peer metadata round-trips, and bad values are refused") {
  PeerInfo p = PeerFromLabels("voting-app", "voting", {{"app", "voting-app"}, {"version", "1.0"}},
                              "Kubernetes", "voting-sa");
  std::optional<PeerInfo> back = DecodePeerMetadata(EncodePeerMetadata(p, "voting-app-1"));
  REQUIRE(back);
  CHECK(*back == p);
  CHECK(PeerMetadataId("sidecar", "10.1.1.1", "voting-app-1", "voting") ==
        "sidecar~10.1.1.1~voting-app-1.voting~voting.svc.cluster.local");
  CHECK_FALSE(DecodePeerMetadata(""));
  CHECK_FALSE(DecodePeerMetadata("***not base64***"));
  CHECK_FALSE(DecodePeerMetadata("aGVsbG8gd29ybGQ="));  // base64, not a Struct with a name
  CHECK_FALSE(DecodePeerMetadata(std::string(kMaxPeerMetadataBytes + 4, 'A')));

  PeerCache cache(2);
  std::string a = EncodePeerMetadata(PeerFromLabels("a", "ns", {}, "c"), "a-1");
  std::string b = EncodePeerMetadata(PeerFromLabels("b", "ns", {}, "c"), "b-1");
  std::string c = EncodePeerMetadata(PeerFromLabels("c", "ns", {}, "c"), "c-1");
  PeerInfoPtr first = cache.Decode(a);
  REQUIRE(first);
  CHECK(cache.Decode(a) == first);  // decoded once
  CHECK(cache.Decode(b)->workload == "b");
  CHECK(cache.Decode(c)->workload == "c");  // full: starts over
  CHECK(cache.resets() == 1);
  CHECK(cache.Decode("junk") == nullptr);
  CHECK(cache.invalid() == 1);
}

TEST_CASE("Telemetry: Istio's EDS workload metadata round-trips") {
  PeerInfo p =
      PeerFromLabels("echo-v1", "default", {{"app", "echo"}, {"version", "v1"}}, "Kubernetes");
  CHECK(EndpointWorkloadField(p) == "echo-v1;default;echo;v1;Kubernetes");
  std::optional<PeerInfo> back = PeerFromEndpointWorkload(EndpointWorkloadField(p));
  REQUIRE(back);
  CHECK(back->workload == "echo-v1");
  CHECK(back->canonical_revision == "v1");
  CHECK_FALSE(PeerFromEndpointWorkload("a;b;c"));
  CHECK_FALSE(PeerFromEndpointWorkload(";ns;s;r;c"));
}

TEST_CASE("Telemetry: gRPC messages are counted across arbitrary splits") {
  std::string body;
  for (int len : {0, 3, 70000}) {
    body += std::string{0, char(len >> 24), char((len >> 16) & 0xff), char((len >> 8) & 0xff),
                        char(len & 0xff)};
    body += std::string(len, 'x');
  }
  for (size_t step : {1u, 2u, 5u, 7u, 4096u, 100000u}) {
    GrpcMessageCounter counter;
    for (size_t i = 0; i < body.size(); i += step)
      counter.Feed(absl::string_view(body).substr(i, step));
    INFO("step " << step);
    CHECK(counter.messages() == 3);
  }
}

TEST_CASE(
    "Telemetry: the inbound side reads the caller, answers with itself, reports destination") {
  LocalWorkload server =
      Local("voting-analytics", "voting", {{"app", "voting-analytics"}, {"version", "1.0"}});
  LocalWorkload client = Local("voting-app", "voting", {{"app", "voting-app"}, {"version", "1.0"}});
  PeerCache peers;
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  RequestTelemetry t(server, peers, /*inbound=*/true, t0);
  HeaderMap request;
  request.Add(kPeerMetadataHeader, client.metadata);
  request.Add(kPeerMetadataIdHeader, client.metadata_id);
  t.OnRequestHead(request, "voting-analytics:8080", false);
  CHECK(request.Get(kPeerMetadataHeader) == nullptr);  // the app never sees them
  CHECK(request.Get(kPeerMetadataIdHeader) == nullptr);
  t.OnRequestBody("12345");
  HeaderMap response;
  t.OnResponseHead(200, response, nullptr);
  REQUIRE(response.Get(kPeerMetadataHeader));
  CHECK(*response.Get(kPeerMetadataHeader) == server.metadata);
  t.OnResponseBody("abc");
  IstioMetrics metrics;
  t.Record(t0 + absl::Milliseconds(7), client.principal, &metrics);
  const std::string text = metrics.Render("proxy", "1.0");
  const std::string line = RequestsLine(text);
  INFO(text);
  CHECK(line ==
        "istio_requests_total{reporter=\"destination\",source_workload=\"voting-app\","
        "source_workload_namespace=\"voting\",source_principal=\"spiffe://cluster.local/ns/"
        "voting/sa/default\",source_app=\"voting-app\",source_version=\"1.0\","
        "source_canonical_service=\"voting-app\",source_canonical_revision=\"1.0\","
        "source_cluster=\"Kubernetes\",destination_workload=\"voting-analytics\","
        "destination_workload_namespace=\"voting\",destination_principal=\"spiffe://"
        "cluster.local/ns/voting/sa/default\",destination_app=\"voting-analytics\","
        "destination_version=\"1.0\",destination_canonical_service=\"voting-analytics\","
        "destination_canonical_revision=\"1.0\",destination_cluster=\"Kubernetes\","
        "destination_service=\"voting-analytics.voting.svc.cluster.local\","
        "destination_service_name=\"voting-analytics\",destination_service_namespace=\"voting\","
        "request_protocol=\"http\",response_code=\"200\",grpc_response_status=\"\","
        "response_flags=\"-\",connection_security_policy=\"mutual_tls\"} 1");
  CHECK(absl::StrContains(text, "istio_request_duration_milliseconds_bucket{"));
  CHECK(absl::StrContains(text, "le=\"10\"} 1\n"));  // 7 ms
  CHECK(absl::StrContains(text, "istio_build{component=\"proxy\",tag=\"1.0\"} 1\n"));
}

TEST_CASE("Telemetry: the outbound side sends itself, learns the destination, reports source") {
  LocalWorkload client = Local("voting-app", "voting", {{"app", "voting-app"}});
  LocalWorkload server = Local("voting-analytics", "voting", {{"app", "voting-analytics"}});
  PeerCache peers;
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  {
    RequestTelemetry t(client, peers, false, t0);
    HeaderMap request;
    request.Add(kPeerMetadataHeader, server.metadata);  // an app cannot pass itself off
    t.OnRequestHead(request, "voting-analytics", false);
    CHECK(request.Get(kPeerMetadataHeader) == nullptr);
    t.OnUpstreamHead(request, "outbound|8080||voting-analytics.voting.svc.cluster.local");
    REQUIRE(request.Get(kPeerMetadataHeader));
    CHECK(*request.Get(kPeerMetadataHeader) == client.metadata);
    HeaderMap response;
    response.Add(kPeerMetadataHeader, server.metadata);
    response.Add(kPeerMetadataIdHeader, server.metadata_id);
    t.OnResponseHead(503, response, nullptr);
    CHECK(response.Get(kPeerMetadataHeader) == nullptr);
    IstioMetrics metrics;
    t.Record(t0, "", &metrics);
    const std::string line = RequestsLine(metrics.Render("proxy", "1"));
    CHECK(absl::StrContains(line, "reporter=\"source\",source_workload=\"voting-app\""));
    CHECK(absl::StrContains(line, "destination_workload=\"voting-analytics\""));
    CHECK(absl::StrContains(line, "destination_service_name=\"voting-analytics\""));
    CHECK(absl::StrContains(line, "response_code=\"503\""));
    CHECK(absl::StrContains(line, "connection_security_policy=\"unknown\""));
  }
  {
    // A destination without a sidecar: EDS names it. A fault abort: flag FI, gRPC status kept.
    RequestTelemetry t(client, peers, false, t0);
    HeaderMap request;
    t.OnRequestHead(request, "echo", true);
    t.OnUpstreamHead(request, "outbound|9000|v1|echo.default.svc.cluster.local");
    PeerInfo echo = PeerFromLabels("echo-v1", "default", {{"app", "echo"}}, "Kubernetes");
    HeaderMap response;
    t.OnResponseHead(200, response, &echo);
    HeaderMap trailers;
    trailers.Add("grpc-status", "14");
    t.OnResponseTrailers(trailers);
    t.AddFlag("DI");
    t.AddFlag("DI");
    IstioMetrics metrics;
    t.Record(t0, "", &metrics);
    const std::string text = metrics.Render("proxy", "1");
    const std::string line = RequestsLine(text);
    CHECK(absl::StrContains(line, "destination_workload=\"echo-v1\""));
    CHECK(absl::StrContains(line, "request_protocol=\"grpc\""));
    CHECK(absl::StrContains(line, "grpc_response_status=\"14\""));
    CHECK(absl::StrContains(line, "response_flags=\"DI\""));
    CHECK(absl::StrContains(text, "istio_request_messages_total{"));
  }
  {
    RequestTelemetry t(client, peers, false, t0);
    HeaderMap request;
    t.OnRequestHead(request, "nowhere", false);
    t.OnLocalReply(404, nullptr, 20, "NR");
    IstioMetrics metrics;
    t.Record(t0, "", &metrics);
    const std::string line = RequestsLine(metrics.Render("proxy", "1"));
    CHECK(absl::StrContains(line, "destination_workload=\"unknown\""));
    CHECK(absl::StrContains(line, "destination_service=\"unknown\""));
    CHECK(absl::StrContains(line,
                            "response_code=\"404\",grpc_response_status=\"\","
                            "response_flags=\"NR\""));
  }
}

TEST_CASE("Telemetry: series are capped per worker, what the cap turns away is counted") {
  IstioMetrics metrics(2);
  PeerInfo a = PeerFromLabels("a", "ns", {}, "c");
  for (int code : {200, 201, 202, 200}) {
    RequestRecord r;
    r.source = &a;
    r.response_code = code;
    metrics.Record(r);
  }
  TcpRecord tcp;
  tcp.opened = true;
  metrics.Record(tcp);
  CHECK(metrics.series() == 2);
  CHECK(metrics.dropped() == 2);  // 202 and the TCP connection
  IstioMetrics merged;
  merged.Merge(metrics);
  merged.Merge(metrics);
  CHECK(absl::StrContains(merged.Render("proxy", "1"), "response_code=\"200\""));
  CHECK(merged.dropped() == 4);
}

TEST_CASE("Telemetry: TCP connections are counted with bytes each way") {
  IstioMetrics metrics;
  LocalWorkload server = Local("redis", "foo", {{"app", "redis"}});
  TcpRecord r;
  r.reporter = Reporter::kDestination;
  r.destination = &server.peer;
  r.source_principal = "spiffe://cluster.local/ns/foo/sa/sleep";
  r.connection_security_policy = "mutual_tls";
  r.opened = true;
  r.received_bytes = 14;
  metrics.Record(r);
  r.opened = false;
  r.closed = true;
  r.received_bytes = 0;
  r.sent_bytes = 7;
  metrics.Record(r);
  const std::string text = metrics.Render("proxy", "1");
  INFO(text);
  for (const char* expect :
       {"istio_tcp_connections_opened_total{", "istio_tcp_connections_closed_total{",
        "istio_tcp_received_bytes_total{", "istio_tcp_sent_bytes_total{"}) {
    CHECK(absl::StrContains(text, expect));
  }
  CHECK(absl::StrContains(text,
                          "request_protocol=\"tcp\",response_flags=\"-\","
                          "connection_security_policy=\"mutual_tls\"} 14\n"));
}

}  // namespace
}  // namespace mesh::dataplane::telemetry
