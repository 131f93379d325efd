#pragma once

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "controlplane/store/etcd_store.h"
#include "controlplane/xds/snapshot_cache.h"

namespace mesh::xds {

// Shares auto-registered workloads between meshpilot replicas on etcd. Each replica publishes
// its own sidecars' workloads under /meshpilot/workloads/<replica>/<node id>, attached to a
// lease it keeps alive; it watches the others' and makes them endpoints too. When a replica
// dies, etcd deletes its keys once the lease expires (its TTL), and every other replica drops
// those endpoints; a replica that stops cleanly revokes its lease at once.
class WorkloadSync {
 public:
  struct Options {
    std::string replica;                              // this replica's name
    absl::Duration ttl = absl::Seconds(10);           // the lease's time to live
    absl::Duration period = absl::Milliseconds(200);  // how often local changes are published
  };
  static absl::StatusOr<std::unique_ptr<WorkloadSync>> Start(store::EtcdStore* store,
                                                             SnapshotCache* cache, Options options);
  ~WorkloadSync();

  static constexpr char kPrefix[] = "/meshpilot/workloads/";

 private:
  WorkloadSync(store::EtcdStore* store, SnapshotCache* cache, Options options)
      : store_(store), cache_(cache), options_(std::move(options)) {}
  void Run();
  // Publishes local changes (and a new lease when the old one expired).
  absl::Status Publish();
  void OnEvents(const std::vector<store::Event>& events);

  store::EtcdStore* store_;
  SnapshotCache* cache_;
  const Options options_;
  int64_t lease_ = 0;
  absl::Time next_keepalive_;
  std::map<std::string, registry::Workload> published_;  // node id -> workload, as last written
  std::mutex remote_mu_;
  std::map<std::string, registry::Workload> remote_;  // store key -> workload, other replicas'
  store::WatchPtr watch_;
  std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread thread_;
};

// A workload as another replica published it, or nullopt when the value is not one: not JSON,
// no IP address, or a port outside 1-65535. Never throws.
std::optional<registry::Workload> DecodeWorkload(const std::string& value);

}  // namespace mesh::xds
