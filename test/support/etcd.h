#pragma once

#include <memory>
#include <string>
#include <vector>

#include "test/support/process.h"

namespace mesh::testing {

// A real etcd cluster of `members` processes (Debian's etcd-server) on free loopback ports, each
// with its data in `dir`/NAME. The destructor kills them. Start() waits until a member answers.
class EtcdCluster {
 public:
  EtcdCluster(std::string dir, int members = 1);
  ~EtcdCluster();

  // Serve clients over TLS with these PEM files (before Start); clients must then show a
  // certificate signed by `ca_file`.
  void UseTls(std::string cert_file, std::string key_file, std::string ca_file) {
    tls_ = {std::move(cert_file), std::move(key_file), std::move(ca_file)};
  }
  bool Start();
  // SIGKILLs member `i` (0-based); Restart(i) brings it back on the same ports and data.
  void Kill(int i);
  bool Restart(int i);

  // "etcd://127.0.0.1:A,127.0.0.1:B,..." (etcds:// with TLS) for meshpilot's --store.
  std::string Url() const;
  std::vector<std::string> Endpoints() const;
  std::string Log(int i) const;
  // meshpilot's flags for a replica on this cluster: --store, and --ca-key-file with a secret
  // (the same for every replica) written under the cluster's directory.
  std::vector<std::string> MeshpilotFlags(const std::string& replica_id) const;

 private:
  struct Member {
    std::string name, data_dir;
    int client_port = 0, peer_port = 0;
    std::unique_ptr<Process> process;
  };
  void Launch(Member& m, bool fresh);
  std::string dir_;
  std::vector<Member> members_;
  std::string initial_cluster_;
  std::vector<std::string> tls_;  // cert, key, CA: empty for plaintext
};

}  // namespace mesh::testing
