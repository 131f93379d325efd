#include "controlplane/store/wal_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string_view>
#include <unordered_map>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "controlplane/store/record_io.h"
#include "meshpilot/store/v1/wal.pb.h"

namespace mesh::store {
namespace {

namespace pb = ::meshpilot::store::v1;

constexpr char kLogFile[] = "wal.log";
constexpr char kSnapshotFile[] = "snapshot.dat";
constexpr char kSnapshotTmp[] = "snapshot.tmp";
constexpr char kLockFile[] = "LOCK";

std::string Errno(absl::string_view what) {
  return absl::StrCat(what, ": ", std::strerror(errno));
}

}  // namespace

struct WalStore::Writer {
  std::vector<Op> ops;
  bool compact = false;
  absl::StatusOr<CommitResult> result = absl::InternalError("not processed");
  bool done = false;
  std::condition_variable cv;
};

class WalStore::WatchImpl : public Watch {
 public:
  WatchImpl(WalStore* store, std::list<Watcher>::iterator it) : store_(store), it_(it) {}
  ~WatchImpl() override { store_->Unregister(it_); }

 private:
  WalStore* store_;
  std::list<Watcher>::iterator it_;
};

WalStore::WalStore(std::string dir, Options options) : dir_(std::move(dir)), options_(options) {}

WalStore::~WalStore() {
  if (log_fd_ >= 0) ::close(log_fd_);
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the flock
}

absl::StatusOr<std::unique_ptr<WalStore>> WalStore::Open(const std::string& dir, Options options) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("create ", dir, ": ", ec.message()));
  std::unique_ptr<WalStore> store(new WalStore(dir, options));
  std::string lock_path = dir + "/" + kLockFile;
  store->lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (store->lock_fd_ < 0) return absl::UnavailableError(Errno("open " + lock_path));
  if (::flock(store->lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("store directory ", dir, " is in use by another process"));
  }
  if (auto s = store->Recover(); !s.ok()) return s;
  return store;
}

absl::Status WalStore::Recover() {
  std::unique_lock lock(state_mu_);
  auto snapshot = ReadFile(dir_ + "/" + kSnapshotFile);
  if (snapshot.ok()) {
    ReadResult records = ReadFramed(*snapshot);
    pb::SnapshotHeader header;
    if (records.payloads.empty() || !header.ParseFromString(records.payloads[0]) ||
        records.payloads.size() != static_cast<size_t>(header.count()) + 1) {
      // A snapshot is renamed into place only once complete and synced, so this is corruption
      // (or tampering), not a crash. Refuse rather than silently lose keys.
      return absl::DataLossError(
          absl::StrCat("snapshot ", dir_, "/", kSnapshotFile, " is corrupt; refusing to start"));
    }
    for (size_t i = 1; i < records.payloads.size(); ++i) {
      pb::KeyValue kv;
      if (!kv.ParseFromString(records.payloads[i])) {
        return absl::DataLossError("snapshot record does not parse");
      }
      state_[kv.key()] = KeyValue{kv.key(), kv.value(), kv.create_revision(), kv.mod_revision()};
    }
    revision_ = header.revision();
  } else if (!absl::IsNotFound(snapshot.status())) {
    return snapshot.status();
  }
  history_floor_ = revision_;

  std::string log_path = dir_ + "/" + kLogFile;
  auto log = ReadFile(log_path);
  if (!log.ok() && !absl::IsNotFound(log.status())) return log.status();
  std::string data = log.ok() ? std::move(*log) : std::string();
  ReadResult records = ReadFramed(data);
  for (const std::string& payload : records.payloads) {
    if (auto s = ApplyLoggedRecord(payload, true); !s.ok()) return s;
  }

  log_fd_ = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (log_fd_ < 0) return absl::UnavailableError(Errno("open " + log_path));
  if (records.valid_bytes < data.size()) {
    stats_.torn_bytes_dropped = data.size() - records.valid_bytes;
    log::Warn("store: dropping torn tail of the log: ", stats_.torn_bytes_dropped,
              " bytes at offset ", records.valid_bytes, " (a write cut short by a crash)");
    if (::ftruncate(log_fd_, static_cast<off_t>(records.valid_bytes)) != 0 ||
        ::fdatasync(log_fd_) != 0) {
      return absl::UnavailableError(Errno("truncate " + log_path));
    }
  }
  if (auto s = SyncDir(dir_); !s.ok()) return s;
  stats_.log_bytes = records.valid_bytes;
  log::Info("store: opened ", dir_, " revision=", revision_, " keys=", state_.size(),
            " log_records=", records.payloads.size());
  return absl::OkStatus();
}

