#include "dataplane/http/connection_manager.h"

#include <catch2/catch.hpp>

#include "envoy/config/cluster/v3/cluster.pb.h"
#include "envoy/config/route/v3/route.pb.h"
#include "google/protobuf/text_format.h"
#include "test/unit/dataplane/fake_pools.h"
#include "test/unit/dataplane/fake_time_source.h"

namespace mesh::dataplane {
namespace {

using testing::FakePools;
using testing::Log;

// The worker, as the HTTP layer sees it: one route table, one cluster "web" with one host, a
// clock and pools the test drives.
class FakeContext : public HttpContext {
 public:
  FakeContext() {
    envoy::config::route::v3::RouteConfiguration rc;
    REQUIRE(google::protobuf::TextFormat::ParseFromString(
        R"(name: "http.80" virtual_hosts { name: "all" domains: "*"
             routes { name: "web" match { prefix: "/" } route { cluster: "web" } } })",
        &rc));
    auto routes = RouteTable::FromProto(rc);
    REQUIRE(routes.ok());
    routes_ = *routes;
    ProxyConfig config;
    envoy::config::cluster::v3::Cluster c;
    c.set_name("web");
    c.set_type(envoy::config::cluster::v3::Cluster::EDS);
    config.clusters["web"] = c;
    envoy::config::endpoint::v3::ClusterLoadAssignment cla;
    cla.set_cluster_name("web");
    auto* addr = cla.add_endpoints()
                     ->add_lb_endpoints()
                     ->mutable_endpoint()
                     ->mutable_address()
                     ->mutable_socket_address();
    addr->set_address("10.0.0.1");
    addr->set_port_value(8080);
    config.endpoints["web"] = cla;
    auto clusters = ClusterTable::Build(config, nullptr);
    REQUIRE(clusters.ok());
    clusters_ = *clusters;
  }
  Routing RoutingFor(const ListenerConfig&) override {
    return {clusters_, routes_.get(), clusters_.get()};
  }
  TimeSource& time() override { return time_; }
  ConnectionSource& pools() override { return pools_; }
  WorkerStats& stats() override { return stats_; }
  uint64_t Random() override { return ++random_; }
  const telemetry::LocalWorkload& local_workload() override { return local_; }
  telemetry::PeerCache& peer_cache() override { return peers_; }

  testing::FakeTimeSource time_;
  FakePools pools_;
  telemetry::LocalWorkload local_;
  telemetry::PeerCache peers_;

 private:
  RouteTablePtr routes_;
  ClusterTablePtr clusters_;
  WorkerStats stats_;
  uint64_t random_ = 0;
};

// The client's side of one stream: what the connection manager answers, in the test's log.
class FakeResponseEncoder : public ResponseEncoder, public Stream {
 public:
  explicit FakeResponseEncoder(Log& log) : log_(log) {}
  Stream& stream() override { return *this; }
  void EncodeHeaders(const ResponseHead& head, bool end) override {
    const std::string* grpc = head.headers.Get("grpc-status");
    log_.push_back(absl::StrCat("client: ", head.status, grpc ? " grpc-status " + *grpc : "",
                                end ? " END" : ""));
  }
  void EncodeData(absl::string_view data, bool end) override {
    log_.push_back(absl::StrCat("client: data ", data, end ? " END" : ""));
  }
  void EncodeTrailers(const HeaderMap&) override { log_.push_back("client: trailers"); }
  void SetCallbacks(StreamCallbacks*) override {}
  void Reset(ResetReason) override { log_.push_back("client: reset"); }
  void ReadDisable(bool) override {}
  size_t BufferedBytes() const override { return 0; }

 private:
  Log& log_;
};

