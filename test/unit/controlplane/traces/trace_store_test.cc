// The trace store behind meshpilot's collector: spans grouped into traces, bounded, and answered
// in Jaeger's query API shape.
#include "controlplane/traces/trace_store.h"

#include <catch2/catch.hpp>

#include "absl/strings/match.h"
#include "controlplane/traces/trace_api.h"
#include "nlohmann/json.hpp"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb.h"

namespace mesh::traces {
namespace {

using nlohmann::json;
namespace otlp = ::opentelemetry::proto;

std::string Id(int n, size_t size) {
  std::string out(size, '\0');
  out[size - 1] = static_cast<char>(n);
  out[0] = 1;
  return out;
}

// One export: spans of `service`, each {trace n, span n, parent n (0: none), name, start ms}.
struct S {
  int trace, span, parent;
  std::string name;
  int64_t start_ms = 1000;
  std::vector<std::pair<std::string, std::string>> tags = {};
};
otlp::collector::trace::v1::ExportTraceServiceRequest Export(const std::string& service,
                                                             const std::vector<S>& spans) {
  otlp::collector::trace::v1::ExportTraceServiceRequest r;
  auto* rs = r.add_resource_spans();
  auto* kv = rs->mutable_resource()->add_attributes();
  kv->set_key("service.name");
  kv->mutable_value()->set_string_value(service);
  auto* ss = rs->add_scope_spans();
  for (const S& s : spans) {
    auto* out = ss->add_spans();
    out->set_trace_id(Id(s.trace, 16));
    out->set_span_id(Id(s.span, 8));
    if (s.parent) out->set_parent_span_id(Id(s.parent, 8));
    out->set_name(s.name);
    out->set_kind(otlp::trace::v1::Span::SPAN_KIND_SERVER);
    out->set_start_time_unix_nano(static_cast<uint64_t>(s.start_ms) * 1000000);
    out->set_end_time_unix_nano(static_cast<uint64_t>(s.start_ms + 5) * 1000000);
    for (const auto& [k, v] : s.tags) {
      auto* a = out->add_attributes();
      a->set_key(k);
      a->mutable_value()->set_string_value(v);
    }
  }
  return r;
}

std::string TraceHex(int n) {
  std::string out = "01" + std::string(28, '0');
  char tail[3];
  snprintf(tail, sizeof tail, "%02x", n);
  return out + tail;
}

TEST_CASE("Trace store: spans of one trace from several services come back as one Jaeger trace") {
  TraceStore store({});
  store.Add(Export("front.default", {{1, 1, 0, "front:80/*"}, {1, 2, 1, "back:80/*"}}));
  store.Add(Export("back.default", {{1, 3, 2, "back:80/*", 1001, {{"http.status_code", "500"}}}}));
  absl::StatusOr<std::string> got = store.TraceJson(TraceHex(1));
  REQUIRE(got.ok());
  json j = json::parse(*got);
  REQUIRE(j["data"].size() == 1);
  const json& t = j["data"][0];
  CHECK(t["traceID"] == TraceHex(1));
  REQUIRE(t["spans"].size() == 3);
  CHECK(t["processes"].size() == 2);
  const json& child = t["spans"][2];
  CHECK(child["references"][0]["refType"] == "CHILD_OF");
  CHECK(child["references"][0]["spanID"] == "0100000000000002");
  CHECK(child["startTime"] == 1001000);
  CHECK(child["duration"] == 5000);
  CHECK(t["processes"][child["processID"].get<std::string>()]["serviceName"] == "back.default");
  bool kind = false;
  for (const json& tag : child["tags"])
    kind = kind || (tag["key"] == "span.kind" && tag["value"] == "server");
  CHECK(kind);
  // Ids are taken short and upper-case too, as Jaeger's API does; unknown ones are not found.
  CHECK(absl::IsNotFound(store.TraceJson("ff").status()));
  CHECK(absl::IsInvalidArgument(store.TraceJson("xyz").status()));

  CHECK(json::parse(store.ServicesJson())["data"] == json({"back.default", "front.default"}));
  CHECK(json::parse(store.OperationsJson("front.default"))["data"] ==
        json({"back:80/*", "front:80/*"}));
}

TEST_CASE("Trace store: queries by service, operation, time, duration, tags and limit") {
  TraceStore store({});
  for (int i = 1; i <= 5; ++i) {
    store.Add(Export("front.default",
                     {{i, 1, 0, i % 2 ? "odd" : "even", 1000 * i, {{"http.status_code", "200"}}}}));
  }
  store.Add(Export("other.default", {{9, 1, 0, "x", 9000}}));
  auto query = [&](std::map<std::string, std::string> params) {
    absl::StatusOr<TraceStore::Query> q = TraceStore::ParseQuery(params, absl::FromUnixSeconds(10));
    REQUIRE(q.ok());
    std::vector<std::string> ids;
    const json answer = json::parse(store.TracesJson(*q));
    for (const json& t : answer["data"]) ids.push_back(t["traceID"]);
    return ids;
  };
  // Newest first.
  CHECK(query({{"service", "front.default"}}) ==
        std::vector<std::string>{TraceHex(5), TraceHex(4), TraceHex(3), TraceHex(2), TraceHex(1)});
  CHECK(query({{"service", "front.default"}, {"limit", "2"}}).size() == 2);
  CHECK(query({{"service", "front.default"}, {"operation", "even"}}) ==
        std::vector<std::string>{TraceHex(4), TraceHex(2)});
  // lookback 7s at t=10s: traces that started at 3s or later.
  CHECK(query({{"service", "front.default"}, {"lookback", "7s"}}).size() == 3);
  CHECK(query({{"service", "front.default"}, {"start", "2000000"}, {"end", "3000000"}}).size() ==
        2);
  CHECK(query({{"service", "front.default"}, {"minDuration", "6ms"}}).empty());
  CHECK(query({{"service", "front.default"}, {"tags", R"({"http.status_code":"200"})"}}).size() ==
        5);
  CHECK(query({{"service", "front.default"}, {"tags", R"({"http.status_code":"500"})"}}).empty());
  CHECK(query({{"service", "nobody"}}).empty());

  auto error = [](std::map<std::string, std::string> params) {
    return std::string(TraceStore::ParseQuery(params, absl::UnixEpoch()).status().message());
  };
  CHECK(error({}) == "parameter 'service' is required");
  CHECK(error({{"service", "a"}, {"lookback", "soon"}}) ==
        "parameter 'lookback': a duration such as 1h or 2d");
  CHECK(error({{"service", "a"}, {"tags", "[1]"}}) ==
        "parameter 'tags': a JSON object of strings expected");
  CHECK(error({{"service", "a"}, {"limit", "-1"}}) == "parameter 'limit': a number");
  CHECK(TraceStore::ParseQuery({{"service", "a"}, {"lookback", "2d"}},
                               absl::FromUnixSeconds(86400 * 3))
            ->start == absl::FromUnixSeconds(86400));
}

TEST_CASE("Trace store: bounded by traces, bytes and spans per trace, and bad spans refused") {
  TraceStore store({.max_traces = 3, .max_bytes = 1 << 20, .max_spans_per_trace = 2});
  for (int i = 1; i <= 5; ++i) store.Add(Export("a", {{i, 1, 0, "op"}}));
  TraceStore::Stats s = store.stats();
  CHECK(s.traces == 3);
  CHECK(s.traces_evicted == 2);
  CHECK(absl::IsNotFound(store.TraceJson(TraceHex(1)).status()));  // the oldest went first
  CHECK(store.TraceJson(TraceHex(5)).ok());

  TraceStore::AddResult r = store.Add(Export("a", {{5, 2, 1, "op"}, {5, 3, 1, "op"}}));
  CHECK(r.accepted == 1);
  CHECK(r.rejected == 1);
  CHECK(r.error == "the trace has reached meshpilot's span cap");

  otlp::collector::trace::v1::ExportTraceServiceRequest junk;
  auto* spans = junk.add_resource_spans()->add_scope_spans();
  spans->add_spans()->set_trace_id(std::string(16, '\0'));
  spans->add_spans()->set_trace_id("short");
  auto* no_span_id = spans->add_spans();
  no_span_id->set_trace_id(Id(7, 16));
  r = store.Add(junk);
  CHECK(r.accepted == 0);
  CHECK(r.rejected == 3);
  CHECK(store.stats().spans_rejected == 4);

  // Bytes: a store of 64 KiB keeps only the most recent of many large spans.
  TraceStore small({.max_traces = 1000, .max_bytes = 64 << 10});
  for (int i = 1; i <= 200; ++i)
    small.Add(Export("a", {{i, 1, 0, "op", 1000, {{"big", std::string(4096, 'x')}}}}));
  CHECK(small.stats().bytes <= 64 << 10);
  CHECK(small.stats().traces < 20);
  CHECK(small.TraceJson(TraceHex(200)).ok());
  CHECK(absl::StrContains(small.MetricsText(), "meshpilot_trace_store_traces_evicted_total "));
}

TEST_CASE("OTLP/HTTP ingest: protobuf accepted, partial success reported, the rest refused") {
  TraceStore store({});
  api::RestServer::RawReply ok = IngestOtlp(
      store, Export("a", {{1, 1, 0, "op"}}).SerializeAsString(), "application/x-protobuf");
  CHECK(ok.status == 200);
  CHECK(ok.content_type == "application/x-protobuf");
  otlp::collector::trace::v1::ExportTraceServiceResponse response;
  REQUIRE(response.ParseFromString(ok.body));
  CHECK_FALSE(response.has_partial_success());

  auto bad_ids = Export("a", {{2, 1, 0, "op"}});
  bad_ids.mutable_resource_spans(0)->mutable_scope_spans(0)->mutable_spans(0)->set_span_id("");
  api::RestServer::RawReply partial =
      IngestOtlp(store, bad_ids.SerializeAsString(), "application/x-protobuf; charset=binary");
  CHECK(partial.status == 200);
  REQUIRE(response.ParseFromString(partial.body));
  CHECK(response.partial_success().rejected_spans() == 1);

  CHECK(IngestOtlp(store, "\xff\xff\xff", "application/x-protobuf").status == 400);
  CHECK(IngestOtlp(store, "{}", "application/json").status == 415);
}

}  // namespace
}  // namespace mesh::traces
