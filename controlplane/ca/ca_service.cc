#include "controlplane/ca/ca_service.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/prometheus.h"
#include "common/x509.h"

namespace mesh::ca {
namespace {

grpc::StatusCode ToGrpc(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kUnauthenticated: return grpc::StatusCode::UNAUTHENTICATED;
    case absl::StatusCode::kPermissionDenied: return grpc::StatusCode::PERMISSION_DENIED;
    case absl::StatusCode::kInvalidArgument: return grpc::StatusCode::INVALID_ARGUMENT;
    default: return grpc::StatusCode::INTERNAL;
  }
}

}  // namespace

grpc::Status CaService::CreateCertificate(grpc::ServerContext* context,
                                          const istio::v1::auth::IstioCertificateRequest* request,
                                          istio::v1::auth::IstioCertificateResponse* response) {
  auto refuse = [&](const absl::Status& s) {
    ++refused_;
    log::Warn("ca: refused a certificate for ", context->peer(), ": ", s.message());
    return grpc::Status(ToGrpc(s.code()), std::string(s.message()));
  };
  std::string token;
  auto auth = context->client_metadata().find("authorization");
  if (auth != context->client_metadata().end()) {
    std::string value(auth->second.data(), auth->second.size());
    if (absl::StartsWith(value, "Bearer ")) token = value.substr(7);
  }
  ++requests_;
  absl::StatusOr<Identity> identity = tokens_->Authenticate(token);
  if (!identity.ok()) {
    ++auth_failures_;
    return refuse(identity.status());
  }
  absl::StatusOr<IssuedCertificate> cert =
      authority_->Sign(request->csr(), *identity, absl::Seconds(request->validity_duration()));
  if (!cert.ok()) {
    if (absl::IsInvalidArgument(cert.status())) ++csr_errors_;
    return refuse(cert.status());
  }
  response->add_cert_chain(cert->cert_pem);
  response->add_cert_chain(authority_->root_cert_pem());
  ++issued_;
  log::Info("ca: issued ", identity->SpiffeId(authority_->options().trust_domain), " to ",
            context->peer(), " until ", absl::FormatTime(cert->not_after));
  return grpc::Status::OK;
}

std::string CaService::MetricsText() const {
  using prometheus::Type;
  std::string out = absl::StrCat(
      Type("meshpilot_ca_certificates_total", "counter"),
      "meshpilot_ca_certificates_total{result=\"issued\"} ", issued_.load(),
      "\nmeshpilot_ca_certificates_total{result=\"refused\"} ", refused_.load(), "\n",
      Type("citadel_server_csr_count", "counter"), "citadel_server_csr_count ", requests_.load(),
      "\n", Type("citadel_server_success_cert_issuance_count", "counter"),
      "citadel_server_success_cert_issuance_count ", issued_.load(), "\n",
      Type("citadel_server_authentication_failure_count", "counter"),
      "citadel_server_authentication_failure_count ", auth_failures_.load(), "\n",
      Type("citadel_server_csr_parsing_err_count", "counter"),
      "citadel_server_csr_parsing_err_count ", csr_errors_.load(), "\n");
  if (absl::StatusOr<x509::CertificateInfo> root = x509::Inspect(authority_->root_cert_pem());
      root.ok()) {
    absl::StrAppend(&out, Type("citadel_server_root_cert_expiry_timestamp", "gauge"),
                    "citadel_server_root_cert_expiry_timestamp ",
                    absl::ToUnixSeconds(root->not_after), "\n");
  }
  return out;
}

}  // namespace mesh::ca
