#include "dataplane/telemetry/span_exporter.h"

#include <httplib.h>

#include <map>
#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb.h"

namespace mesh::dataplane::telemetry {
namespace {

namespace otlp = ::opentelemetry::proto;

std::string BigEndian(uint64_t v) {
  std::string out(8, '\0');
  for (int i = 7; i >= 0; --i, v >>= 8) out[i] = static_cast<char>(v & 0xff);
  return out;
}

void SetSpan(const SpanRecord& r, otlp::trace::v1::Span* s) {
  s->set_trace_id(BigEndian(r.trace_id.high) + BigEndian(r.trace_id.low));
  s->set_span_id(BigEndian(r.span_id));
  if (r.parent_span_id != 0) s->set_parent_span_id(BigEndian(r.parent_span_id));
  s->set_trace_state(r.tracestate);
  s->set_flags(1);  // W3C sampled
  s->set_name(r.name);
  s->set_kind(r.server ? otlp::trace::v1::Span::SPAN_KIND_SERVER
                       : otlp::trace::v1::Span::SPAN_KIND_CLIENT);
  s->set_start_time_unix_nano(static_cast<uint64_t>(absl::ToUnixNanos(r.start)));
  s->set_end_time_unix_nano(static_cast<uint64_t>(absl::ToUnixNanos(r.end)));
  for (const auto& [key, value] : r.attributes) {
    otlp::common::v1::KeyValue* kv = s->add_attributes();
    kv->set_key(key.data(), key.size());
    kv->mutable_value()->set_string_value(value);
  }
  if (r.error) s->mutable_status()->set_code(otlp::trace::v1::Status::STATUS_CODE_ERROR);
}

std::string HeadersKey(const TracingConfig& c) {
  std::string key = c.collector_uri;
  for (const auto& [name, value] : c.collector_headers)
    absl::StrAppend(&key, "\n", name, ":", value);
  return key;
}

}  // namespace

std::string EncodeOtlp(const std::vector<std::pair<TracingConfigPtr, SpanRecord>>& spans) {
  // Thousands of small messages per batch: on an arena, freed at once.
  google::protobuf::Arena arena;
  auto& request =
      *google::protobuf::Arena::CreateMessage<otlp::collector::trace::v1::ExportTraceServiceRequest>(
          &arena);
  std::map<std::string, otlp::trace::v1::ScopeSpans*> by_service;
  for (const auto& [config, span] : spans) {
    otlp::trace::v1::ScopeSpans*& scope = by_service[span.service];
    if (!scope) {
      otlp::trace::v1::ResourceSpans* rs = request.add_resource_spans();
      otlp::common::v1::KeyValue* name = rs->mutable_resource()->add_attributes();
      name->set_key("service.name");
      name->mutable_value()->set_string_value(span.service);
      scope = rs->add_scope_spans();
      scope->mutable_scope()->set_name("meshproxy");
    }
    SetSpan(span, scope->add_spans());
  }
  return request.SerializeAsString();
}

SpanExporter::Post SpanExporter::HttpPost(absl::Duration timeout) {
  // One kept-alive client per collector, used only by the export thread.
  auto clients = std::make_shared<std::map<std::string, std::unique_ptr<httplib::Client>>>();
  return [timeout, clients](const std::string& uri,
                            const std::vector<std::pair<std::string, std::string>>& headers,
                            const std::string& body) {
    size_t scheme_end = uri.find("://");
    if (scheme_end == std::string::npos) return false;
    size_t path_start = uri.find('/', scheme_end + 3);
    const std::string origin = uri.substr(0, path_start);
    const std::string path =
        path_start == std::string::npos ? "/v1/traces" : uri.substr(path_start);
    std::unique_ptr<httplib::Client>& client = (*clients)[origin];
    if (!client) {
      client = std::make_unique<httplib::Client>(origin);
      const int64_t s = absl::ToInt64Seconds(timeout);
      const int64_t us = absl::ToInt64Microseconds(timeout % absl::Seconds(1));
      client->set_connection_timeout(s, us);
      client->set_read_timeout(s, us);
      client->set_write_timeout(s, us);
      client->set_keep_alive(true);
      if (absl::StartsWith(origin, "https://"))
        client->enable_server_certificate_verification(true);
    }
    if (!client->is_valid()) return false;
    httplib::Headers h;
    for (const auto& [name, value] : headers) h.emplace(name, value);
    httplib::Result result = client->Post(path, h, body, "application/x-protobuf");
    if (!result) {
      log::Debug("meshproxy: trace export to ", uri, ": ", httplib::to_string(result.error()));
      return false;
    }
    if (result->status < 200 || result->status > 299) {
      log::Debug("meshproxy: trace export to ", uri, ": HTTP ", result->status);
      return false;
    }
    return true;
  };
}

SpanExporter::SpanExporter(Options options, Post post)
    : options_(options), post_(post ? std::move(post) : HttpPost(options.timeout)) {
  thread_ = std::thread([this] { Run(); });
}

SpanExporter::~SpanExporter() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_one();
  thread_.join();
}

