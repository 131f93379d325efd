#pragma once

#include "controlplane/api/rest_server.h"
#include "controlplane/traces/trace_store.h"

// The trace store on meshpilot's REST port: OTLP/HTTP in (POST /v1/traces, protobuf, with the
// admin or the proxies' ingest token) and Jaeger's query API out (GET /api/services,
// /api/services/{service}/operations, /api/traces, /api/traces/{id}), with its metrics.
namespace mesh::traces {

void AddTraceApi(api::RestServer& server, TraceStore* store);

// One POST /v1/traces, as OTLP/HTTP answers it: 200 with an ExportTraceServiceResponse (partial
// success when some spans were refused), 400 with a google.rpc.Status for a body that is not an
// ExportTraceServiceRequest, 415 for another encoding.
api::RestServer::RawReply IngestOtlp(TraceStore& store, const std::string& body,
                                     const std::string& content_type);

}  // namespace mesh::traces
