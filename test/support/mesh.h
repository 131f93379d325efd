#pragma once

#include <httplib.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "test/support/meshpilot.h"
#include "test/support/process.h"
#include "test/support/temp_dir.h"

// A whole mesh on loopback for end-to-end tests: meshpilot, meshproxy gateways and sidecars,
// and mesh-demo-app workloads, each a real process on free ports with its log in one temporary
// directory. Every process is stopped when the Mesh is destroyed.
namespace mesh::testing {

struct Reply {
  int status = 0;  // 0 when the request failed (connection refused, reset, timeout)
  std::string body;
  httplib::Headers headers;
  std::string Header(const std::string& name) const;
};

// One HTTP/1.1 GET to 127.0.0.1:port, on a new connection.
Reply HttpGet(int port, const std::string& path, const httplib::Headers& headers = {},
              const std::string& host = "127.0.0.1");

// Sends `data` on a new TCP connection to ip:port (half-closing after it when `half_close`) and
// returns everything read back until the peer closes or `timeout` passes; "<connect failed>" when
// nothing listens.
std::string RawTcp(const std::string& ip, int port, const std::string& data, bool half_close,
                   std::chrono::milliseconds timeout = std::chrono::seconds(3));

// Mesh-wide STRICT mutual TLS as Istio's tasks set it up: a PeerAuthentication in the root
// namespace and an ISTIO_MUTUAL DestinationRule for every *.svc.cluster.local host (YAML
// documents, starting with "---").
extern const char kStrictMtlsYaml[];

class Mesh {
 public:
  // `meshpilot_flags` are added to meshpilot's command line.
  explicit Mesh(std::vector<std::string> meshpilot_flags = {"--debounce", "10ms"});
  ~Mesh();

  MeshpilotProcess& pilot() { return *pilot_; }
  // The control planes the proxies started from now on dial, in order (their --xds list);
  // empty: pilot() alone. For replicas sharing one etcd.
  std::vector<const MeshpilotProcess*> control_planes;
  const TempDir& dir() const { return dir_; }

  // Applies YAML (one or many documents) in `ns`; throws with meshpilot's answer if refused.
  void Apply(const std::string& yaml, const std::string& ns = "default");
  void ApplyFile(const std::string& path, const std::string& ns = "default");
  // The voting-app tutorial's manifest files of steps 1..through, in order, in namespace voting.
  void ApplyVotingApp(size_t through);

  struct Proxy {
    std::string name, ip;
    int admin_port = 0;
    int port = 0;          // a gateway's port 80, mapped; a sidecar's app port
    int inbound_port = 0;  // a sidecar's inbound listener, on `ip`
    std::string outbound;  // a sidecar's outbound listener, ip:port
    Process* process = nullptr;
    Process* app = nullptr;
    std::string Admin(const std::string& path) const;
    bool Ready() const;
  };
  // An ingress gateway (istio=ingressgateway) serving its port 80 on 127.0.0.1:port.
  Proxy& Gateway(const std::string& name = "ingressgateway",
                 std::vector<std::string> extra_flags = {});
  // mesh-demo-app with `app_flags`, behind a sidecar labelled `labels` (k=v,...) on its own
  // loopback IP, accepting mesh traffic for `service_port`.
  Proxy& Workload(const std::string& name, const std::string& ns, const std::string& labels,
                  int service_port, std::vector<std::string> app_flags);
  // A sidecar alone, for a workload that is not mesh-demo-app (a database): mesh traffic for
  // `service_port` goes to 127.0.0.1:app_port.
  Proxy& Sidecar(const std::string& name, const std::string& ns, const std::string& labels,
                 int service_port, int app_port, const std::string& service_account = "default");
  // A redis-server and a MariaDB server of their own, on free ports with data in the mesh's
  // directory; they return the port. Throw if the server does not come up.
  int Redis();
  int MariaDb();
  // mesh-demo-app alone on 127.0.0.1:<returned port> (reach it through a WorkloadEntry).
  int App(const std::string& name, std::vector<std::string> app_flags);
  // A meshproxy with exactly these flags (plus --xds and --admin); for the tests that need one
  // off the usual shapes. With a --token-file among them it uses meshpilot's TLS port
  // (--xds-root-cert), else the plaintext one.
  Proxy& RawProxy(const std::string& name, std::vector<std::string> flags);

  // A join token file for a proxy of namespace `ns` and `service_account`. Gateways and sidecars
  // get one, so they hold a mesh identity (and are ready only once it arrived).
  std::string TokenFile(const std::string& name, const std::string& ns,
                        const std::string& service_account = "default");

  // Waits until every proxy so far reports ready.
  bool WaitReady(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  std::string Logs() const;  // every process's log, for failure messages
  // A loopback address of this mesh's own that no proxy uses yet (a pod's IP).
  std::string NextIp();

 private:
  TempDir dir_;
  std::unique_ptr<MeshpilotProcess> pilot_;
  std::vector<std::unique_ptr<Process>> processes_;
  std::vector<std::unique_ptr<Proxy>> proxies_;
  std::string ip_prefix_;
  int next_ip_ = 1;
};

}  // namespace mesh::testing