void SpanExporter::Export(TracingConfigPtr config, SpanRecord span) {
  bool wake = false;
  {
    std::lock_guard lock(mu_);
    if (queue_.size() >= options_.max_queue) {
      stats_.dropped_queue_full.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    queue_.emplace_back(std::move(config), std::move(span));
    wake = queue_.size() >= options_.max_batch;
  }
  if (wake) cv_.notify_one();
}

void SpanExporter::Run() {
  std::unique_lock lock(mu_);
  while (true) {
    cv_.wait_for(lock, absl::ToChronoNanoseconds(options_.flush_interval),
                 [this] { return stop_ || queue_.size() >= options_.max_batch; });
    const bool stopping = stop_;
    while (!queue_.empty()) {
      std::vector<std::pair<TracingConfigPtr, SpanRecord>> batch;
      const size_t n = std::min(queue_.size(), options_.max_batch);
      batch.reserve(n);
      for (size_t i = 0; i < n; ++i) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      lock.unlock();
      Send(std::move(batch));
      lock.lock();
      if (!stopping && queue_.size() < options_.max_batch) break;  // the rest waits its turn
    }
    if (stopping) return;
  }
}

void SpanExporter::Send(std::vector<std::pair<TracingConfigPtr, SpanRecord>> batch) {
  // One POST per collector (URI and headers).
  std::map<std::string, std::vector<std::pair<TracingConfigPtr, SpanRecord>>> by_collector;
  for (auto& entry : batch) by_collector[HeadersKey(*entry.first)].push_back(std::move(entry));
  for (const auto& [key, spans] : by_collector) {
    const TracingConfig& c = *spans.front().first;
    stats_.http_reports_sent.fetch_add(1, std::memory_order_relaxed);
    if (post_(c.collector_uri, c.collector_headers, EncodeOtlp(spans))) {
      stats_.http_reports_success.fetch_add(1, std::memory_order_relaxed);
      stats_.spans_sent.fetch_add(spans.size(), std::memory_order_relaxed);
    } else {
      stats_.http_reports_failed.fetch_add(1, std::memory_order_relaxed);
      stats_.dropped_export_failed.fetch_add(spans.size(), std::memory_order_relaxed);
    }
  }
}

std::string SpanExporter::PrometheusText() const {
  auto line = [](const char* name, const std::atomic<uint64_t>& v) {
    return absl::StrCat("# TYPE ", name, " counter\n", name, " ", v.load(), "\n");
  };
  return absl::StrCat(
      line("envoy_tracing_opentelemetry_spans_sent", stats_.spans_sent),
      line("envoy_tracing_opentelemetry_http_reports_sent", stats_.http_reports_sent),
      line("envoy_tracing_opentelemetry_http_reports_success", stats_.http_reports_success),
      line("envoy_tracing_opentelemetry_http_reports_failed", stats_.http_reports_failed),
      "# TYPE meshproxy_tracing_spans_dropped_total counter\n",
      "meshproxy_tracing_spans_dropped_total{reason=\"queue_full\"} ",
      stats_.dropped_queue_full.load(), "\n",
      "meshproxy_tracing_spans_dropped_total{reason=\"export_failed\"} ",
      stats_.dropped_export_failed.load(), "\n");
}

}  // namespace mesh::dataplane::telemetry
