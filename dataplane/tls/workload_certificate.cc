#include "dataplane/tls/workload_certificate.h"

#include <grpcpp/grpcpp.h>

#include <random>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/x509.h"
#include "dataplane/xds/grpc_transport.h"
#include "istio/v1/auth/ca.grpc.pb.h"

namespace mesh::dataplane {

WorkloadCertificate::WorkloadCertificate(Options options, Callback on_change)
    : options_(std::move(options)), on_change_(std::move(on_change)) {}

WorkloadCertificate::~WorkloadCertificate() {
  Stop();
}

void WorkloadCertificate::Start() {
  thread_ = std::thread([this] { Run(); });
}

void WorkloadCertificate::Stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

WorkloadCertificate::CredentialsPtr WorkloadCertificate::current() const {
  std::lock_guard lock(mu_);
  return current_;
}

std::string WorkloadCertificate::last_error() const {
  std::lock_guard lock(mu_);
  return last_error_;
}

int64_t WorkloadCertificate::renewals() const {
  std::lock_guard lock(mu_);
  return renewals_;
}

absl::StatusOr<WorkloadCertificate::CredentialsPtr> WorkloadCertificate::Fetch(
    const std::string& server) const {
  absl::StatusOr<x509::KeyAndCsr> made = x509::MakeKeyAndCsr();
  if (!made.ok()) return made.status();
  auto channel = grpc::CreateChannel(server, ControlPlaneCredentials(options_.xds_root_pem));
  auto stub = istio::v1::auth::IstioCertificateService::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  ctx.AddMetadata("authorization", "Bearer " + options_.token);
  istio::v1::auth::IstioCertificateRequest request;
  request.set_csr(made->csr_pem);
  istio::v1::auth::IstioCertificateResponse response;
  grpc::Status status = stub->CreateCertificate(&ctx, request, &response);
  if (!status.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                        absl::StrCat("CA at ", server, ": ", status.error_message()));
  }
  if (response.cert_chain_size() < 2)
    return absl::InternalError(absl::StrCat("CA at ", server, ": no certificate chain"));
  absl::StatusOr<x509::CertificateInfo> info = x509::Inspect(response.cert_chain(0));
  if (!info.ok()) return info.status();
  auto out = std::make_shared<Credentials>();
  out->cert_pem = response.cert_chain(0);
  out->root_pem = response.cert_chain(response.cert_chain_size() - 1);
  out->key_pem = std::move(made->key_pem);
  out->spiffe_id = info->uri_sans.empty() ? "" : info->uri_sans[0];
  out->not_before = info->not_before;
  out->not_after = info->not_after;
  return CredentialsPtr(std::move(out));
}

void WorkloadCertificate::Run() {
  std::mt19937_64 rng(std::random_device{}());
  absl::Duration backoff = options_.retry_min;
  size_t next_server = 0;
  for (;;) {
    absl::Time wake_at;
    {
      std::lock_guard lock(mu_);
      if (stop_) return;
    }
    const std::string& server = options_.servers[next_server % options_.servers.size()];
    const absl::Time asked_at = absl::Now();
    absl::StatusOr<CredentialsPtr> got = Fetch(server);
    if (got.ok()) {
      const Credentials& c = **got;
      {
        std::lock_guard lock(mu_);
        current_ = *got;
        last_error_.clear();
        ++renewals_;
      }
      log::Info("meshproxy: certificate for ", c.spiffe_id, " valid until ",
                absl::FormatTime(c.not_after));
      if (on_change_) on_change_(*got);
      backoff = options_.retry_min;
      // Measured from the request, not from notBefore (the CA backdates that for clock skew).
      wake_at = asked_at + (c.not_after - asked_at) * options_.renew_fraction;
    } else {
      {
        std::lock_guard lock(mu_);
        last_error_ = std::string(got.status().message());
      }
      log::Warn("meshproxy: no certificate: ", got.status().message());
      ++next_server;  // the next control plane, if there is one
      std::uniform_real_distribution<double> jitter(0.8, 1.2);
      wake_at = absl::Now() + backoff * jitter(rng);
      backoff = std::min(backoff * 2, options_.retry_max);
    }
    std::unique_lock lock(mu_);
    wake_.wait_for(lock,
                   absl::ToChronoNanoseconds(std::max(absl::ZeroDuration(), wake_at - absl::Now())),
                   [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return stop_; });
    if (stop_) return;
  }
}

}  // namespace mesh::dataplane
