#include "dataplane/router/local_reply.h"

#include <catch2/catch.hpp>

namespace mesh::dataplane {
namespace {

TEST_CASE("gRPC requests are recognized by content-type, grpc-web excepted") {
  CHECK(IsGrpcContentType("application/grpc"));
  CHECK(IsGrpcContentType("application/grpc+proto"));
  CHECK(IsGrpcContentType("Application/GRPC;charset=utf-8"));
  CHECK_FALSE(IsGrpcContentType("application/grpc-web"));
  CHECK_FALSE(IsGrpcContentType("application/grpcx"));
  CHECK_FALSE(IsGrpcContentType("text/plain"));
}

TEST_CASE("HTTP statuses map to the gRPC statuses Envoy gives gRPC clients, and back") {
  CHECK(GrpcStatusForHttp(503) == 14);  // UNAVAILABLE
  CHECK(GrpcStatusForHttp(504) == 14);
  CHECK(GrpcStatusForHttp(429) == 14);
  CHECK(GrpcStatusForHttp(404) == 12);  // UNIMPLEMENTED
  CHECK(GrpcStatusForHttp(403) == 7);   // PERMISSION_DENIED
  CHECK(GrpcStatusForHttp(401) == 16);  // UNAUTHENTICATED
  CHECK(GrpcStatusForHttp(400) == 13);  // INTERNAL
  CHECK(GrpcStatusForHttp(500) == 2);   // UNKNOWN
  CHECK(HttpStatusForGrpc(14) == 503);
  CHECK(HttpStatusForGrpc(4) == 504);
  CHECK(HttpStatusForGrpc(7) == 403);
  CHECK(HttpStatusForGrpc(99) == 500);
}

TEST_CASE("A local reply is a trailers-only gRPC response for gRPC clients, text for others") {
  LocalReply reply{503, "no healthy upstream", {{"x-envoy-overloaded", "true"}}, std::nullopt};
  RenderedReply grpc = Render(reply, true);
  CHECK(grpc.status == 200);
  CHECK(grpc.body.empty());
  CHECK(grpc.headers == HeaderPairs{{"content-type", "application/grpc"},
                                    {"grpc-status", "14"},
                                    {"grpc-message", "no healthy upstream"},
                                    {"x-envoy-overloaded", "true"}});
  RenderedReply text = Render(reply, false);
  CHECK(text.status == 503);
  CHECK(text.body == "no healthy upstream\n");
  CHECK(text.headers ==
        HeaderPairs{{"content-type", "text/plain"}, {"x-envoy-overloaded", "true"}});

  LocalReply fault{0, "fault filter abort", {}, 14};
  CHECK(Render(fault, true).headers[1] == std::pair<std::string, std::string>{"grpc-status", "14"});
  CHECK(Render(fault, false).status == 503);
  CHECK(PercentEncodeGrpcMessage("50% off\n") == "50%25 off%0A");
}

}  // namespace
}  // namespace mesh::dataplane
