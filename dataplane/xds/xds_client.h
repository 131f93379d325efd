#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "dataplane/config/proxy_config.h"
#include "envoy/config/cluster/v3/cluster.pb.h"
#include "envoy/config/core/v3/base.pb.h"
#include "envoy/config/endpoint/v3/endpoint.pb.h"
#include "envoy/config/listener/v3/listener.pb.h"
#include "envoy/config/route/v3/route.pb.h"
#include "envoy/extensions/transport_sockets/tls/v3/tls.pb.h"
#include "envoy/service/discovery/v3/discovery.pb.h"

namespace mesh::dataplane {

// Where requests go: one ADS stream. The client never sees gRPC, so it is tested with a fake.
class AdsTransport {
 public:
  virtual ~AdsTransport() = default;
  // Queues a request on the stream; returns false if the stream is gone.
  virtual bool Send(const envoy::service::discovery::v3::DiscoveryRequest& request) = 0;
};

// meshproxy's xDS client, state of the world over ADS: subscribes to all listeners and clusters,
// then to the route configs, load assignments and SDS secrets (but "default", the workload
// certificate, which each proxy gets from the CA itself) they name; validates every response before
// applying it; ACKs what it applied and NACKs the rest with a precise error_detail, keeping its
// last good config. Thread-safe; callbacks run on the caller's thread.
class XdsClient {
 public:
  // Called with each validated config before it is acknowledged; an error refuses it (the
  // response is NACKed with that message and the previous config stays). Runs under the
  // client's lock, on the thread that delivered the response.
  using ConfigCallback = std::function<absl::Status(ProxyConfigPtr)>;
  XdsClient(envoy::config::core::v3::Node node, ConfigCallback on_config);

  // A new stream is up: subscribe to everything again, with the versions already held.
  void OnConnect(AdsTransport* transport);
  // The stream is gone; keep serving the current config.
  void OnDisconnect();
  // Validates and applies one response, then ACKs or NACKs it on the current transport.
  void OnResponse(const envoy::service::discovery::v3::DiscoveryResponse& response);

  ProxyConfigPtr current() const;

  // Tells the control plane whether this workload can serve (Istio's "istio.io/health" request:
  // no error_detail when healthy, the reason in it when not). Sent now if a stream is up, and
  // again on every new stream.
  void ReportHealth(bool healthy, const std::string& reason);
  struct Stats {
    int64_t accepted = 0, rejected = 0;
    std::string last_error;
  };
  Stats stats() const;

 private:
  struct TypeState {
    std::string version, nonce;   // last accepted version, last nonce seen
    std::set<std::string> names;  // empty for the wildcard types (LDS, CDS)
    bool requested = false;
  };
  absl::Status Apply(const envoy::service::discovery::v3::DiscoveryResponse& response,
                     ProxyConfig* next) const;
  void SendLocked(const std::string& type, const std::string& error)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // After listeners or clusters change, follows the route configs and assignments they name.
  void UpdateSubscriptionsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SendHealthLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const envoy::config::core::v3::Node node_;
  const ConfigCallback on_config_;
  mutable std::mutex mu_;
  AdsTransport* transport_ ABSL_GUARDED_BY(mu_) = nullptr;
  bool node_sent_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, TypeState> types_ ABSL_GUARDED_BY(mu_);
  ProxyConfigPtr config_ ABSL_GUARDED_BY(mu_);
  std::optional<std::string> health_ ABSL_GUARDED_BY(mu_);  // "" healthy, else why not
  Stats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace mesh::dataplane
