#include "controlplane/ca/ca_service.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"

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
  absl::StatusOr<Identity> identity = tokens_->Authenticate(token);
  if (!identity.ok()) return refuse(identity.status());
  absl::StatusOr<IssuedCertificate> cert =
      authority_->Sign(request->csr(), *identity, absl::Seconds(request->validity_duration()));
  if (!cert.ok()) return refuse(cert.status());
  response->add_cert_chain(cert->cert_pem);
  response->add_cert_chain(authority_->root_cert_pem());
  ++issued_;
  log::Info("ca: issued ", identity->SpiffeId(authority_->options().trust_domain), " to ",
            context->peer(), " until ", absl::FormatTime(cert->not_after));
  return grpc::Status::OK;
}

}  // namespace mesh::ca
