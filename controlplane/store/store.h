#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

// The store is a revisioned key-value space, shaped like etcd's so that the embedded log store
// and an etcd-backed store implement one interface. Every successful Commit creates exactly one
// new store revision; each key remembers the revision that created it and the one that last
// changed it. Values are opaque bytes to the store.
namespace mesh::store {

struct KeyValue {
  std::string key;
  std::string value;
  int64_t create_revision = 0;
  int64_t mod_revision = 0;

  bool operator==(const KeyValue&) const = default;
};

// One write inside a transaction, or a precondition alone (kCheck): a key the transaction reads
// and depends on without changing it.
struct Op {
  enum class Type { kPut, kDelete, kCheck };
  Type type = Type::kPut;
  std::string key;
  std::string value;  // kPut only
  // Precondition on the key's current mod_revision: nullopt means none; 0 means the key must
  // not exist; N > 0 means it must exist and have been last changed at revision N.
  std::optional<int64_t> expect_mod_revision;

  static Op Put(std::string key, std::string value, std::optional<int64_t> expect = std::nullopt) {
    return Op{Type::kPut, std::move(key), std::move(value), expect};
  }
  static Op Delete(std::string key, std::optional<int64_t> expect = std::nullopt) {
    return Op{Type::kDelete, std::move(key), {}, expect};
  }
  // The transaction applies only if `key` is still at `expect` (0: still absent).
  static Op Check(std::string key, int64_t expect) {
    return Op{Type::kCheck, std::move(key), {}, expect};
  }
};

struct CommitResult {
  int64_t revision = 0;
  // One entry per op, in order: for a put the new KeyValue, for a delete the value it removed,
  // for a check the key as it was (an empty value and revisions 0 when absent).
  std::vector<KeyValue> kvs;
};

struct Event {
  enum class Type { kPut, kDelete };
  Type type = Type::kPut;
  // For kPut the new value; for kDelete the last value before deletion. `revision` is the
  // revision of this event (for a put it equals kv.mod_revision).
  KeyValue kv;
  int64_t revision = 0;

  bool created() const { return type == Type::kPut && kv.create_revision == kv.mod_revision; }
};

struct RangeResult {
  std::vector<KeyValue> kvs;  // sorted by key
  int64_t revision = 0;       // the store revision the range was read at
};

using WatchCallback = std::function<void(const std::vector<Event>&)>;

// A registered watch. Destroying it unregisters the callback; after the destructor returns the
// callback is never called again. It must not be destroyed from inside its own callback.
class Watch {
 public:
  virtual ~Watch() = default;
};
using WatchPtr = std::unique_ptr<Watch>;

// Thread-safe. Reads never block on a write in progress and see only durable state.
class Store {
 public:
  virtual ~Store() = default;

  // Applies every op atomically at one new revision, or none of them. Returns only once the
  // change is durable. Errors, naming the key:
  //  - AlreadyExists: a precondition of 0 on a key that exists;
  //  - NotFound: a delete, or a precondition N > 0, on a key that does not exist;
  //  - FailedPrecondition: the key exists at another mod_revision than expected;
  //  - InvalidArgument: no put or delete, a check without a precondition, or the same key twice
  //    in one transaction;
  //  - Unavailable: the write could not be made durable (the store then refuses further writes).
  virtual absl::StatusOr<CommitResult> Commit(std::vector<Op> ops) = 0;

  virtual absl::StatusOr<std::optional<KeyValue>> Get(absl::string_view key) = 0;

  // Get for several keys, all read at one revision; the answer is in the order of `keys`. The
  // default, one Get after another, is for stores with no concurrent writers only.
  virtual absl::StatusOr<std::vector<std::optional<KeyValue>>> GetMany(
      const std::vector<std::string>& keys) {
    std::vector<std::optional<KeyValue>> out;
    for (const std::string& key : keys) {
      absl::StatusOr<std::optional<KeyValue>> one = Get(key);
      if (!one.ok()) return one.status();
      out.push_back(std::move(*one));
    }
    return out;
  }

  // Every key starting with `prefix`, with the revision they were read at.
  virtual absl::StatusOr<RangeResult> List(absl::string_view prefix) = 0;

  // Calls `callback` with the events on keys under `prefix` whose revision is greater than
  // `after_revision`, in revision order and each exactly once: first the retained backlog,
  // before Watch returns, then batches as commits become durable. The callback runs on a store
  // thread; it must be quick and must not call back into the store. Returns OutOfRange when
  // `after_revision` is older than the history the store retains: list again and watch from
  // the list's revision.
  virtual absl::StatusOr<WatchPtr> Watch(std::string prefix, int64_t after_revision,
                                         WatchCallback callback) = 0;

  // The revision of the latest durable commit.
  virtual int64_t Revision() = 0;
};

using StorePtr = std::unique_ptr<Store>;

// What every store's Commit refuses before it looks at keys: no write at all (only checks, or
// nothing), or a check without a precondition. OK otherwise.
absl::Status CheckOps(const std::vector<Op>& ops);

}  // namespace mesh::store