absl::Status WalStore::ApplyLoggedRecord(const std::string& payload,
                                         bool keep_history) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  pb::WalRecord record;
  if (!record.ParseFromString(payload)) return absl::DataLossError("log record does not parse");
  if (record.revision() <= revision_) return absl::OkStatus();  // already in the snapshot
  for (const pb::Mutation& m : record.mutations()) {
    Event event;
    event.revision = record.revision();
    if (m.type() == pb::Mutation::DELETE) {
      auto it = state_.find(m.key());
      if (it == state_.end()) continue;
      event.type = Event::Type::kDelete;
      event.kv = std::move(it->second);
      state_.erase(it);
    } else {
      KeyValue kv{m.key(), m.value(), m.create_revision(), record.revision()};
      state_[m.key()] = kv;
      event.kv = std::move(kv);
    }
    if (keep_history) AddHistoryLocked(std::move(event));
  }
  revision_ = record.revision();
  return absl::OkStatus();
}

void WalStore::AddHistoryLocked(Event event) {
  auto bytes = [](const Event& e) { return e.kv.key.size() + e.kv.value.size() + sizeof(Event); };
  history_bytes_ += bytes(event);
  history_.push_back(std::move(event));
  while (history_.size() > options_.max_history || history_bytes_ > options_.max_history_bytes) {
    history_floor_ = history_.front().revision;
    // Drop whole revisions so a resumed watch never sees half a transaction.
    while (!history_.empty() && history_.front().revision == history_floor_) {
      history_bytes_ -= bytes(history_.front());
      history_.pop_front();
    }
  }
}

absl::Status CheckOps(const std::vector<Op>& ops) {
  bool writes = false;
  for (const Op& op : ops) {
    if (op.type == Op::Type::kCheck && !op.expect_mod_revision)
      return absl::InvalidArgumentError(absl::StrCat("a check of ", op.key, " needs a revision"));
    writes = writes || op.type != Op::Type::kCheck;
  }
  if (!writes) return absl::InvalidArgumentError("a transaction needs at least one write");
  return absl::OkStatus();
}

absl::StatusOr<CommitResult> WalStore::Commit(std::vector<Op> ops) {
  if (absl::Status s = CheckOps(ops); !s.ok()) return s;
  Writer w;
  w.ops = std::move(ops);
  std::unique_lock lock(queue_mu_);
  queue_.push_back(&w);
  while (!w.done && queue_.front() != &w) w.cv.wait(lock);
  if (w.done) return std::move(w.result);

  // Leader: take the queue as it stands, and process it without holding queue_mu_.
  std::vector<Writer*> group;
  for (Writer* x : queue_) {
    if (group.size() >= options_.max_group) break;
    group.push_back(x);
  }
  lock.unlock();
  ProcessGroup(group);
  lock.lock();
  for (Writer* x : group) {
    queue_.pop_front();
    x->done = true;
    if (x != &w) x->cv.notify_one();
  }
  if (!queue_.empty()) queue_.front()->cv.notify_one();
  return std::move(w.result);
}

absl::Status WalStore::Compact() {
  Writer w;
  w.compact = true;
  std::unique_lock lock(queue_mu_);
  queue_.push_back(&w);
  while (!w.done && queue_.front() != &w) w.cv.wait(lock);
  if (w.done) return w.result.status();
  lock.unlock();
  std::vector<Writer*> group{&w};
  ProcessGroup(group);
  lock.lock();
  queue_.pop_front();
  w.done = true;
  if (!queue_.empty()) queue_.front()->cv.notify_one();
  return w.result.status();
}

