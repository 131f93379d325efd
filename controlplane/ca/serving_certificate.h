#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "controlplane/ca/authority.h"

namespace grpc {
class ServerCredentials;
}

namespace mesh::ca {

// meshpilot's own certificate for ADS over TLS, signed by the mesh CA with DNS and IP names so
// proxies verify the control plane against the mesh root. The key is made at start and never
// leaves `dir` (key.pem, mode 0600); the certificate (cert.pem) and the root (root.pem) sit
// beside it. A thread signs a new certificate at two thirds of the current one's life; gRPC's
// file-watching certificate provider picks it up, so new handshakes never see an expired one.
class ServingCertificate {
 public:
  struct Options {
    std::string dir;
    std::vector<std::string> names;  // DNS names and IP addresses
    absl::Duration ttl = absl::Hours(24);
    absl::Duration refresh = absl::Seconds(10);  // how often gRPC rereads the files
  };
  static absl::StatusOr<std::unique_ptr<ServingCertificate>> Start(const Authority* authority,
                                                                   Options options);
  ~ServingCertificate();

  // Server credentials for the TLS port: TLS 1.2+, this certificate, and client certificates
  // requested and verified against the mesh root when sent, but not required (a proxy without
  // an identity yet must reach the CA service; ADS itself insists on one).
  std::shared_ptr<grpc::ServerCredentials> Credentials() const;

 private:
  ServingCertificate(const Authority* authority, Options options, std::string csr_pem)
      : authority_(authority), options_(std::move(options)), csr_pem_(std::move(csr_pem)) {}
  // Signs a certificate and writes it; the time it should be renewed.
  absl::StatusOr<absl::Time> Renew();
  void Run(absl::Time renew_at);

  const Authority* authority_;
  const Options options_;
  const std::string csr_pem_;  // for the one key; each renewal signs it again
  std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace mesh::ca
