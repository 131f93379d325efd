#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "controlplane/model/config_index.h"

// Which workloads serve which service ports. Built from a config snapshot: Services select
// WorkloadEntries (and auto-registered sidecars) by label in their namespace; ServiceEntries list
// endpoints or select workloads. Pure and immutable once built.
//
// A registered workload serves a Service only where its identity fits: its service account must
// be one the Service's WorkloadEntries run as or, for a Service without any, the one its
// earliest-registered workload runs as. Labels alone never make a workload an endpoint of a
// service that runs under another identity.
namespace mesh::registry {

struct Endpoint {
  std::string address;
  uint32_t port = 0;
  model::Labels labels;
  std::string service_account;
  uint32_t weight = 1;
  std::string locality;
  bool healthy = true;  // a registered workload's last health report; entries always are
  // The workload behind it in Istio's metrics (a WorkloadEntry's or a registered sidecar's
  // name) and its namespace; empty for a ServiceEntry's inline endpoints.
  std::string workload, workload_ns;
  bool operator==(const Endpoint&) const = default;
};

// One port of one service host, with its endpoints.
struct ServicePort {
  std::string host;       // FQDN, e.g. reviews.default.svc.cluster.local
  std::string ns;         // namespace of the Service or ServiceEntry
  uint32_t port = 0;      // the service port clients dial
  std::string port_name;  // may be empty
  std::string protocol;   // upper case: HTTP, GRPC, TCP, ... (from the name or appProtocol)
  std::vector<Endpoint> endpoints;  // sorted by address and port
};

// A workload that registered itself (a connected sidecar), as Istio's auto-registration does.
struct Workload {
  std::string name;  // the proxy's node id
  std::string ns;
  std::string address;
  model::Labels labels;
  std::string service_account;
  std::map<uint32_t, uint32_t> inbound_ports;  // service port -> port to reach it on
  // When it first registered (Unix milliseconds); a reconnect keeps it. Decides which service
  // account a service without WorkloadEntries is pinned to: its earliest workload's.
  int64_t since_unix_ms = 0;
  // Whether its sidecar last reported it able to serve (Istio's istio.io/health); false until
  // the first report.
  bool healthy = false;
  std::string workload_name;  // its name in Istio's metrics (node metadata WORKLOAD_NAME)

  bool operator==(const Workload&) const = default;
};

class Registry {
 public:
  static Registry Build(const model::ConfigSnapshot& config,
                        const std::vector<Workload>& workloads);

  // Every service port, ordered by host then port.
  const std::vector<ServicePort>& ports() const { return ports_; }
  // The port of `host`, or nullptr.
  const ServicePort* Find(const std::string& host, uint32_t port) const;
  // Registered workloads a service's selector matched but that did not become its endpoints,
  // by workload name, with why (their identity does not fit the service).
  const std::map<std::string, std::string>& refusals() const { return refusals_; }

 private:
  std::vector<ServicePort> ports_;
  std::map<std::string, std::string> refusals_;
  std::map<std::pair<std::string, uint32_t>, size_t> index_;
};

// Whether every selector label is present in `labels` with the same value.
bool LabelsMatch(const model::Labels& selector, const model::Labels& labels);

}  // namespace mesh::registry
