#pragma once

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "dataplane/router/router_stage.h"
#include "dataplane/stream/stream.h"
#include "dataplane/telemetry/access_log.h"
#include "dataplane/telemetry/request_telemetry.h"

namespace mesh::dataplane {

// What a request's access log lines need beyond its telemetry: the fields of its head and of its
// response head that the formats name, kept before the head goes upstream. One per request on a
// listener with access logs.
class RequestLog {
 public:
  RequestLog(const std::vector<telemetry::AccessLogPtr>& logs, const RequestHead& head);
  // The upstream's response head, and the host ("ip:port") that sent it.
  void OnResponseHead(const HeaderMap& headers, std::string upstream_host);
  // A line to every log, when the stream ends at `end`.
  void Write(const telemetry::RequestTelemetry& t, absl::Time end, const DownstreamInfo& downstream,
             const std::string& route, const std::string& cluster) const;

 private:
  void Keep(const std::string& name, const RequestHead& head);
  std::vector<telemetry::AccessLogPtr> logs_;
  const char* protocol_;
  HeaderMap request_, response_;
  std::string upstream_host_;
};

}  // namespace mesh::dataplane
