#include "dataplane/telemetry/istio_metrics.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace mesh::dataplane::telemetry {
namespace {

// Appends name="value", escaped as the exposition format wants; empty values are "unknown".
void AppendLabel(std::string* out, absl::string_view name, absl::string_view value,
                 bool unknown_if_empty = true) {
  if (!out->empty()) out->push_back(',');
  out->append(name.data(), name.size());
  out->append("=\"");
  if (value.empty() && unknown_if_empty) value = "unknown";
  for (char c : value) {
    if (c == '\\' || c == '"') {
      out->push_back('\\');
      out->push_back(c);
    } else if (c == '\n') {
      out->append("\\n");
    } else {
      out->push_back(c);
    }
  }
  out->push_back('"');
}

// The label names of one side, in Istio's order: workload, namespace, principal, app, version,
// canonical service and revision, cluster.
using SideNames = std::array<const char*, 8>;
constexpr SideNames kSource = {
    "source_workload", "source_workload_namespace", "source_principal",          "source_app",
    "source_version",  "source_canonical_service",  "source_canonical_revision", "source_cluster"};
constexpr SideNames kDestination = {"destination_workload",
                                    "destination_workload_namespace",
                                    "destination_principal",
                                    "destination_app",
                                    "destination_version",
                                    "destination_canonical_service",
                                    "destination_canonical_revision",
                                    "destination_cluster"};

void AppendPeer(std::string* out, const SideNames& names, const PeerInfo* p,
                absl::string_view principal) {
  static const PeerInfo kUnknown;
  const PeerInfo& peer = p ? *p : kUnknown;
  AppendLabel(out, names[0], peer.workload);
  AppendLabel(out, names[1], peer.ns);
  AppendLabel(out, names[2], principal);
  AppendLabel(out, names[3], peer.app);
  AppendLabel(out, names[4], peer.version);
  AppendLabel(out, names[5], peer.canonical_service);
  AppendLabel(out, names[6], peer.canonical_revision);
  AppendLabel(out, names[7], peer.cluster);
}

// The labels both kinds share, in Istio's order.
template <class R>
void AppendCommon(std::string* out, const R& r) {
  out->clear();
  AppendLabel(out, "reporter", r.reporter == Reporter::kSource ? "source" : "destination");
  AppendPeer(out, kSource, r.source, r.source_principal);
  AppendPeer(out, kDestination, r.destination, r.destination_principal);
  absl::string_view service = r.destination_service;
  AppendLabel(out, "destination_service", service);
  // "reviews.default.svc.cluster.local": name "reviews", namespace "default".
  absl::string_view name = service.substr(0, service.find('.'));
  absl::string_view ns;
  if (size_t dot = service.find('.'); dot != absl::string_view::npos) {
    ns = service.substr(dot + 1);
    ns = ns.substr(0, ns.find('.'));
  } else if (r.destination) {
    ns = r.destination->ns;
  }
  AppendLabel(out, "destination_service_name", name);
  AppendLabel(out, "destination_service_namespace", ns);
}

std::string Le(size_t i) {
  return i < kIstioBuckets.size() ? absl::StrCat(kIstioBuckets[i]) : std::string("+Inf");
}

void RenderHistogram(std::string* out, absl::string_view name, const std::string& labels,
                     const BucketHistogram& h) {
  uint64_t cumulative = 0;
  for (size_t i = 0; i < h.buckets.size(); ++i) {
    cumulative += h.buckets[i];
    absl::StrAppend(out, name, "_bucket{", labels, ",le=\"", Le(i), "\"} ", cumulative, "\n");
  }
  absl::StrAppend(out, name, "_sum{", labels, "} ", h.sum, "\n", name, "_count{", labels, "} ",
                  h.count, "\n");
}

void Type(std::string* out, absl::string_view name, absl::string_view type) {
  absl::StrAppend(out, "# TYPE ", name, " ", type, "\n");
}

}  // namespace

void BucketHistogram::Record(double value) {
  size_t i =
      std::lower_bound(kIstioBuckets.begin(), kIstioBuckets.end(), value) - kIstioBuckets.begin();
  ++buckets[i];
  ++count;
  sum += value;
}

void BucketHistogram::Merge(const BucketHistogram& o) {
  for (size_t i = 0; i < buckets.size(); ++i) buckets[i] += o.buckets[i];
  count += o.count;
  sum += o.sum;
}

