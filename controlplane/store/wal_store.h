#pragma once

#include <condition_variable>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>

#include "absl/base/thread_annotations.h"
#include "controlplane/store/store.h"

namespace mesh::store {

// The embedded durable store: an in-memory ordered map in front of a write-ahead log.
//
// Files in `dir`: `wal.log` (one framed WalRecord per commit), `snapshot.dat` (all keys at one
// revision, written by compaction), and `LOCK` (held with flock so two daemons never share a
// directory).
//
// Commit is group-committed: concurrent callers queue up, one of them (the leader) checks the
// whole queue's preconditions, writes every record with one write(2) and one fdatasync(2),
// publishes the result to readers and watchers, and wakes the others. A commit is visible to
// Get, List and Watch only once it is durable.
//
// Recovery loads the snapshot, replays the log records newer than it, and truncates the log at
// the first incomplete or corrupt record (a torn tail from a crash mid-write), keeping every
// record before it.
class WalStore : public Store {
 public:
  struct Options {
    // Compact (snapshot, then empty the log) once the log grows past this many bytes.
    size_t compact_log_bytes = 64 << 20;
    // Events kept for Watch resumption.
    size_t max_history = 100'000;
    // And at most this many bytes of keys and values: big objects rewritten often would
    // otherwise hold memory the count alone does not bound.
    size_t max_history_bytes = 64 << 20;
    // Upper bound of commits gathered into one group.
    size_t max_group = 1024;
  };

  // Opens or creates the store in `dir`. Fails if the directory cannot be created, is locked
  // by another process, or holds a snapshot that does not parse.
  static absl::StatusOr<std::unique_ptr<WalStore>> Open(const std::string& dir, Options options);
  static absl::StatusOr<std::unique_ptr<WalStore>> Open(const std::string& dir) {
    return Open(dir, Options());
  }
  ~WalStore() override;

  // Store
  absl::StatusOr<CommitResult> Commit(std::vector<Op> ops) override;
  absl::StatusOr<std::optional<KeyValue>> Get(absl::string_view key) override;
  absl::StatusOr<std::vector<std::optional<KeyValue>>> GetMany(
      const std::vector<std::string>& keys) override;
  absl::StatusOr<RangeResult> List(absl::string_view prefix) override;
  absl::StatusOr<WatchPtr> Watch(std::string prefix, int64_t after_revision,
                                 WatchCallback callback) override;
  int64_t Revision() override;

  // Writes a snapshot of the current state and empties the log. Runs in the commit path, so it
  // is serialized with commits; safe to call at any time.
  absl::Status Compact();

  struct Stats {
    int64_t commits = 0;  // successful transactions
    int64_t syncs = 0;    // fdatasync calls for commits (fewer than commits under load)
    int64_t compactions = 0;
    size_t log_bytes = 0;
    size_t torn_bytes_dropped = 0;  // at the last open
  };
  Stats GetStats();

 private:
  struct Writer;
  class WatchImpl;
  struct Watcher {
    std::string prefix;
    WatchCallback callback;
    int64_t delivered = 0;  // highest revision handed to the callback
  };

  WalStore(std::string dir, Options options);
  absl::Status Recover();
  absl::Status ApplyLoggedRecord(const std::string& payload, bool keep_history);
  void ProcessGroup(std::vector<Writer*>& group);
  absl::Status CompactLocked();
  void AddHistoryLocked(Event event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(state_mu_);
  void Notify(const std::vector<Event>& events);
  void Unregister(std::list<Watcher>::iterator it);

  const std::string dir_;
  const Options options_;
  int lock_fd_ = -1;
  int log_fd_ = -1;  // owned by the commit leader

  // Queue of pending commits; the front one is the leader.
  std::mutex queue_mu_;
  std::deque<Writer*> queue_ ABSL_GUARDED_BY(queue_mu_);

  // Durable, visible state. Written only by the leader.
  std::shared_mutex state_mu_;
  std::map<std::string, KeyValue, std::less<>> state_ ABSL_GUARDED_BY(state_mu_);
  int64_t revision_ ABSL_GUARDED_BY(state_mu_) = 0;
  std::deque<Event> history_ ABSL_GUARDED_BY(state_mu_);
  size_t history_bytes_ ABSL_GUARDED_BY(state_mu_) = 0;
  // Every event with a revision above this one is in history_.
  int64_t history_floor_ ABSL_GUARDED_BY(state_mu_) = 0;
  bool failed_ ABSL_GUARDED_BY(state_mu_) = false;
  Stats stats_ ABSL_GUARDED_BY(state_mu_);

  // Watchers; held while delivering so delivery is ordered and unregistering waits for it.
  std::mutex watch_mu_;
  std::list<Watcher> watchers_ ABSL_GUARDED_BY(watch_mu_);
};

}  // namespace mesh::store