struct Fixture {
  Fixture() {
    listener.name = "http.80";
    manager = std::make_unique<ConnectionManager>(context, listener, DownstreamInfo{},
                                                  ConnectionManager::Settings{});
  }
  // A request for "/" opened on the manager; ended with its head when `end`.
  RequestDecoder& Open(bool end, const std::string& content_type = "") {
    RequestDecoder& decoder = manager->NewStream(client);
    auto head = std::make_unique<RequestHead>();
    head->method = "POST";
    head->authority = "web";
    head->path = "/";
    if (!content_type.empty()) head->headers.Add("content-type", content_type);
    decoder.DecodeHeaders(std::move(head), end);
    return decoder;
  }
  void Advance(absl::Duration d) {
    context.time_.Advance(d);
    manager->CheckIdleStreams(context.time_.Now());
    manager->Cleanup();
  }
  static ResponseHeadPtr Status(int status) {
    auto head = std::make_unique<ResponseHead>();
    head->status = status;
    return head;
  }

  FakeContext context;
  ListenerConfig listener;
  Log log;
  FakeResponseEncoder client{log};
  std::unique_ptr<ConnectionManager> manager;
};

TEST_CASE("Stream idle timeout: a request waiting on its upstream gets 408 at the timeout") {
  Fixture f;
  f.Open(true);
  REQUIRE(f.context.pools_.requests.size() == 1);
  f.Advance(absl::Minutes(4));
  CHECK(f.log.empty());
  CHECK(f.manager->active_streams() == 1);
  f.Advance(absl::Minutes(1));  // Envoy's default: 5 minutes
  CHECK(f.log == Log{"client: 408", "client: data stream timeout\n END"});
  CHECK(f.context.pools_.requests.front().cancelled);  // the wait for a connection ends too
  CHECK(f.manager->active_streams() == 0);
}

TEST_CASE("Stream idle timeout: bytes either way keep a stream alive, and the count restarts") {
  Fixture f;
  f.listener.stream_idle_timeout = absl::Seconds(10);
  RequestDecoder& request = f.Open(false);
  Log upstream;
  testing::FakeEncoder& encoder = f.context.pools_.Ready(upstream);
  for (int i = 0; i < 5; ++i) {
    f.Advance(absl::Seconds(8));
    request.DecodeData("chunk", false);  // the client keeps sending
  }
  auto* decoder = f.context.pools_.requests.back().decoder;
  decoder->DecodeHeaders(Fixture::Status(200), false);
  for (int i = 0; i < 5; ++i) {
    f.Advance(absl::Seconds(8));
    decoder->DecodeData("part", false);  // the upstream keeps answering
  }
  CHECK(f.log.size() == 6);  // the head and five parts, no timeout
  // Once the response has started, an idle stream is reset both ways: no second status line.
  f.Advance(absl::Seconds(10));
  CHECK(f.log.back() == "client: reset");
  CHECK(upstream.back() == "1: reset");
  CHECK(f.manager->active_streams() == 0);
  (void)encoder;
}

TEST_CASE("Stream idle timeout: a gRPC request gets the gRPC form, and 0 turns the timeout off") {
  {
    Fixture f;
    f.listener.stream_idle_timeout = absl::Seconds(30);
    f.Open(true, "application/grpc");
    f.Advance(absl::Seconds(30));
    REQUIRE(!f.log.empty());
    CHECK(f.log.front() == "client: 200 grpc-status 2 END");  // 408 maps to UNKNOWN, as Envoy
  }
  {
    Fixture f;
    f.listener.stream_idle_timeout = std::nullopt;
    f.Open(true);
    f.Advance(absl::Hours(2));
    CHECK(f.log.empty());
    CHECK(f.manager->active_streams() == 1);
  }
}

TEST_CASE("Stream idle timeout: a stream waiting for the rest of its request ends after the 408") {
  Fixture f;
  f.listener.stream_idle_timeout = absl::Seconds(10);
  RequestDecoder& request = f.Open(false);
  Log upstream;
  f.context.pools_.Ready(upstream);
  request.DecodeData("half a body", false);
  f.Advance(absl::Seconds(10));
  // The response comes first; the request never ended, so the stream is reset after it (an
  // HTTP/1.1 connection then closes, an HTTP/2 stream gets RST_STREAM).
  CHECK(f.log == Log{"client: 408", "client: data stream timeout\n END", "client: reset"});
  CHECK(upstream.back() == "1: reset");
  CHECK(f.manager->active_streams() == 0);
}

}  // namespace
}  // namespace mesh::dataplane
