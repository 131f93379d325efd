#include "controlplane/ca/serving_certificate.h"

#include <grpcpp/security/server_credentials.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/log.h"
#include "common/x509.h"
#include "controlplane/store/record_io.h"

namespace mesh::ca {

absl::StatusOr<std::unique_ptr<ServingCertificate>> ServingCertificate::Start(
    const Authority* authority, Options options) {
  absl::StatusOr<x509::KeyAndCsr> made = x509::MakeKeyAndCsr();
  if (!made.ok()) return made.status();
  const std::string dir = options.dir;
  if (absl::Status s =
          store::WriteFileAtomically(dir + "/root.pem", authority->root_cert_pem(), 0644);
      !s.ok())
    return s;
  std::unique_ptr<ServingCertificate> out(
      new ServingCertificate(authority, std::move(options), std::move(made->csr_pem)));
  // The key first: the certificate written next is its match, so a reader never pairs a new
  // key with an old certificate.
  if (absl::Status s = store::WriteFileAtomically(dir + "/key.pem", made->key_pem, 0600); !s.ok())
    return s;
  absl::StatusOr<absl::Time> renew_at = out->Renew();
  if (!renew_at.ok()) return renew_at.status();
  out->thread_ = std::thread([p = out.get(), at = *renew_at] { p->Run(at); });
  return out;
}

ServingCertificate::~ServingCertificate() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

absl::StatusOr<absl::Time> ServingCertificate::Renew() {
  const absl::Time now = absl::Now();
  absl::StatusOr<IssuedCertificate> cert =
      authority_->SignServing(csr_pem_, options_.names, options_.ttl, now);
  if (!cert.ok()) return cert.status();
  if (absl::Status s = store::WriteFileAtomically(options_.dir + "/cert.pem", cert->cert_pem, 0644);
      !s.ok())
    return s;
  log::Info("xds: serving certificate for ", absl::StrJoin(options_.names, ","), " valid until ",
            absl::FormatTime(cert->not_after));
  return now + (cert->not_after - now) * 2 / 3;
}

void ServingCertificate::Run(absl::Time renew_at) {
  std::unique_lock lock(mu_);
  while (!stop_) {
    wake_.wait_for(
        lock, absl::ToChronoNanoseconds(std::max(absl::ZeroDuration(), renew_at - absl::Now())));
    if (stop_ || absl::Now() < renew_at) continue;
    lock.unlock();
    absl::StatusOr<absl::Time> next = Renew();
    if (!next.ok())
      log::Error("xds: cannot renew the serving certificate: ", next.status().message());
    // On failure the current certificate is still valid for a third of its life: retry soon.
    renew_at = next.ok() ? *next : absl::Now() + absl::Seconds(30);
    lock.lock();
  }
}

std::shared_ptr<grpc::ServerCredentials> ServingCertificate::Credentials() const {
  auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      options_.dir + "/key.pem", options_.dir + "/cert.pem", options_.dir + "/root.pem",
      static_cast<unsigned>(absl::ToInt64Seconds(options_.refresh)));
  grpc::experimental::TlsServerCredentialsOptions tls(provider);
  tls.watch_root_certs();
  tls.watch_identity_key_cert_pairs();
  tls.set_cert_request_type(GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY);
  return grpc::experimental::TlsServerCredentials(tls);
}

}  // namespace mesh::ca
