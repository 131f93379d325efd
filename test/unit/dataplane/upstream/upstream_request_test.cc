#include "dataplane/upstream/upstream_request.h"

#include <catch2/catch.hpp>
#include <deque>

#include "absl/strings/str_cat.h"
#include "test/unit/dataplane/fake_pools.h"
#include "test/unit/dataplane/fake_time_source.h"

namespace mesh::dataplane {
namespace {

using testing::FakeEncoder;
using testing::FakePools;
using testing::Log;

class Downstream : public UpstreamRequestCallbacks {
 public:
  explicit Downstream(Log& log) : log_(log) {}
  void OnUpstreamHeaders(ResponseHeadPtr head, bool end) override {
    log_.push_back(absl::StrCat("client: ", head->status, end ? " END" : ""));
  }
  void OnUpstreamData(absl::string_view data, bool end) override {
    log_.push_back(absl::StrCat("client: data ", data, end ? " END" : ""));
  }
  void OnUpstreamTrailers(HeaderMap) override { log_.push_back("client: trailers"); }
  void OnUpstreamFailure(LocalReply reply) override {
    failure = reply;
    log_.push_back(absl::StrCat("client: local ", reply.status, " ", reply.body));
  }
  void OnUpstreamReset() override { log_.push_back("client: reset"); }
  void OnUpstreamWriteBlocked(bool blocked) override {
    log_.push_back(absl::StrCat("client: blocked ", blocked));
  }
  std::optional<LocalReply> failure;

