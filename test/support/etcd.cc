#include "test/support/etcd.h"

#include <signal.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "controlplane/store/etcd_store.h"

namespace mesh::testing {

EtcdCluster::EtcdCluster(std::string dir, int members) : dir_(std::move(dir)) {
  std::vector<std::string> peers;
  for (int i = 0; i < members; ++i) {
    Member m;
    m.name = absl::StrCat("etcd", i);
    m.data_dir = dir_ + "/" + m.name;
    m.client_port = FreePort();
    m.peer_port = FreePort();
    peers.push_back(absl::StrCat(m.name, "=http://127.0.0.1:", m.peer_port));
    members_.push_back(std::move(m));
  }
  initial_cluster_ = absl::StrJoin(peers, ",");
}

EtcdCluster::~EtcdCluster() = default;

void EtcdCluster::Launch(Member& m, bool fresh) {
  std::filesystem::create_directories(dir_);
  const std::string client =
      absl::StrCat(tls_.empty() ? "http" : "https", "://127.0.0.1:", m.client_port);
  const std::string peer = absl::StrCat("http://127.0.0.1:", m.peer_port);
  std::vector<std::string> argv = {"etcd",
                                   "--name",
                                   m.name,
                                   "--data-dir",
                                   m.data_dir,
                                   "--listen-client-urls",
                                   client,
                                   "--advertise-client-urls",
                                   client,
                                   "--listen-peer-urls",
                                   peer,
                                   "--initial-advertise-peer-urls",
                                   peer,
                                   "--initial-cluster",
                                   initial_cluster_,
                                   "--initial-cluster-token",
                                   "meshpilot-test",
                                   "--initial-cluster-state",
                                   fresh ? "new" : "existing",
                                   "--logger",
                                   "zap",
                                   "--log-level",
                                   "warn"};
  if (!tls_.empty()) {
    argv.insert(argv.end(), {"--cert-file", tls_[0], "--key-file", tls_[1], "--trusted-ca-file",
                             tls_[2], "--client-cert-auth"});
  }
  m.process = std::make_unique<Process>(argv, dir_ + "/" + m.name + ".log");
}

bool EtcdCluster::Start() {
  for (Member& m : members_) Launch(m, true);
  store::EtcdStore::Options options;
  options.endpoints = Endpoints();
  options.retry_for = absl::Seconds(20);
  if (!tls_.empty()) {
    options.tls = true;
    options.ca_file = tls_[2];
    options.cert_file = tls_[0];  // the server's pair is also a client certificate of that CA
    options.key_file = tls_[1];
  }
  return store::EtcdStore::Open(options).ok();
}

void EtcdCluster::Kill(int i) {
  members_[i].process->Stop(SIGKILL);
}

bool EtcdCluster::Restart(int i) {
  Launch(members_[i], false);
  return WaitFor([&] { return members_[i].process->running(); }, std::chrono::seconds(2));
}

std::string EtcdCluster::Url() const {
  return (tls_.empty() ? "etcd://" : "etcds://") + absl::StrJoin(Endpoints(), ",");
}

std::vector<std::string> EtcdCluster::Endpoints() const {
  std::vector<std::string> out;
  for (const Member& m : members_) out.push_back(absl::StrCat("127.0.0.1:", m.client_port));
  return out;
}

std::vector<std::string> EtcdCluster::MeshpilotFlags(const std::string& replica_id) const {
  const std::string key = dir_ + "/ca-key";
  if (!std::filesystem::exists(key))
    std::ofstream(key) << "a test secret that seals the CA key, shared by the replicas\n";
  return {"--store", Url(), "--ca-key-file", key, "--replica-id", replica_id};
}

std::string EtcdCluster::Log(int i) const {
  return members_[i].process ? members_[i].process->Log() : "";
}

}  // namespace mesh::testing
