#pragma once

#include <atomic>
#include <memory>

#include "controlplane/ca/authority.h"
#include "controlplane/ca/tokens.h"
#include "istio/v1/auth/ca.grpc.pb.h"

namespace mesh::ca {

// Istio's certificate service on meshpilot's gRPC port: a proxy sends a CSR for the key it made
// itself (the private key never leaves the proxy) with "authorization: Bearer <join token>";
// meshpilot answers the workload certificate and the root. Every refusal is logged with its
// reason and the peer.
class CaService final : public istio::v1::auth::IstioCertificateService::Service {
 public:
  CaService(const Authority* authority, const JoinTokens* tokens)
      : authority_(authority), tokens_(tokens) {}

  grpc::Status CreateCertificate(grpc::ServerContext* context,
                                 const istio::v1::auth::IstioCertificateRequest* request,
                                 istio::v1::auth::IstioCertificateResponse* response) override;

  int64_t issued() const { return issued_; }
  int64_t refused() const { return refused_; }

  // meshpilot_ca_certificates_total, and Citadel's names for Istio's dashboards:
  // citadel_server_csr_count, citadel_server_success_cert_issuance_count,
  // citadel_server_authentication_failure_count, citadel_server_csr_parsing_err_count and
  // citadel_server_root_cert_expiry_timestamp.
  std::string MetricsText() const;

 private:
  const Authority* authority_;
  const JoinTokens* tokens_;
  std::atomic<int64_t> requests_{0}, issued_{0}, refused_{0}, auth_failures_{0}, csr_errors_{0};
};

}  // namespace mesh::ca
