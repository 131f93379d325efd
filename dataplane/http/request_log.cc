#include "dataplane/http/request_log.h"

namespace mesh::dataplane {

RequestLog::RequestLog(const std::vector<telemetry::AccessLogPtr>& logs, const RequestHead& head)
    : logs_(logs), protocol_(head.protocol == HttpProtocol::kHttp2 ? "HTTP/2" : "HTTP/1.1") {
  for (const auto& log : logs_) {
    for (const std::string& name : log->format.request_headers()) Keep(name, head);
  }
}

void RequestLog::OnResponseHead(const HeaderMap& headers, std::string upstream_host) {
  upstream_host_ = std::move(upstream_host);
  for (const auto& log : logs_) {
    for (const std::string& name : log->format.response_headers()) {
      if (const std::string* v = headers.Get(name); v && !response_.Get(name))
        response_.Add(name, *v);
    }
  }
}

void RequestLog::Write(const telemetry::RequestTelemetry& t, absl::Time end,
                       const DownstreamInfo& downstream, const std::string& route,
                       const std::string& cluster) const {
  telemetry::AccessLogEntry e;
  e.start = t.start();
  e.duration = end - t.start();
  e.protocol = protocol_;
  e.request = &request_;
  e.response = &response_;
  e.response_code = t.response_code();
  e.response_flags = t.flags();
  e.response_code_details = t.details();
  e.bytes_received = t.request_bytes();
  e.bytes_sent = t.response_bytes();
  e.upstream_host = upstream_host_;
  e.upstream_cluster = cluster;
  e.route_name = route;
  e.downstream_local_address = downstream.local_address;
  e.downstream_remote_address = downstream.peer_address;
  for (const auto& log : logs_) log->Write(e);
}

void RequestLog::Keep(const std::string& name, const RequestHead& head) {
  if (request_.Get(name)) return;
  if (name == ":method") return request_.Add(name, head.method);
  if (name == ":path") return request_.Add(name, head.path);
  if (name == ":authority" || name == "host") return request_.Add(name, head.authority);
  if (name == ":scheme") return;
  if (const std::string* v = head.headers.Get(name)) request_.Add(name, *v);
}

}  // namespace mesh::dataplane
