#include "dataplane/telemetry/istio_metrics.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/prometheus.h"

namespace mesh::dataplane::telemetry {
namespace {

// A series' key is its label values alone, each followed by a unit separator, in the order of
// its kind's label names (kHttpLabels, kTcpLabels): a fraction of the rendered text, so a request
// builds and hashes little. Empty values become "unknown" unless told otherwise.
constexpr char kSep = '\x1f';

void AppendLabel(std::string* out, absl::string_view /*name*/, absl::string_view value,
                 bool unknown_if_empty = true) {
  if (value.empty() && unknown_if_empty) value = "unknown";
  const size_t at = out->size();
  out->append(value.data(), value.size());
  if (value.find(kSep) != absl::string_view::npos)
    std::replace(out->begin() + at, out->end(), kSep, ' ');
  out->push_back(kSep);
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

// The label names of each kind's keys, in key order.
std::vector<const char*> Names(std::initializer_list<const char*> tail) {
  std::vector<const char*> out = {"reporter"};
  out.insert(out.end(), kSource.begin(), kSource.end());
  out.insert(out.end(), kDestination.begin(), kDestination.end());
  out.insert(out.end(),
             {"destination_service", "destination_service_name", "destination_service_namespace"});
  out.insert(out.end(), tail);
  return out;
}
const std::vector<const char*>& HttpLabels() {
  static const auto* names = new std::vector<const char*>(
      Names({"request_protocol", "response_code", "grpc_response_status", "response_flags",
             "connection_security_policy"}));
  return *names;
}
const std::vector<const char*>& TcpLabels() {
  static const auto* names = new std::vector<const char*>(
      Names({"request_protocol", "response_flags", "connection_security_policy"}));
  return *names;
}

// A key as the exposition format's label text: name="value",... with values escaped.
std::string LabelText(absl::string_view key, const std::vector<const char*>& names) {
  std::string out;
  size_t i = 0;
  for (absl::string_view value : absl::StrSplit(key, kSep)) {
    if (i >= names.size()) break;
    if (i > 0) out.push_back(',');
    absl::StrAppend(&out, names[i++], "=\"", prometheus::Escape(value), "\"");
  }
  return out;
}

// Keys in order, for a stable exposition.
template <class Map>
std::vector<const typename Map::value_type*> Sorted(const Map& map) {
  std::vector<const typename Map::value_type*> out;
  for (const auto& entry : map) out.push_back(&entry);
  std::sort(out.begin(), out.end(), [](auto* a, auto* b) { return a->first < b->first; });
  return out;
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
  // Label text once per series, in key order.
  std::vector<std::pair<std::string, const HttpSeries*>> http;
  for (const auto* entry : Sorted(http_))
    http.emplace_back(LabelText(entry->first, HttpLabels()), &entry->second);
  std::vector<std::pair<std::string, const TcpSeries*>> tcp;
  for (const auto* entry : Sorted(tcp_))
    tcp.emplace_back(LabelText(entry->first, TcpLabels()), &entry->second);

  std::string out;
  Type(&out, "istio_requests_total", "counter");
  for (const auto& [labels, s] : http)
    absl::StrAppend(&out, "istio_requests_total{", labels, "} ", s->requests, "\n");
  const std::pair<const char*, BucketHistogram HttpSeries::*> histograms[] = {
      {"istio_request_duration_milliseconds", &HttpSeries::duration_ms},
      {"istio_request_bytes", &HttpSeries::request_bytes},
      {"istio_response_bytes", &HttpSeries::response_bytes}};
  for (const auto& [name, field] : histograms) {
    Type(&out, name, "histogram");
    for (const auto& [labels, s] : http) RenderHistogram(&out, name, labels, s->*field);
  }
  const std::pair<const char*, uint64_t HttpSeries::*> messages[] = {
      {"istio_request_messages_total", &HttpSeries::request_messages},
      {"istio_response_messages_total", &HttpSeries::response_messages}};
  for (const auto& [name, field] : messages) {
    Type(&out, name, "counter");
    for (const auto& [labels, s] : http) {
      if (s->grpc) absl::StrAppend(&out, name, "{", labels, "} ", s->*field, "\n");
    }
  }
  const std::pair<const char*, uint64_t TcpSeries::*> counters[] = {
      {"istio_tcp_sent_bytes_total", &TcpSeries::sent},
      {"istio_tcp_received_bytes_total", &TcpSeries::received},
      {"istio_tcp_connections_opened_total", &TcpSeries::opened},
      {"istio_tcp_connections_closed_total", &TcpSeries::closed}};
  for (const auto& [name, field] : counters) {
    Type(&out, name, "counter");
    for (const auto& [labels, s] : tcp)
      absl::StrAppend(&out, name, "{", labels, "} ", s->*field, "\n");
  }
  Type(&out, "istio_build", "gauge");
  absl::StrAppend(&out, "istio_build{component=\"", component, "\",tag=\"", tag, "\"} 1\n");
  return out;
}

}  // namespace mesh::dataplane::telemetry