void IstioMetrics::Record(const RequestRecord& r) {
  AppendCommon(&key_, r);
  AppendLabel(&key_, "request_protocol", r.request_protocol);
  char code[16];
  AppendLabel(&key_, "response_code",
              absl::string_view(
                  code, absl::numbers_internal::FastIntToBuffer(r.response_code, code) - code));
  // Empty, not "unknown", for requests that are not gRPC, as Istio writes it.
  AppendLabel(&key_, "grpc_response_status", r.grpc_response_status, false);
  AppendLabel(&key_, "response_flags", r.response_flags.empty() ? "-" : r.response_flags);
  AppendLabel(&key_, "connection_security_policy", r.connection_security_policy);
  auto it = http_.find(key_);
  if (it == http_.end()) {
    if (series() >= max_series_) {
      ++dropped_;
      return;
    }
    it = http_.emplace(key_, HttpSeries{}).first;
  }
  HttpSeries& s = it->second;
  ++s.requests;
  s.duration_ms.Record(absl::ToDoubleMilliseconds(r.duration));
  s.request_bytes.Record(static_cast<double>(r.request_bytes));
  s.response_bytes.Record(static_cast<double>(r.response_bytes));
  s.grpc = s.grpc || r.request_protocol == "grpc";
  s.request_messages += r.request_messages;
  s.response_messages += r.response_messages;
}

void IstioMetrics::Record(const TcpRecord& r) {
  AppendCommon(&key_, r);
  AppendLabel(&key_, "request_protocol", "tcp");
  AppendLabel(&key_, "response_flags", r.response_flags.empty() ? "-" : r.response_flags);
  AppendLabel(&key_, "connection_security_policy", r.connection_security_policy);
  auto it = tcp_.find(key_);
  if (it == tcp_.end()) {
    if (series() >= max_series_) {
      ++dropped_;
      return;
    }
    it = tcp_.emplace(key_, TcpSeries{}).first;
  }
  TcpSeries& s = it->second;
  s.sent += r.sent_bytes;
  s.received += r.received_bytes;
  s.opened += r.opened ? 1 : 0;
  s.closed += r.closed ? 1 : 0;
}

void IstioMetrics::Merge(const IstioMetrics& o) {
  for (const auto& [k, v] : o.http_) {
    HttpSeries& s = http_[k];
    s.requests += v.requests;
    s.duration_ms.Merge(v.duration_ms);
    s.request_bytes.Merge(v.request_bytes);
    s.response_bytes.Merge(v.response_bytes);
    s.request_messages += v.request_messages;
    s.response_messages += v.response_messages;
    s.grpc = s.grpc || v.grpc;
  }
  for (const auto& [k, v] : o.tcp_) {
    TcpSeries& s = tcp_[k];
    s.sent += v.sent;
    s.received += v.received;
    s.opened += v.opened;
    s.closed += v.closed;
  }
  dropped_ += o.dropped_;
}

std::string IstioMetrics::Render(absl::string_view component, absl::string_view tag) const {
  std::string out;
  Type(&out, "istio_requests_total", "counter");
  for (const auto& [labels, s] : http_)
    absl::StrAppend(&out, "istio_requests_total{", labels, "} ", s.requests, "\n");
  Type(&out, "istio_request_duration_milliseconds", "histogram");
  for (const auto& [labels, s] : http_)
    RenderHistogram(&out, "istio_request_duration_milliseconds", labels, s.duration_ms);
  Type(&out, "istio_request_bytes", "histogram");
  for (const auto& [labels, s] : http_)
    RenderHistogram(&out, "istio_request_bytes", labels, s.request_bytes);
  Type(&out, "istio_response_bytes", "histogram");
  for (const auto& [labels, s] : http_)
    RenderHistogram(&out, "istio_response_bytes", labels, s.response_bytes);
  Type(&out, "istio_request_messages_total", "counter");
  for (const auto& [labels, s] : http_) {
    if (s.grpc)
      absl::StrAppend(&out, "istio_request_messages_total{", labels, "} ", s.request_messages,
                      "\n");
  }
  Type(&out, "istio_response_messages_total", "counter");
  for (const auto& [labels, s] : http_) {
    if (s.grpc)
      absl::StrAppend(&out, "istio_response_messages_total{", labels, "} ", s.response_messages,
                      "\n");
  }
  const std::pair<const char*, uint64_t TcpSeries::*> tcp[] = {
      {"istio_tcp_sent_bytes_total", &TcpSeries::sent},
      {"istio_tcp_received_bytes_total", &TcpSeries::received},
      {"istio_tcp_connections_opened_total", &TcpSeries::opened},
      {"istio_tcp_connections_closed_total", &TcpSeries::closed}};
  for (const auto& [name, field] : tcp) {
    Type(&out, name, "counter");
    for (const auto& [labels, s] : tcp_)
      absl::StrAppend(&out, name, "{", labels, "} ", s.*field, "\n");
  }
  Type(&out, "istio_build", "gauge");
  absl::StrAppend(&out, "istio_build{component=\"", component, "\",tag=\"", tag, "\"} 1\n");
  return out;
}

}  // namespace mesh::dataplane::telemetry
