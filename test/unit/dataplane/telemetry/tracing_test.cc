#include "dataplane/telemetry/tracing.h"

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "dataplane/telemetry/span_exporter.h"
#include "dataplane/telemetry/trace_context.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb.h"

namespace mesh::dataplane::telemetry {
namespace {

constexpr char kTrace[] = "4bf92f3577b34da6a3ce929d0e0e4736";
constexpr char kSpan[] = "00f067aa0ba902b7";

// Random numbers from a counter: predictable ids, and sampling draws that can be steered.
struct Counter {
  uint64_t next = 1;
  uint64_t operator()() { return next++; }
};

std::string Value(const std::vector<std::pair<absl::string_view, std::string>>& tags,
                  const std::string& key) {
  for (const auto& [k, v] : tags) {
    if (k == key) return v;
  }
  return "<absent>";
}

TEST_CASE("traceparent: a valid header is read with its sampled flag") {
  std::optional<SpanContext> c = ParseTraceparent(absl::StrCat("00-", kTrace, "-", kSpan, "-01"));
  REQUIRE(c);
  CHECK(TraceIdHex(c->trace_id) == kTrace);
  CHECK(SpanIdHex(c->span_id) == kSpan);
  CHECK(c->sampled == true);
  c = ParseTraceparent(absl::StrCat("00-", kTrace, "-", kSpan, "-00"));
  REQUIRE(c);
  CHECK(c->sampled == false);
  // A later version may carry more fields after a dash.
  CHECK(ParseTraceparent(absl::StrCat("01-", kTrace, "-", kSpan, "-01-extra")));
}

TEST_CASE("traceparent: malformed headers are ignored") {
  const std::string good = absl::StrCat("00-", kTrace, "-", kSpan, "-01");
  for (const std::string& bad : {
           std::string(""),
           std::string("garbage"),
           absl::StrCat("ff-", kTrace, "-", kSpan, "-01"),                 // version ff
           absl::StrCat("00-", kTrace, "-", kSpan, "-01-extra"),           // v00 is 55 chars
           absl::StrCat("00-", std::string(32, '0'), "-", kSpan, "-01"),   // zero trace id
           absl::StrCat("00-", kTrace, "-", std::string(16, '0'), "-01"),  // zero span id
           absl::StrCat("00-", "4BF92F3577B34DA6A3CE929D0E0E4736", "-", kSpan, "-01"),  // upper
           absl::StrCat("00-", kTrace, "-", kSpan, "-0g"),
           good.substr(0, 54),
           absl::StrCat("00_", kTrace, "-", kSpan, "-01"),
       }) {
    INFO(bad);
    CHECK_FALSE(ParseTraceparent(bad));
  }
}

TEST_CASE("b3: the single header and the x-b3 headers are read") {
  std::optional<SpanContext> c = ParseB3Single(absl::StrCat(kTrace, "-", kSpan, "-1-", kSpan));
  REQUIRE(c);
  CHECK(TraceIdHex(c->trace_id) == kTrace);
  CHECK(c->sampled == true);
  c = ParseB3Single(absl::StrCat("a3ce929d0e0e4736-", kSpan));  // 64-bit trace id, no decision
  REQUIRE(c);
  CHECK(TraceIdHex(c->trace_id, true) == "a3ce929d0e0e4736");
  CHECK_FALSE(c->sampled);
  c = ParseB3Single("0");
  REQUIRE(c);
  CHECK_FALSE(c->trace_id.valid());
  CHECK(c->sampled == false);
  CHECK(ParseB3Single("d")->sampled == true);
  CHECK_FALSE(ParseB3Single(absl::StrCat(kTrace, "-", kSpan, "-x")));
  CHECK_FALSE(ParseB3Single("x"));

  HeaderMap h;
  h.Add("x-b3-traceid", kTrace);
  h.Add("x-b3-spanid", kSpan);
  h.Add("x-b3-sampled", "1");
  c = ExtractTraceContext(h);
  REQUIRE(c);
  CHECK(TraceIdHex(c->trace_id) == kTrace);
  CHECK(c->sampled == true);
  HeaderMap decision_only;
  decision_only.Add("x-b3-sampled", "0");
  c = ExtractTraceContext(decision_only);
  REQUIRE(c);
  CHECK_FALSE(c->trace_id.valid());
  CHECK(c->sampled == false);
}

TEST_CASE("extract: traceparent wins over B3, a malformed one falls back, tracestate is capped") {
  HeaderMap h;
  h.Add("traceparent", absl::StrCat("00-", kTrace, "-", kSpan, "-01"));
  h.Add("x-b3-traceid", "1111111111111111");
  h.Add("x-b3-spanid", "2222222222222222");
  h.Add("tracestate", "vendor=a");
  std::optional<SpanContext> c = ExtractTraceContext(h);
  REQUIRE(c);
  CHECK(TraceIdHex(c->trace_id) == kTrace);
  CHECK(c->tracestate == "vendor=a");

  h.Set("traceparent", "00-broken");
  c = ExtractTraceContext(h);
  REQUIRE(c);
  CHECK(TraceIdHex(c->trace_id, true) == "1111111111111111");
  CHECK(c->tracestate.empty());  // tracestate belongs to a valid traceparent only

  HeaderMap long_state;
  long_state.Add("traceparent", absl::StrCat("00-", kTrace, "-", kSpan, "-01"));
  std::string state;
  for (int i = 0; i < 100; ++i) absl::StrAppend(&state, i ? "," : "", "k", i, "=vvvvvvvv");
  long_state.Add("tracestate", state);
  c = ExtractTraceContext(long_state);
  REQUIRE(c);
  CHECK(c->tracestate.size() <= kMaxTraceStateBytes);
  CHECK(c->tracestate.rfind("k0=vvvvvvvv,", 0) == 0);
  CHECK(c->tracestate.back() != ',');
}

TEST_CASE("a span continues the caller's trace and writes both formats for the next hop") {
  TracingConfig config;
  config.sampling_percent = 0;  // the caller's decision wins over the rate
  HeaderMap h;
  h.Add("traceparent", absl::StrCat("00-", kTrace, "-", kSpan, "-01"));
  h.Add("tracestate", "vendor=a");
  h.Add("b3", "stale");
  Counter random;
  RequestSpan span(config, h, "GET", "reviews:9080", "/r?x=1", "HTTP/1.1", absl::UnixEpoch(),
                   std::ref(random));
  CHECK(span.sampled());
  CHECK(TraceIdHex(span.trace_id()) == kTrace);
  CHECK(SpanIdHex(span.parent_span_id()) == kSpan);
  const std::string own = SpanIdHex(span.span_id());
  CHECK(*h.Get("traceparent") == absl::StrCat("00-", kTrace, "-", own, "-01"));
  CHECK(*h.Get("tracestate") == "vendor=a");
  CHECK(*h.Get("x-b3-traceid") == kTrace);
  CHECK(*h.Get("x-b3-spanid") == own);
  CHECK(*h.Get("x-b3-parentspanid") == kSpan);
  CHECK(*h.Get("x-b3-sampled") == "1");
  CHECK(*h.Get("b3") == absl::StrCat(kTrace, "-", own, "-1-", kSpan));  // present: rewritten
}

TEST_CASE("a caller's 'not sampled' is honoured, and still propagated") {
  TracingConfig config;  // 100 %
  HeaderMap h;
  h.Add("x-b3-traceid", kTrace);
  h.Add("x-b3-spanid", kSpan);
  h.Add("x-b3-sampled", "0");
  Counter random;
  RequestSpan span(config, h, "GET", "a", "/", "HTTP/1.1", absl::UnixEpoch(), std::ref(random));
  CHECK_FALSE(span.sampled());
  CHECK(*h.Get("x-b3-sampled") == "0");
  CHECK(absl::EndsWith(*h.Get("traceparent"), "-00"));
  CHECK(h.Get("b3") == nullptr);  // not added where the request had none
}

TEST_CASE("a new trace: sampled at the configured rate, or forced") {
  TracingConfig config;
  config.sampling_percent = 1;
  int sampled = 0;
  uint64_t seed = 12345;
  auto random = [&seed] {
    seed ^= seed << 13;
    seed ^= seed >> 7;
    seed ^= seed << 17;
    return seed;
  };
  for (int i = 0; i < 100000; ++i) {
    HeaderMap h;
    RequestSpan span(config, h, "GET", "a", "/", "HTTP/1.1", absl::UnixEpoch(), random);
    REQUIRE(span.trace_id().valid());
    REQUIRE(span.parent_span_id() == 0);
    REQUIRE(h.Get("x-b3-parentspanid") == nullptr);
    if (span.sampled()) ++sampled;
  }
  CHECK(sampled > 850);
  CHECK(sampled < 1150);

  config.sampling_percent = 0;
  HeaderMap forced;
  forced.Add("x-envoy-force-trace", "true");
  CHECK(RequestSpan(config, forced, "GET", "a", "/", "HTTP/1.1", absl::UnixEpoch(), random)
            .sampled());
  HeaderMap plain;
  CHECK_FALSE(
      RequestSpan(config, plain, "GET", "a", "/", "HTTP/1.1", absl::UnixEpoch(), random).sampled());
}

TEST_CASE("a finished span carries Istio's tags, the decorator's name and the error flag") {
  TracingConfig config;
  config.server = true;
  config.custom_tags.push_back({"env", TracingConfig::CustomTag::Kind::kLiteral, "prod", ""});
  config.custom_tags.push_back(
      {"user", TracingConfig::CustomTag::Kind::kRequestHeader, "end-user", "nobody"});
  HeaderMap h;
  h.Add("user-agent", "curl/7");
  h.Add("x-request-id", "rid-1");
  h.Add("end-user", "jason");
  Counter random;
  RequestSpan span(config, h, "POST", "reviews:9080", "/reviews/1?q=2", "HTTP/2",
                   absl::FromUnixSeconds(10), std::ref(random));
  REQUIRE(span.sampled());
  SpanIdentity id;
  id.service_name = "reviews.default";
  id.node_id = "sidecar~10.0.0.1~reviews-1.default~default.svc.cluster.local";
  id.canonical_service = "reviews";
  id.canonical_revision = "v1";
  id.ns = "default";
  SpanOutcome outcome;
  outcome.status = 503;
  outcome.flags = "UF";
  outcome.upstream_cluster = "inbound|9080||";
  outcome.peer_address = "10.0.0.2";
  outcome.request_bytes = 12;
  SpanRecord r = span.Finish(outcome, id, absl::FromUnixSeconds(11));
  CHECK(r.name == "reviews:9080/reviews/1");  // no decorator: authority and path
  CHECK(r.service == "reviews.default");
  CHECK(r.server);
  CHECK(r.error);
  CHECK(r.end - r.start == absl::Seconds(1));
  CHECK(Value(r.attributes, "http.method") == "POST");
  CHECK(Value(r.attributes, "http.url") == "http://reviews:9080/reviews/1?q=2");
  CHECK(Value(r.attributes, "http.protocol") == "HTTP/2");
  CHECK(Value(r.attributes, "http.status_code") == "503");
  CHECK(Value(r.attributes, "response_flags") == "UF");
  CHECK(Value(r.attributes, "upstream_cluster") == "inbound|9080||");
  CHECK(Value(r.attributes, "node_id") == id.node_id);
  CHECK(Value(r.attributes, "component") == "proxy");
  CHECK(Value(r.attributes, "guid:x-request-id") == "rid-1");
  CHECK(Value(r.attributes, "user_agent") == "curl/7");
  CHECK(Value(r.attributes, "istio.canonical_service") == "reviews");
  CHECK(Value(r.attributes, "istio.namespace") == "default");
  CHECK(Value(r.attributes, "request_size") == "12");
  CHECK(Value(r.attributes, "error") == "true");
  CHECK(Value(r.attributes, "env") == "prod");
  CHECK(Value(r.attributes, "user") == "jason");

  HeaderMap named;
  RequestSpan decorated(config, named, "GET", "a", "/x", "HTTP/1.1", absl::UnixEpoch(),
                        std::ref(random));
  decorated.SetOperation("reviews.default.svc.cluster.local:9080/*");
  outcome.status = 200;
  outcome.flags = "";
  SpanRecord ok = decorated.Finish(outcome, id, absl::UnixEpoch());
  CHECK(ok.name == "reviews.default.svc.cluster.local:9080/*");
  CHECK_FALSE(ok.error);
  CHECK(Value(ok.attributes, "response_flags") == "-");
  CHECK(Value(ok.attributes, "error") == "<absent>");
  CHECK(Value(ok.attributes, "user") == "nobody");
}

TEST_CASE("OTLP: spans are encoded as ExportTraceServiceRequest, a resource per service") {
  auto config = std::make_shared<TracingConfig>();
  SpanRecord r;
  r.trace_id = {0x0102030405060708, 0x090a0b0c0d0e0f10};
  r.span_id = 0x1112131415161718;
  r.parent_span_id = 0x2122232425262728;
  r.name = "op";
  r.server = true;
  r.start = absl::FromUnixNanos(1000);
  r.end = absl::FromUnixNanos(5000);
  r.attributes = {{"http.method", "GET"}};
  r.error = true;
  SpanRecord a = r, b = r;
  a.service = "reviews.default";
  b.service = "ratings.default";
  std::string body = EncodeOtlp({{config, a}, {config, b}, {config, a}});
  opentelemetry::proto::collector::trace::v1::ExportTraceServiceRequest req;
  REQUIRE(req.ParseFromString(body));
  REQUIRE(req.resource_spans_size() == 2);
  const auto& rs = req.resource_spans(0);
  CHECK(rs.resource().attributes(0).key() == "service.name");
  CHECK(rs.resource().attributes(0).value().string_value() == "reviews.default");
  REQUIRE(rs.scope_spans(0).spans_size() == 2);
  const auto& s = rs.scope_spans(0).spans(0);
  CHECK(s.trace_id() ==
        std::string("\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10", 16));
  CHECK(s.span_id() == std::string("\x11\x12\x13\x14\x15\x16\x17\x18", 8));
  CHECK(s.parent_span_id() == std::string("\x21\x22\x23\x24\x25\x26\x27\x28", 8));
  CHECK(s.kind() == opentelemetry::proto::trace::v1::Span::SPAN_KIND_SERVER);
  CHECK(s.start_time_unix_nano() == 1000);
  CHECK(s.end_time_unix_nano() == 5000);
  CHECK(s.attributes(0).key() == "http.method");
  CHECK(s.status().code() == opentelemetry::proto::trace::v1::Status::STATUS_CODE_ERROR);
}

TEST_CASE("exporter: batches go to each span's collector, failures and floods are counted") {
  std::mutex mu;
  std::vector<std::pair<std::string, int>> posts;  // uri, spans
  std::atomic<bool> collector_up{true};
  SpanExporter::Options options;
  options.max_queue = 100;
  options.max_batch = 10;
  options.flush_interval = absl::Milliseconds(20);
  auto exporter = std::make_unique<SpanExporter>(
      options, [&](const std::string& uri, const auto& headers, const std::string& body) {
        opentelemetry::proto::collector::trace::v1::ExportTraceServiceRequest req;
        req.ParseFromString(body);
        int n = 0;
        for (const auto& rs : req.resource_spans()) n += rs.scope_spans(0).spans_size();
        std::lock_guard lock(mu);
        posts.emplace_back(absl::StrCat(uri, headers.empty() ? "" : " " + headers[0].second), n);
        return collector_up.load();
      });
  auto one = std::make_shared<TracingConfig>();
  one->collector_uri = "http://one/v1/traces";
  one->collector_headers = {{"authorization", "Bearer t"}};
  auto two = std::make_shared<TracingConfig>();
  two->collector_uri = "http://two/v1/traces";
  for (int i = 0; i < 15; ++i) exporter->Export(i % 3 ? one : two, SpanRecord{});
  const SpanExporter::Stats& stats = exporter->stats();
  for (int i = 0; i < 200 && stats.spans_sent.load() < 15; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  CHECK(stats.spans_sent.load() == 15);
  {
    std::lock_guard lock(mu);
    int to_one = 0, to_two = 0;
    for (const auto& [uri, n] : posts) {
      CHECK(n <= 10);
      if (uri == "http://one/v1/traces Bearer t") to_one += n;
      if (uri == "http://two/v1/traces") to_two += n;
    }
    CHECK(to_one == 10);
    CHECK(to_two == 5);
  }

  collector_up = false;
  for (int i = 0; i < 5; ++i) exporter->Export(one, SpanRecord{});
  for (int i = 0; i < 200 && stats.dropped_export_failed.load() < 5; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  CHECK(stats.dropped_export_failed.load() == 5);
  CHECK(stats.http_reports_failed.load() >= 1);
  CHECK(exporter->PrometheusText().find(
            "meshproxy_tracing_spans_dropped_total{reason=\"export_failed\"} 5") !=
        std::string::npos);
}

TEST_CASE("exporter: a full queue drops spans at once, and the caller never waits") {
  std::atomic<bool> release{false};
  SpanExporter::Options options;
  options.max_queue = 50;
  options.max_batch = 1;
  options.flush_interval = absl::Milliseconds(5);
  auto exporter = std::make_unique<SpanExporter>(options, [&](auto&, auto&, auto&) {
    while (!release.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return true;
  });
  auto config = std::make_shared<TracingConfig>();
  config->collector_uri = "http://slow/v1/traces";
  // The collector holds the export thread until released: were Export to wait, this would hang.
  for (int i = 0; i < 10000; ++i) exporter->Export(config, SpanRecord{});
  CHECK(exporter->stats().dropped_queue_full.load() >= 10000 - 51);
  release = true;
  exporter.reset();  // sends what is queued, then stops
}

}  // namespace
}  // namespace mesh::dataplane::telemetry