 private:
  Log& log_;
};

struct Fixture {
  Fixture() {
    cluster.name = "outbound|80||web";
    cluster.state = std::make_shared<ClusterState>();
    cluster.next = std::make_shared<std::atomic<uint64_t>>(0);
    for (const char* ip : {"10.0.0.1", "10.0.0.2"}) {
      Host h;
      h.address = ip;
      h.port = 80;
      h.state = std::make_shared<HostState>();
      cluster.hosts.push_back(h);
    }
    route.name = "web";
  }
  std::unique_ptr<UpstreamRequest> Make(UpstreamRequest::Settings settings = {}) {
    auto head = std::make_unique<RequestHead>();
    head->method = "POST";
    head->path = "/orders";
    return std::make_unique<UpstreamRequest>(
        UpstreamRequest::Context{time, pools, [this] { return ++random; }, stats}, cluster, route,
        std::move(head), std::nullopt, settings, downstream);
  }
  static ResponseHeadPtr Status(int status) {
    auto head = std::make_unique<ResponseHead>();
    head->status = status;
    return head;
  }
  testing::FakeTimeSource time;
  FakePools pools;
  WorkerStats stats;
  Cluster cluster;
  Route route;
  Log log;
  Downstream downstream{log};
  uint64_t random = 0;
};

TEST_CASE("Upstream request: the request goes out and the response comes back") {
  Fixture f;
  auto request = f.Make();
  request->Start(false);
  request->SendData("abc", true);
  f.pools.Ready(f.log);
  request->DecodeHeaders(Fixture::Status(201), false);
  request->DecodeData("ok", true);
  CHECK(f.log ==
        Log{"1: headers POST /orders", "1: data abc END", "client: 201", "client: data ok END"});
  CHECK(f.cluster.state->requests == 1);
  request.reset();
  CHECK(f.cluster.state->requests == 0);
  CHECK(f.cluster.hosts[0].state->active_requests == 0);
}

TEST_CASE("Upstream request: a 503 is retried on another host, replaying the body") {
  Fixture f;
  f.route.retry = RetryPolicy{{"5xx"}, 2, std::nullopt, {}};
  auto request = f.Make();
  request->Start(false);
  request->SendData("abc", true);
  f.pools.Ready(f.log);
  const Host* first = f.pools.requests[0].host;
  request->DecodeHeaders(Fixture::Status(503), true);
  CHECK(f.log.back() == "1: reset");
  CHECK(f.pools.requests.size() == 1);  // waiting out the back-off
  CHECK(f.cluster.state->retries == 1);
  f.time.Advance(absl::Milliseconds(25));
  REQUIRE(f.pools.requests.size() == 2);
  CHECK(f.pools.requests[1].host != first);
  f.pools.Ready(f.log);
  request->DecodeHeaders(Fixture::Status(200), true);
  CHECK(f.log == Log{"1: headers POST /orders", "1: data abc END", "1: reset",
                     "2: headers POST /orders", "2: data abc END", "client: 200 END"});
  CHECK(f.cluster.state->retries == 0);
  CHECK(request->attempts() == 2);
}

TEST_CASE("Upstream request: connect failures exhaust the attempts, then 503") {
  Fixture f;
  f.route.retry = RetryPolicy{{"connect-failure"}, 2, std::nullopt, {}};
  auto request = f.Make();
  request->Start(true);
  for (int i = 0; i < 3; ++i) {
    REQUIRE(f.pools.requests.size() == static_cast<size_t>(i + 1));
    f.pools.requests.back().callbacks->OnPoolFailure(PoolCallbacks::Failure::kConnect, "refused");
    f.time.Advance(absl::Milliseconds(250));
  }
  CHECK(f.pools.requests.size() == 3);
  CHECK(f.log == Log{"client: local 503 upstream connect error or disconnect/reset before "
                     "headers. reset reason: connection failure"});
  CHECK(f.stats.upstream_connect_failures["outbound|80||web"] == 3);
}

TEST_CASE("Upstream request: per-try timeouts retry until the route's timeout answers 504") {
  Fixture f;
  f.route.timeout = absl::Seconds(1);
  f.route.retry = RetryPolicy{{"reset"}, 5, absl::Milliseconds(300), {}};
  auto request = f.Make();
  request->Start(true);
  f.pools.Ready(f.log);
  f.time.Advance(absl::Milliseconds(300));
  CHECK(f.log.back() == "1: reset");
  f.time.Advance(absl::Milliseconds(700));
  CHECK(f.log.back() == "client: local 504 upstream request timeout");
  CHECK(request->attempts() >= 2);
  CHECK(f.stats.upstream_timeouts["outbound|80||web"] >= 2);
}

TEST_CASE("Upstream request: a grpc-timeout shorter than the route's sets the deadline") {
  Fixture f;
  f.route.timeout = absl::Seconds(10);
  UpstreamRequest::Settings settings;
  settings.grpc_timeout = absl::Milliseconds(100);
  auto request = f.Make(settings);
  request->Start(true);
  f.pools.Ready(f.log);
  f.time.Advance(absl::Milliseconds(100));
  REQUIRE(f.downstream.failure.has_value());
  CHECK(f.downstream.failure->status == 504);
  CHECK(f.downstream.failure->grpc_status == 4u);  // DEADLINE_EXCEEDED
}

TEST_CASE("Upstream request: gRPC statuses are retried on the route's gRPC conditions") {
  Fixture f;
  f.route.retry = RetryPolicy{{"unavailable"}, 1, std::nullopt, {}};
  auto request = f.Make();
  request->Start(true);
  f.pools.Ready(f.log);
  auto unavailable = Fixture::Status(200);
  unavailable->headers.Add("grpc-status", "14");
  request->DecodeHeaders(std::move(unavailable), true);  // trailers-only
  f.time.Advance(absl::Milliseconds(25));
  REQUIRE(f.pools.requests.size() == 2);
  f.pools.Ready(f.log);
  auto ok = Fixture::Status(200);
  ok->headers.Add("grpc-status", "0");
  request->DecodeHeaders(std::move(ok), true);
  CHECK(f.log.back() == "client: 200 END");
}

TEST_CASE("Upstream request: a body beyond the buffer limit is streamed and never replayed") {
  Fixture f;
  f.route.retry = RetryPolicy{{"5xx"}, 2, std::nullopt, {}};
  UpstreamRequest::Settings settings;
  settings.buffer_limit = 4;
  auto request = f.Make(settings);
  request->Start(false);
  f.pools.Ready(f.log);
  request->SendData("abcdefgh", true);
  request->DecodeHeaders(Fixture::Status(503), true);
  CHECK(f.log.back() == "client: 503 END");
  CHECK(f.pools.requests.size() == 1);
}

TEST_CASE("Upstream request: a body waiting for a connection past the limit blocks the client") {
  Fixture f;
  UpstreamRequest::Settings settings;
  settings.buffer_limit = 4;
  auto request = f.Make(settings);
  request->Start(false);
  request->SendData("abcdefgh", false);
  CHECK(f.log == Log{"client: blocked 1"});
  f.pools.Ready(f.log);
  CHECK(f.log == Log{"client: blocked 1", "1: headers POST /orders", "1: data abcdefgh",
                     "client: blocked 0"});
}

TEST_CASE("Upstream request: resets before and after the response head") {
  Fixture f;
  auto before = f.Make();
  before->Start(true);
  FakeEncoder& encoder = f.pools.Ready(f.log);
  encoder.callbacks->OnReset(ResetReason::kProtocolError, "bad status");
  CHECK(f.log.back() ==
        "client: local 502 upstream connect error or disconnect/reset before headers. reset "
        "reason: protocol error (bad status)");

  Fixture g;
  auto after = g.Make();
  after->Start(true);
  FakeEncoder& streaming = g.pools.Ready(g.log);
  after->DecodeHeaders(Fixture::Status(200), false);
  streaming.callbacks->OnReset(ResetReason::kRemote, "RST_STREAM");
  CHECK(g.log.back() == "client: reset");
}

TEST_CASE("Upstream request: circuit-breaker refusals answer 503 overflow, never retried") {
  Fixture f;
  f.route.retry = RetryPolicy{{"5xx", "reset"}, 3, std::nullopt, {}};
  auto request = f.Make();
  request->Start(true);
  f.pools.requests.back().callbacks->OnPoolFailure(PoolCallbacks::Failure::kOverflow,
                                                   "max_pending_requests");
  REQUIRE(f.downstream.failure.has_value());
  CHECK(f.downstream.failure->status == 503);
  CHECK(f.downstream.failure->headers ==
        HeaderPairs{{"x-envoy-overloaded", "true"},
                    {"x-meshproxy-reason", "overflow_max_pending_requests"}});
  CHECK(f.pools.requests.size() == 1);
  CHECK(f.stats.overflows["outbound|80||web"] == 1);
}

TEST_CASE("Upstream request: cancelling stops the wait for a connection and the attempt") {
  Fixture f;
  auto waiting = f.Make();
  waiting->Start(true);
  waiting->Cancel();
  CHECK(f.pools.requests[0].cancelled);

  Fixture g;
  auto sent = g.Make();
  sent->Start(true);
  g.pools.Ready(g.log);
  sent->Cancel();
  CHECK(g.log.back() == "1: reset");
  CHECK(g.cluster.hosts[0].state->active_requests + g.cluster.hosts[1].state->active_requests == 0);
}

TEST_CASE("Upstream request: reused connections found closed are replaced, not retried") {
  Fixture f;  // no retry policy at all
  auto request = f.Make();
  request->Start(false);
  request->SendData("abc", true);
  FakeEncoder& stale = f.pools.Ready(f.log, true);
  stale.callbacks->OnReset(ResetReason::kConnectionTermination, "upstream connection closed");
  REQUIRE(f.pools.requests.size() == 2);  // at once, no back-off
  FakeEncoder& second = f.pools.Ready(f.log, true);
  CHECK(f.log[2] == "2: headers POST /orders");  // the body went again
  CHECK(f.log[3] == "2: data abc END");
  second.callbacks->OnReset(ResetReason::kConnectionTermination, "upstream connection closed");
  REQUIRE(f.pools.requests.size() == 3);
  // A draining listener closed every pooled connection: each stale one is replaced in turn...
  for (size_t i = 3; i <= 8; ++i) {
    f.pools.Ready(f.log, true).callbacks->OnReset(ResetReason::kConnectionTermination, "closed");
    REQUIRE(f.pools.requests.size() == i + 1);
  }
  // ...up to a bound: the ninth stale connection in a row fails the request.
  f.pools.Ready(f.log, true).callbacks->OnReset(ResetReason::kConnectionTermination, "closed");
  CHECK(f.pools.requests.size() == 9);
  CHECK(f.log.back() ==
        "client: local 503 upstream connect error or disconnect/reset before headers. reset "
        "reason: connection termination");

  Fixture g;  // a new connection that closes is the upstream's failure, not a race
  auto fresh = g.Make();
  fresh->Start(true);
  g.pools.Ready(g.log, false).callbacks->OnReset(ResetReason::kConnectionTermination, "closed");
  CHECK(g.pools.requests.size() == 1);
  REQUIRE(g.downstream.failure.has_value());
}

TEST_CASE("Retry state: attempts, the budget, and what counts as a failure") {
  ClusterState state;
  std::optional<RetryPolicy> policy = RetryPolicy{{"5xx"}, 2, std::nullopt, {}};
  absl::Duration backoff;
  AttemptResult failed{AttemptResult::Kind::kResponse, 503, ""};
  {
    RetryState retry(policy, state, 1);
    CHECK(retry.OnAttemptEnded(failed, true, 7, &backoff) == RetryState::Decision::kRetry);
    CHECK(backoff <= absl::Milliseconds(25));
    CHECK(state.retries == 1);
    RetryState other(policy, state, 1);  // the cluster's one retry slot is taken
    CHECK(other.OnAttemptEnded(failed, true, 7, &backoff) == RetryState::Decision::kOverflow);
    CHECK(retry.OnAttemptEnded(failed, true, 7, &backoff) == RetryState::Decision::kRetry);
    CHECK(retry.OnAttemptEnded(failed, true, 7, &backoff) == RetryState::Decision::kNoRetry);
  }
  CHECK(state.retries == 0);
  RetryState unreplayable(policy, state, 3);
  CHECK(unreplayable.OnAttemptEnded(failed, false, 7, &backoff) == RetryState::Decision::kNoRetry);
  CHECK_FALSE(RetryState::Failed({AttemptResult::Kind::kResponse, 200, "0"}));
  CHECK(RetryState::Failed({AttemptResult::Kind::kResponse, 200, "14"}));
  CHECK(RetryState::Failed({AttemptResult::Kind::kTimeout, 0, ""}));
}

}  // namespace
}  // namespace mesh::dataplane