void WalStore::ProcessGroup(std::vector<Writer*>& group) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  // Only the leader writes state_, so it may read it without the lock; readers take it shared.
  if (failed_) {
    for (Writer* w : group) {
      w->result = absl::UnavailableError("store refuses writes after an earlier write error");
    }
    return;
  }
  // Keys changed earlier in this group, over state_: nullopt marks a deletion.
  std::unordered_map<std::string_view, std::optional<KeyValue>> staged;
  auto current = [&](const std::string& key) -> std::optional<KeyValue> {
    if (auto it = staged.find(key); it != staged.end()) return it->second;
    if (auto it = state_.find(key); it != state_.end()) return it->second;
    return std::nullopt;
  };

  int64_t next = revision_;
  std::string buffer;
  std::vector<Writer*> accepted;
  bool compact = false;
  for (Writer* w : group) {
    if (w->compact) {
      compact = true;
      w->result = CommitResult{};
      continue;
    }
    absl::Status error;
    std::unordered_map<std::string_view, bool> seen;
    for (const Op& op : w->ops) {
      if (!seen.emplace(op.key, true).second) {
        error = absl::InvalidArgumentError(absl::StrCat("key ", op.key, " appears twice"));
        break;
      }
      std::optional<KeyValue> cur = current(op.key);
      if (op.type == Op::Type::kDelete && !cur) {
        error = absl::NotFoundError(absl::StrCat("key ", op.key, " not found"));
        break;
      }
      if (op.expect_mod_revision) {
        int64_t want = *op.expect_mod_revision;
        if (want == 0 && cur) {
          error = absl::AlreadyExistsError(absl::StrCat("key ", op.key, " already exists"));
          break;
        }
        if (want > 0 && !cur) {
          error = absl::NotFoundError(absl::StrCat("key ", op.key, " not found"));
          break;
        }
        if (want > 0 && cur->mod_revision != want) {
          error = absl::FailedPreconditionError(
              absl::StrCat("key ", op.key, " is at revision ", cur->mod_revision, ", not ", want));
          break;
        }
      }
    }
    if (!error.ok()) {
      w->result = error;
      continue;
    }
    CommitResult result;
    result.revision = ++next;
    pb::WalRecord record;
    record.set_revision(result.revision);
    for (const Op& op : w->ops) {
      std::optional<KeyValue> cur = current(op.key);
      if (op.type == Op::Type::kCheck) {  // a precondition only: nothing is written
        result.kvs.push_back(cur ? *cur : KeyValue{op.key, "", 0, 0});
        continue;
      }
      pb::Mutation* m = record.add_mutations();
      m->set_key(op.key);
      if (op.type == Op::Type::kDelete) {
        m->set_type(pb::Mutation::DELETE);
        result.kvs.push_back(*cur);
        staged[op.key] = std::nullopt;
      } else {
        KeyValue kv{op.key, op.value, cur ? cur->create_revision : result.revision,
                    result.revision};
        m->set_value(op.value);
        m->set_create_revision(kv.create_revision);
        result.kvs.push_back(kv);
        staged[op.key] = std::move(kv);
      }
    }
    AppendFramed(record.SerializeAsString(), &buffer);
    w->result = std::move(result);
    accepted.push_back(w);
  }

  if (!buffer.empty()) {
    absl::Status written = WriteAll(log_fd_, buffer);
    if (written.ok() && ::fdatasync(log_fd_) != 0)
      written = absl::UnavailableError(Errno("fdatasync"));
    if (!written.ok()) {
      log::Error("store: cannot write the log, refusing further writes: ", written.message());
      std::unique_lock lock(state_mu_);
      failed_ = true;
      for (Writer* w : accepted) w->result = written;
      return;
    }
  }

  std::vector<Event> events;
  {
    std::unique_lock lock(state_mu_);
    for (Writer* w : accepted) {
      const CommitResult& r = *w->result;
      for (size_t i = 0; i < w->ops.size(); ++i) {
        if (w->ops[i].type == Op::Type::kCheck) continue;
        Event e;
        e.revision = r.revision;
        e.kv = r.kvs[i];
        if (w->ops[i].type == Op::Type::kDelete) {
          e.type = Event::Type::kDelete;
          state_.erase(w->ops[i].key);
        } else {
          state_[w->ops[i].key] = r.kvs[i];
        }
        AddHistoryLocked(e);
        events.push_back(std::move(e));
      }
      revision_ = r.revision;
      ++stats_.commits;
    }
    if (!buffer.empty()) ++stats_.syncs;
    stats_.log_bytes += buffer.size();
    if (stats_.log_bytes > options_.compact_log_bytes) compact = true;
  }
  if (!events.empty()) Notify(events);
  if (compact) {
    absl::Status s = CompactLocked();
    if (!s.ok()) log::Error("store: compaction failed: ", s.message());
    for (Writer* w : group) {
      if (w->compact) w->result = s.ok() ? absl::StatusOr<CommitResult>(CommitResult{}) : s;
    }
  }
}

