#include "dataplane/admin/stats.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "dataplane/telemetry/access_log.h"
#include "dataplane/upstream/cluster_table.h"

namespace mesh::dataplane {

void Histogram::Record(absl::Duration d) {
  double ms = absl::ToDoubleMilliseconds(d);
  size_t i = std::lower_bound(kBoundsMs.begin(), kBoundsMs.end(), ms) - kBoundsMs.begin();
  ++buckets[i];
  ++count;
  sum_ms += ms;
}

void Histogram::Merge(const Histogram& other) {
  for (size_t i = 0; i < buckets.size(); ++i) buckets[i] += other.buckets[i];
  count += other.count;
  sum_ms += other.sum_ms;
}

void WorkerStats::CountRequest(const std::string& listener, const std::string& route,
                               const std::string& cluster, int status) {
  RequestKeyLess::View view{listener, route, cluster, status / 100};
  auto it = requests.find(view);
  if (it == requests.end())
    it = requests.emplace(RequestKey{listener, route, cluster, status / 100}, 0).first;
  ++it->second;
}

void WorkerStats::Merge(const WorkerStats& o) {
  for (const auto& [k, v] : o.requests) requests[k] += v;
  for (const auto& [k, v] : o.upstream_latency) upstream_latency[k].Merge(v);
  for (const auto& [k, v] : o.upstream_connect_failures) upstream_connect_failures[k] += v;
  for (const auto& [k, v] : o.upstream_timeouts) upstream_timeouts[k] += v;
  for (const auto& [k, v] : o.no_healthy_upstream) no_healthy_upstream[k] += v;
  for (const auto& [k, v] : o.overflows) overflows[k] += v;
  downstream_active += o.downstream_active;
  downstream_total += o.downstream_total;
  downstream_rejected += o.downstream_rejected;
  tcp_bytes_sent += o.tcp_bytes_sent;
  tcp_bytes_received += o.tcp_bytes_received;
  rbac_denied += o.rbac_denied;
  rbac_denied_connections += o.rbac_denied_connections;
  jwt_refused += o.jwt_refused;
  istio.Merge(o.istio);
}

namespace {

std::string Label(const std::string& v) {
  return absl::StrReplaceAll(v, {{"\\", "\\\\"}, {"\"", "\\\""}, {"\n", "\\n"}});
}

void Counter(std::string* out, const char* name, const char* help) {
  absl::StrAppend(out, "# HELP ", name, " ", help, "\n# TYPE ", name, " counter\n");
}

void Gauge(std::string* out, const char* name, const char* help) {
  absl::StrAppend(out, "# HELP ", name, " ", help, "\n# TYPE ", name, " gauge\n");
}

void ByCluster(std::string* out, const char* name, const char* help,
               const std::map<std::string, uint64_t>& values) {
  Counter(out, name, help);
  for (const auto& [cluster, v] : values)
    absl::StrAppend(out, name, "{cluster=\"", Label(cluster), "\"} ", v, "\n");
}

}  // namespace

std::string RenderPrometheus(const WorkerStats& s, const ProxyCounters& p) {
  std::string out;
  Counter(&out, "meshproxy_requests_total",
          "HTTP requests answered, by listener, route, cluster and response class.");
  for (const auto& [k, v] : s.requests) {
    absl::StrAppend(&out, "meshproxy_requests_total{listener=\"", Label(k.listener), "\",route=\"",
                    Label(k.route), "\",cluster=\"", Label(k.cluster), "\",response_class=\"",
                    k.response_class, "xx\"} ", v, "\n");
  }
  const char* hist = "meshproxy_upstream_request_duration_milliseconds";
  absl::StrAppend(&out, "# HELP ", hist,
                  " Time from sending a request upstream to its response headers, by cluster.\n",
                  "# TYPE ", hist, " histogram\n");
  for (const auto& [cluster, h] : s.upstream_latency) {
    uint64_t cumulative = 0;
    for (size_t i = 0; i < h.buckets.size(); ++i) {
      cumulative += h.buckets[i];
      std::string le = i < Histogram::kBoundsMs.size() ? absl::StrCat(Histogram::kBoundsMs[i])
                                                       : std::string("+Inf");
      absl::StrAppend(&out, hist, "_bucket{cluster=\"", Label(cluster), "\",le=\"", le, "\"} ",
                      cumulative, "\n");
    }
    absl::StrAppend(&out, hist, "_sum{cluster=\"", Label(cluster), "\"} ", h.sum_ms, "\n", hist,
                    "_count{cluster=\"", Label(cluster), "\"} ", h.count, "\n");
  }
  ByCluster(&out, "meshproxy_upstream_connect_failures_total",
            "Upstream connections that could not be made.", s.upstream_connect_failures);
  ByCluster(&out, "meshproxy_upstream_timeouts_total", "Requests that hit their route timeout.",
            s.upstream_timeouts);
  ByCluster(&out, "meshproxy_no_healthy_upstream_total",
            "Requests answered 503 because the cluster had no endpoint.", s.no_healthy_upstream);
  ByCluster(&out, "meshproxy_upstream_overflows_total",
            "Requests and retries refused by a circuit breaker (connections, pending requests, "
            "requests, retries).",
            s.overflows);
  Gauge(&out, "meshproxy_downstream_connections_active", "Client connections now open.");
  absl::StrAppend(&out, "meshproxy_downstream_connections_active ", s.downstream_active, "\n");
  Counter(&out, "meshproxy_downstream_connections_total", "Client connections accepted.");
  absl::StrAppend(&out, "meshproxy_downstream_connections_total ", s.downstream_total, "\n");
  Counter(&out, "meshproxy_downstream_rejected_total",
          "Client requests refused as malformed, oversized or too slow.");
  absl::StrAppend(&out, "meshproxy_downstream_rejected_total ", s.downstream_rejected, "\n");
  Counter(&out, "meshproxy_tcp_bytes_total", "Bytes proxied by TCP listeners, by direction.");
  absl::StrAppend(&out, "meshproxy_tcp_bytes_total{direction=\"upstream\"} ", s.tcp_bytes_sent,
                  "\nmeshproxy_tcp_bytes_total{direction=\"downstream\"} ", s.tcp_bytes_received,
                  "\n");
  Counter(&out, "meshproxy_rbac_denied_total",
          "Refused by an authorization policy: HTTP requests (403) and TCP connections (closed).");
  absl::StrAppend(&out, "meshproxy_rbac_denied_total{kind=\"request\"} ", s.rbac_denied,
                  "\nmeshproxy_rbac_denied_total{kind=\"connection\"} ", s.rbac_denied_connections,
                  "\n");
  Counter(&out, "meshproxy_jwt_refused_total",
          "Requests whose token did not verify under a RequestAuthentication (401).");
  absl::StrAppend(&out, "meshproxy_jwt_refused_total ", s.jwt_refused, "\n");
  Counter(&out, "meshproxy_xds_updates_total", "xDS responses accepted (ACK) and rejected (NACK).");
  absl::StrAppend(&out, "meshproxy_xds_updates_total{result=\"accepted\"} ", p.xds_accepted,
                  "\nmeshproxy_xds_updates_total{result=\"rejected\"} ", p.xds_rejected, "\n");
  Gauge(&out, "meshproxy_xds_connected", "1 while an ADS stream is up.");
  absl::StrAppend(&out, "meshproxy_xds_connected ", p.xds_connected ? 1 : 0, "\n");
  Gauge(&out, "meshproxy_listeners", "Listeners by state.");
  absl::StrAppend(&out, "meshproxy_listeners{state=\"active\"} ", p.listeners_active,
                  "\nmeshproxy_listeners{state=\"draining\"} ", p.listeners_draining, "\n");
  Counter(&out, "meshproxy_istio_series_dropped_total",
          "Requests and connections left out of Istio's metrics: their label set was new when "
          "the series cap was reached.");
  absl::StrAppend(&out, "meshproxy_istio_series_dropped_total ", s.istio.dropped(), "\n");
  out += s.istio.Render("proxy", MESHPILOT_VERSION);
  Counter(&out, "meshproxy_access_log_lines_total",
          "Access log lines, written or dropped (the writer fell more than 4 MiB behind).");
  absl::StrAppend(&out, "meshproxy_access_log_lines_total{result=\"written\"} ",
                  telemetry::AccessLogSink::TotalWritten(),
                  "\nmeshproxy_access_log_lines_total{result=\"dropped\"} ",
                  telemetry::AccessLogSink::TotalDropped(), "\n");
  return out;
}

std::string RenderClusterGauges(const ClusterTable& clusters, absl::Time now) {
  std::string ejections, ejected, connections, pending, requests, invalid, unhealthy;
  for (const auto& [name, c] : clusters.clusters()) {
    uint64_t total = 0, now_ejected = 0;
    for (const Host& h : c.hosts) {
      total += h.state->ejections.load(std::memory_order_relaxed);
      now_ejected += h.state->Ejected(now) ? 1 : 0;
    }
    std::string label = absl::StrCat("{cluster=\"", Label(name), "\"} ");
    absl::StrAppend(&ejections, "meshproxy_outlier_ejections_total", label, total, "\n");
    absl::StrAppend(&ejected, "meshproxy_outlier_hosts_ejected", label, now_ejected, "\n");
    absl::StrAppend(&connections, "meshproxy_upstream_connections_active", label,
                    c.state->connections.load(std::memory_order_relaxed), "\n");
    absl::StrAppend(&pending, "meshproxy_upstream_requests_pending", label,
                    c.state->pending.load(std::memory_order_relaxed), "\n");
    absl::StrAppend(&requests, "meshproxy_upstream_requests_active", label,
                    c.state->requests.load(std::memory_order_relaxed), "\n");
    absl::StrAppend(&invalid, "meshproxy_eds_endpoints_invalid", label, c.invalid_endpoints, "\n");
    absl::StrAppend(&unhealthy, "meshproxy_eds_endpoints_unhealthy", label, c.unhealthy_endpoints,
                    "\n");
  }
  std::string out;
  Counter(&out, "meshproxy_outlier_ejections_total", "Hosts ejected by outlier detection.");
  out += ejections;
  Gauge(&out, "meshproxy_outlier_hosts_ejected", "Hosts ejected now.");
  out += ejected;
  Gauge(&out, "meshproxy_upstream_connections_active",
        "Upstream connections open, idle ones included (the max_connections count).");
  out += connections;
  Gauge(&out, "meshproxy_upstream_requests_pending", "Requests waiting for a connection.");
  out += pending;
  Gauge(&out, "meshproxy_upstream_requests_active", "Requests in flight.");
  out += requests;
  Gauge(&out, "meshproxy_eds_endpoints_invalid",
        "Endpoints of the current assignment dropped as unusable (no IP address, bad port).");
  out += invalid;
  Gauge(&out, "meshproxy_eds_endpoints_unhealthy",
        "Endpoints of the current assignment skipped as reported unhealthy.");
  out += unhealthy;
  return out;
}

}  // namespace mesh::dataplane
