#pragma once

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace mesh::dataplane {

// The proxy's own identity: it makes a key (which never leaves the process), sends a CSR with
// its join token to meshpilot's CA (Istio's certificate service, on the --xds addresses in
// order, over TLS when the operator gave the mesh root), and renews the certificate at two thirds
// of its lifetime, so connections never see an expired one. Failures are retried with backoff; the
// last good certificate stays in use.
class WorkloadCertificate {
 public:
  struct Credentials {
    std::string cert_pem, key_pem, root_pem;
    std::string spiffe_id;
    absl::Time not_before, not_after;
  };
  using CredentialsPtr = std::shared_ptr<const Credentials>;
  struct Options {
    std::vector<std::string> servers;  // host:port of meshpilot's gRPC endpoints
    std::string token;
    std::string xds_root_pem;  // when set, the CA is reached over TLS verified against it
    absl::Duration retry_min = absl::Milliseconds(500), retry_max = absl::Seconds(30);
    double renew_fraction = 2.0 / 3.0;
  };
  using Callback = std::function<void(CredentialsPtr)>;

  WorkloadCertificate(Options options, Callback on_change);
  ~WorkloadCertificate();
  void Start();
  // Stops renewing and joins the thread. Idempotent.
  void Stop();

  // The current credentials, or nullptr before the first certificate arrived.
  CredentialsPtr current() const;
  std::string last_error() const;
  int64_t renewals() const;

  // One request to `server` with a new key; what the CA answered.
  absl::StatusOr<CredentialsPtr> Fetch(const std::string& server) const;

 private:
  void Run();

  const Options options_;
  const Callback on_change_;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  CredentialsPtr current_ ABSL_GUARDED_BY(mu_);
  std::string last_error_ ABSL_GUARDED_BY(mu_);
  int64_t renewals_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

}  // namespace mesh::dataplane