absl::Status WalStore::CompactLocked() ABSL_NO_THREAD_SAFETY_ANALYSIS {
  // Called by the leader only: state_ cannot change underneath.
  std::string data;
  pb::SnapshotHeader header;
  header.set_revision(revision_);
  header.set_count(static_cast<int64_t>(state_.size()));
  AppendFramed(header.SerializeAsString(), &data);
  pb::KeyValue kv;
  for (const auto& [key, value] : state_) {
    kv.set_key(key);
    kv.set_value(value.value);
    kv.set_create_revision(value.create_revision);
    kv.set_mod_revision(value.mod_revision);
    AppendFramed(kv.SerializeAsString(), &data);
  }
  std::string tmp = dir_ + "/" + kSnapshotTmp;
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return absl::UnavailableError(Errno("open " + tmp));
  absl::Status s = WriteAll(fd, data);
  if (s.ok() && ::fsync(fd) != 0) s = absl::UnavailableError(Errno("fsync " + tmp));
  ::close(fd);
  if (!s.ok()) return s;
  std::string final_path = dir_ + "/" + kSnapshotFile;
  if (::rename(tmp.c_str(), final_path.c_str()) != 0) {
    return absl::UnavailableError(Errno("rename " + tmp));
  }
  if (s = SyncDir(dir_); !s.ok()) return s;
  // Every log record is now at or below the snapshot's revision, so replay would skip it; a
  // crash half way through the truncation is therefore harmless.
  if (::ftruncate(log_fd_, 0) != 0 || ::fdatasync(log_fd_) != 0) {
    return absl::UnavailableError(Errno("truncate log"));
  }
  std::unique_lock lock(state_mu_);
  log::Info("store: compacted at revision ", revision_, ": ", state_.size(), " keys, ", data.size(),
            " bytes; log was ", stats_.log_bytes, " bytes");
  stats_.log_bytes = 0;
  ++stats_.compactions;
  return absl::OkStatus();
}

void WalStore::Notify(const std::vector<Event>& events) {
  std::lock_guard lock(watch_mu_);
  for (Watcher& w : watchers_) {
    std::vector<Event> mine;
    for (const Event& e : events) {
      if (e.revision > w.delivered && absl::StartsWith(e.kv.key, w.prefix)) mine.push_back(e);
    }
    if (!events.empty()) w.delivered = std::max(w.delivered, events.back().revision);
    if (!mine.empty()) w.callback(mine);
  }
}

absl::StatusOr<std::optional<KeyValue>> WalStore::Get(absl::string_view key) {
  std::shared_lock lock(state_mu_);
  auto it = state_.find(key);
  if (it == state_.end()) return std::optional<KeyValue>();
  return std::optional<KeyValue>(it->second);
}

absl::StatusOr<std::vector<std::optional<KeyValue>>> WalStore::GetMany(
    const std::vector<std::string>& keys) {
  std::shared_lock lock(state_mu_);  // one revision: no commit lands between two keys
  std::vector<std::optional<KeyValue>> out;
  out.reserve(keys.size());
  for (const std::string& key : keys) {
    auto it = state_.find(key);
    out.push_back(it == state_.end() ? std::nullopt : std::optional<KeyValue>(it->second));
  }
  return out;
}

absl::StatusOr<RangeResult> WalStore::List(absl::string_view prefix) {
  std::shared_lock lock(state_mu_);
  RangeResult result;
  result.revision = revision_;
  for (auto it = state_.lower_bound(prefix);
       it != state_.end() && absl::StartsWith(it->first, prefix); ++it) {
    result.kvs.push_back(it->second);
  }
  return result;
}

absl::StatusOr<WatchPtr> WalStore::Watch(std::string prefix, int64_t after_revision,
                                         WatchCallback callback) {
  std::lock_guard watch_lock(watch_mu_);
  std::vector<Event> backlog;
  int64_t revision;
  {
    std::shared_lock lock(state_mu_);
    if (after_revision < history_floor_) {
      return absl::OutOfRangeError(absl::StrCat(
          "revision ", after_revision, " is compacted; the oldest watchable is ", history_floor_));
    }
    for (const Event& e : history_) {
      if (e.revision > after_revision && absl::StartsWith(e.kv.key, prefix)) backlog.push_back(e);
    }
    revision = revision_;
  }
  if (!backlog.empty()) callback(backlog);
  watchers_.push_back(
      Watcher{std::move(prefix), std::move(callback), std::max(revision, after_revision)});
  return std::make_unique<WatchImpl>(this, std::prev(watchers_.end()));
}

void WalStore::Unregister(std::list<Watcher>::iterator it) {
  std::lock_guard lock(watch_mu_);
  watchers_.erase(it);
}

int64_t WalStore::Revision() {
  std::shared_lock lock(state_mu_);
  return revision_;
}

WalStore::Stats WalStore::GetStats() {
  std::shared_lock lock(state_mu_);
  return stats_;
}

}  // namespace mesh::store
