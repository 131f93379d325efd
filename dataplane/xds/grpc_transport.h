#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/time.h"
#include "dataplane/xds/xds_client.h"

namespace grpc {
class ChannelCredentials;
class ClientContext;
}  // namespace grpc

namespace mesh::dataplane {

// Credentials for a channel to meshpilot: plaintext when `root_pem` is empty, else TLS that
// verifies the control plane against `root_pem` (the mesh root the operator gave) and presents
// `cert_pem`/`key_pem` when they are given (ADS over TLS requires them; the CA service not).
std::shared_ptr<grpc::ChannelCredentials> ControlPlaneCredentials(const std::string& root_pem,
                                                                  const std::string& cert_pem = "",
                                                                  const std::string& key_pem = "");

// Keeps one ADS stream to the first control plane that answers, trying `servers` in order and
// backing off with jitter between rounds, and feeds an XdsClient. While no control plane can be
// reached the client keeps its last config. Runs on its own thread.
class AdsConnection : public AdsTransport {
 public:
  struct Options {
    absl::Duration initial_backoff = absl::Milliseconds(100);
    absl::Duration max_backoff = absl::Seconds(5);
    double jitter = 0.2;  // each wait is scaled by a random factor in [1 - jitter, 1 + jitter]
    // The credentials of each new stream (plaintext when unset). nullptr means "not yet" (the
    // workload certificate has not arrived): no stream is opened and the round backs off.
    std::function<std::shared_ptr<grpc::ChannelCredentials>()> credentials;
  };
  AdsConnection(std::vector<std::string> servers, XdsClient* client, Options options);
  ~AdsConnection() override;

  void Start();
  // Closes the stream and joins the thread. Idempotent.
  void Stop();
  // The server of the current stream, or empty.
  std::string connected_to() const;

  // AdsTransport
  bool Send(const envoy::service::discovery::v3::DiscoveryRequest& request) override;

 private:
  class Stream;
  void Run();

  const std::vector<std::string> servers_;
  XdsClient* client_;
  const Options options_;
  std::atomic<bool> stop_{false};
  mutable std::mutex mu_;
  std::shared_ptr<Stream> stream_;  // guarded by mu_
  std::string connected_to_;        // guarded by mu_
  std::thread thread_;
};

}  // namespace mesh::dataplane
