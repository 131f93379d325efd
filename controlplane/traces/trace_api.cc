#include "controlplane/traces/trace_api.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "google/rpc/status.pb.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.pb.h"

namespace mesh::traces {
namespace {

constexpr char kProtobuf[] = "application/x-protobuf";

api::RestServer::RawReply Failure(int http_status, int grpc_code, std::string message) {
  google::rpc::Status status;
  status.set_code(grpc_code);
  status.set_message(std::move(message));
  return {http_status, status.SerializeAsString(), kProtobuf};
}

}  // namespace

api::RestServer::RawReply IngestOtlp(TraceStore& store, const std::string& body,
                                     const std::string& content_type) {
  const std::string type = absl::AsciiStrToLower(content_type.substr(0, content_type.find(';')));
  if (absl::StripAsciiWhitespace(type) != kProtobuf &&
      absl::StripAsciiWhitespace(type) != "application/protobuf") {
    return Failure(415, 3,
                   absl::StrCat("OTLP/HTTP in protobuf (Content-Type: ", kProtobuf,
                                ") is accepted, not \"", content_type, "\""));
  }
  opentelemetry::proto::collector::trace::v1::ExportTraceServiceRequest request;
  if (!request.ParseFromString(body))
    return Failure(400, 3, "the body is not an OTLP ExportTraceServiceRequest");
  TraceStore::AddResult added = store.Add(request);
  opentelemetry::proto::collector::trace::v1::ExportTraceServiceResponse response;
  if (added.rejected > 0) {
    response.mutable_partial_success()->set_rejected_spans(static_cast<int64_t>(added.rejected));
    response.mutable_partial_success()->set_error_message(added.error);
  }
  return {200, response.SerializeAsString(), kProtobuf};
}

void AddTraceApi(api::RestServer& server, TraceStore* store) {
  server.AddIngestHandler("/v1/traces", [store](const std::string& body, const std::string& type) {
    return IngestOtlp(*store, body, type);
  });
  server.AddJsonHandler("/api/services", [store](const auto&) -> absl::StatusOr<std::string> {
    return store->ServicesJson();
  });
  server.AddJsonHandler("/api/services/([^/]+)/operations",
                        [store](const auto& params) -> absl::StatusOr<std::string> {
                          return store->OperationsJson(params.at("1"));
                        });
  server.AddJsonHandler("/api/traces", [store](const auto& params) -> absl::StatusOr<std::string> {
    absl::StatusOr<TraceStore::Query> query = TraceStore::ParseQuery(params, absl::Now());
    if (!query.ok()) return query.status();
    return store->TracesJson(*query);
  });
  server.AddJsonHandler("/api/traces/([0-9a-fA-F]+)",
                        [store](const auto& params) { return store->TraceJson(params.at("1")); });
  server.AddMetricsSource([store] { return store->MetricsText(); });
}

}  // namespace mesh::traces
