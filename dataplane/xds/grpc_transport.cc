#include "dataplane/xds/grpc_transport.h"

#include <grpcpp/grpcpp.h>

#include <random>

#include "common/log.h"
#include "envoy/service/discovery/v3/discovery.grpc.pb.h"

namespace mesh::dataplane {

using envoy::service::discovery::v3::AggregatedDiscoveryService;
using envoy::service::discovery::v3::DiscoveryRequest;
using envoy::service::discovery::v3::DiscoveryResponse;

class AdsConnection::Stream {
 public:
  Stream(const std::string& server, std::shared_ptr<grpc::ChannelCredentials> credentials) {
    channel_ = grpc::CreateChannel(server, std::move(credentials));
    stub_ = AggregatedDiscoveryService::NewStub(channel_);
    stream_ = stub_->StreamAggregatedResources(&ctx_);
  }
  bool Write(const DiscoveryRequest& req) {
    std::lock_guard lock(write_mu_);  // one writer at a time; reads run on the owner's thread
    return stream_->Write(req);
  }
  bool Read(DiscoveryResponse* res) { return stream_->Read(res); }
  void Cancel() { ctx_.TryCancel(); }
  grpc::Status Finish() { return stream_->Finish(); }

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<AggregatedDiscoveryService::Stub> stub_;
  grpc::ClientContext ctx_;
  std::mutex write_mu_;
  std::unique_ptr<grpc::ClientReaderWriter<DiscoveryRequest, DiscoveryResponse>> stream_;
};

std::shared_ptr<grpc::ChannelCredentials> ControlPlaneCredentials(const std::string& root_pem,
                                                                  const std::string& cert_pem,
                                                                  const std::string& key_pem) {
  if (root_pem.empty()) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = root_pem;
  ssl.pem_cert_chain = cert_pem;
  ssl.pem_private_key = key_pem;
  return grpc::SslCredentials(ssl);
}

AdsConnection::AdsConnection(std::vector<std::string> servers, XdsClient* client, Options options)
    : servers_(std::move(servers)), client_(client), options_(options) {}

AdsConnection::~AdsConnection() {
  Stop();
}

void AdsConnection::Start() {
  thread_ = std::thread([this] { Run(); });
}

void AdsConnection::Stop() {
  if (stop_.exchange(true)) {
    if (thread_.joinable()) thread_.join();
    return;
  }
  {
    std::lock_guard lock(mu_);
    if (stream_) stream_->Cancel();
  }
  if (thread_.joinable()) thread_.join();
}

std::string AdsConnection::connected_to() const {
  std::lock_guard lock(mu_);
  return connected_to_;
}

bool AdsConnection::Send(const DiscoveryRequest& request) {
  std::shared_ptr<Stream> stream;
  {
    std::lock_guard lock(mu_);
    stream = stream_;
  }
  return stream && stream->Write(request);
}

void AdsConnection::Run() {
  std::mt19937_64 rng(std::random_device{}());
  absl::Duration backoff = options_.initial_backoff;
  while (!stop_) {
    for (const std::string& server : servers_) {
      if (stop_) break;
      std::shared_ptr<grpc::ChannelCredentials> credentials =
          options_.credentials ? options_.credentials() : grpc::InsecureChannelCredentials();
      if (!credentials) {
        log::Debug("meshproxy: ADS waits for the workload certificate");
        break;
      }
      auto stream = std::make_shared<Stream>(server, std::move(credentials));
      {
        std::lock_guard lock(mu_);
        stream_ = stream;
        connected_to_ = server;
      }
      client_->OnConnect(this);
      DiscoveryResponse response;
      bool got_any = false;
      while (!stop_ && stream->Read(&response)) {
        got_any = true;
        client_->OnResponse(response);
      }
      client_->OnDisconnect();
      {
        std::lock_guard lock(mu_);
        stream_.reset();
        connected_to_.clear();
      }
      if (stop_) stream->Cancel();  // else the stream has ended, and Finish says why
      grpc::Status status = stream->Finish();
      if (!stop_ && !status.ok() && status.error_code() != grpc::StatusCode::CANCELLED) {
        log::Warn("meshproxy: ADS stream to ", server, " ended: ", status.error_message());
      }
      if (got_any) backoff = options_.initial_backoff;  // a working server: start over gently
    }
    if (stop_) break;
    std::uniform_real_distribution<double> factor(1 - options_.jitter, 1 + options_.jitter);
    absl::Duration wait = backoff * factor(rng);
    backoff = std::min(backoff * 2, options_.max_backoff);
    for (absl::Time until = absl::Now() + wait; !stop_ && absl::Now() < until;) {
      absl::SleepFor(std::min(absl::Milliseconds(50), until - absl::Now()));
    }
  }
}

}  // namespace mesh::dataplane
