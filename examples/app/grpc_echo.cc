#include "examples/app/grpc_echo.h"

#include <grpcpp/grpcpp.h>

#include <csignal>
#include <cstdio>
#include <thread>

#include "meshpilot/testing/v1/echo.grpc.pb.h"

namespace mesh::demo {
namespace {

using grpc::ServerContext;
using grpc::Status;
using meshpilot::testing::v1::Echo;
using meshpilot::testing::v1::EchoRequest;
using meshpilot::testing::v1::EchoResponse;

class EchoService final : public Echo::Service {
 public:
  explicit EchoService(const GrpcEchoOptions& options) : options_(options) {}

  Status Whoami(ServerContext*, const meshpilot::testing::v1::WhoamiRequest*,
                meshpilot::testing::v1::WhoamiResponse* res) override {
    if (options_.fail_code) return Failing();
    res->set_name(options_.name);
    res->set_version(options_.version);
    return Status::OK;
  }
  Status Say(ServerContext* context, const EchoRequest* req, EchoResponse* res) override {
    Wait(*req);
    if (options_.fail_code) return Failing();
    Fill(req->message(), res);
    for (const auto& [key, value] : context->client_metadata()) {
      (*res->mutable_metadata())[std::string(key.data(), key.size())] =
          std::string(value.data(), value.size());
    }
    return Status::OK;
  }
  Status Repeat(ServerContext*, const EchoRequest* req,
                grpc::ServerWriter<EchoResponse>* writer) override {
    if (options_.fail_code) return Failing();
    for (int i = 0; i < req->repeat(); ++i) {
      Wait(*req);
      EchoResponse res;
      Fill(req->message() + " " + std::to_string(i), &res);
      if (!writer->Write(res)) break;
    }
    return Status::OK;
  }
  Status Collect(ServerContext*, grpc::ServerReader<EchoRequest>* reader,
                 EchoResponse* res) override {
    if (options_.fail_code) return Failing();
    EchoRequest req;
    int64_t bytes = 0;
    int count = 0;
    while (reader->Read(&req)) {
      Wait(req);
      bytes += static_cast<int64_t>(req.payload().size());
      ++count;
    }
    Fill(std::to_string(count), res);
    res->set_bytes(bytes);
    return Status::OK;
  }
  Status Chat(ServerContext*,
              grpc::ServerReaderWriter<EchoResponse, EchoRequest>* stream) override {
    if (options_.fail_code) return Failing();
    EchoRequest req;
    while (stream->Read(&req)) {
      EchoResponse res;
      Fill(req.message(), &res);
      if (!stream->Write(res)) break;
    }
    return Status::OK;
  }

 private:
  void Fill(const std::string& message, EchoResponse* res) const {
    res->set_message(message);
    res->set_name(options_.name);
    res->set_version(options_.version);
  }
  static void Wait(const EchoRequest& req) {
    if (req.delay_ms() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(req.delay_ms()));
  }
  Status Failing() const {
    return Status(static_cast<grpc::StatusCode>(options_.fail_code),
                  options_.name + " " + options_.version + " failing");
  }

  const GrpcEchoOptions& options_;
};

grpc::Server* g_grpc_server = nullptr;

}  // namespace

int ServeGrpcEcho(const GrpcEchoOptions& options) {
  EchoService service(options);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(options.listen, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) {
    std::fprintf(stderr, "mesh-demo-app: cannot serve gRPC on %s\n", options.listen.c_str());
    return 1;
  }
  g_grpc_server = server.get();
  std::signal(SIGTERM, [](int) { std::thread([] { g_grpc_server->Shutdown(); }).detach(); });
  std::fprintf(stderr, "mesh-demo-app: ready name=%s version=%s mode=grpc listen=%s\n",
               options.name.c_str(), options.version.c_str(), options.listen.c_str());
  server->Wait();
  return 0;
}

}  // namespace mesh::demo
