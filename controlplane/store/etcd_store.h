#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "controlplane/store/store.h"

// The store on etcd v3, over etcd's own gRPC API (our wire-compatible subset of etcdserverpb), so
// several meshpilot replicas share one store:
//  - a transaction is one etcd Txn: each precondition is a compare on the key's mod_revision (0 =
//    absent), a delete without one compares version > 0; the failure branch reads the keys back
//    so a refusal names the key and the reason, with the embedded store's error codes;
//  - revisions are etcd's: a key's mod_revision is its resourceVersion;
//  - a watch is an etcd watch from after_revision + 1 on its own stream and thread. A broken
//    stream is resumed from the last revision delivered, on the next member; if etcd compacted
//    that history meanwhile, the store lists the prefix again and delivers the difference from
//    what the watcher last saw (puts and deletes), then watches on;
//  - every call fails over between the endpoints (gRPC pick-first over their addresses) and is
//    retried while etcd is unavailable or electing a leader, up to Options::retry_for.
// Thread-safe.
namespace mesh::store {

class EtcdStore : public Store {
 public:
  struct Options {
    std::vector<std::string> endpoints;  // host:port, tried in order
    bool tls = false;                    // etcds:// or a CA file
    std::string ca_file, cert_file, key_file;
    std::string username, password;  // etcd authentication, when set
    absl::Duration request_timeout = absl::Seconds(5);
    // How long a call keeps retrying while no member answers or there is no leader.
    absl::Duration retry_for = absl::Seconds(15);
  };
  // "etcd://h1:2379,h2:2379" (plaintext) or "etcds://..." (TLS); user:password@ before the hosts
  // is taken as credentials. InvalidArgument for anything else.
  static absl::StatusOr<Options> ParseUrl(const std::string& url);

  // Connects (and authenticates) and reads the current revision. Unavailable when no endpoint
  // answers within retry_for.
  static absl::StatusOr<std::unique_ptr<EtcdStore>> Open(Options options);
  ~EtcdStore() override;

  // Store. Commit's extra errors: InvalidArgument when the transaction exceeds etcd's limits
  // (operations per transaction, request size), with etcd's reason; nothing is written then.
  absl::StatusOr<CommitResult> Commit(std::vector<Op> ops) override;
  absl::StatusOr<std::optional<KeyValue>> Get(absl::string_view key) override;
  // One read-only Txn of Ranges: one linearizable read however many keys.
  absl::StatusOr<std::vector<std::optional<KeyValue>>> GetMany(
      const std::vector<std::string>& keys) override;
  absl::StatusOr<RangeResult> List(absl::string_view prefix) override;
  absl::StatusOr<WatchPtr> Watch(std::string prefix, int64_t after_revision,
                                 WatchCallback callback) override;
  // The highest revision this client has seen in any etcd answer.
  int64_t Revision() override;

  // Leases, for keys that must vanish when their owner dies.
  absl::StatusOr<int64_t> GrantLease(absl::Duration ttl);
  // One keep-alive; the lease's remaining TTL, NotFound when it has expired.
  absl::StatusOr<absl::Duration> KeepAlive(int64_t lease);
  absl::Status RevokeLease(int64_t lease);
  // Puts `key` attached to `lease` (deleted by etcd when the lease expires).
  absl::Status PutWithLease(const std::string& key, const std::string& value, int64_t lease);

  // Compacts etcd's history up to `revision` (operators and tests).
  absl::Status Compact(int64_t revision);

 private:
  struct Impl;
  class EtcdWatch;
  explicit EtcdStore(std::unique_ptr<Impl> impl);
  // After a transaction retried across a lost answer was refused: whether every op's effect is
  // in place (the lost attempt was applied), and the result if so.
  absl::StatusOr<CommitResult> AppliedEarlier(const std::vector<Op>& ops);
  std::unique_ptr<Impl> impl_;
};

// The key range etcd calls "every key starting with prefix": [prefix, RangeEnd(prefix)).
std::string RangeEnd(absl::string_view prefix);

}  // namespace mesh::store
