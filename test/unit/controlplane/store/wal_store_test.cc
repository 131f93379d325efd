#include "controlplane/store/wal_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "test/support/temp_dir.h"

namespace mesh::store {
namespace {

using mesh::testing::TempDir;

std::unique_ptr<WalStore> OpenStore(const std::string& dir, WalStore::Options options = {}) {
  auto s = WalStore::Open(dir, options);
  REQUIRE(s.ok());
  return std::move(*s);
}

TEST_CASE("Commit assigns one revision per transaction and Get/List read it back") {
  TempDir dir;
  auto store = OpenStore(dir.path());
  auto r1 = store->Commit({Op::Put("/a/1", "x"), Op::Put("/a/2", "y")});
  REQUIRE(r1.ok());
  CHECK(r1->revision == 1);
  auto r2 = store->Commit({Op::Put("/a/1", "z")});
  REQUIRE(r2.ok());
  CHECK(r2->revision == 2);

  auto kv = store->Get("/a/1");
  REQUIRE(kv.ok());
  REQUIRE(kv->has_value());
  CHECK((*kv)->value == "z");
  CHECK((*kv)->create_revision == 1);
  CHECK((*kv)->mod_revision == 2);

  auto list = store->List("/a/");
  REQUIRE(list.ok());
  REQUIRE(list->kvs.size() == 2);
  CHECK(list->kvs[1].key == "/a/2");
  CHECK(list->revision == 2);
}

TEST_CASE("Preconditions decide atomically and a failed transaction writes nothing") {
  TempDir dir;
  auto store = OpenStore(dir.path());
  REQUIRE(store->Commit({Op::Put("/k", "v", 0)}).ok());
  CHECK(absl::IsAlreadyExists(store->Commit({Op::Put("/k", "v", 0)}).status()));
  CHECK(absl::IsFailedPrecondition(store->Commit({Op::Put("/k", "w", 7)}).status()));
  CHECK(absl::IsNotFound(store->Commit({Op::Delete("/missing")}).status()));
  CHECK(absl::IsNotFound(store->Commit({Op::Put("/missing", "v", 3)}).status()));
  CHECK(absl::IsInvalidArgument(store->Commit({Op::Put("/d", "1"), Op::Put("/d", "2")}).status()));
  // The second op fails, so the first must not be written either.
  CHECK(!store->Commit({Op::Put("/new", "v"), Op::Put("/k", "w", 99)}).ok());
  CHECK(!store->Get("/new")->has_value());
  CHECK(store->Revision() == 1);
  REQUIRE(store->Commit({Op::Put("/k", "w", 1)}).ok());
  REQUIRE(store->Commit({Op::Delete("/k", 2)}).ok());
  CHECK(!store->Get("/k")->has_value());
}

TEST_CASE("A reopened store has every committed key, revision and create_revision") {
  TempDir dir;
  {
    auto store = OpenStore(dir.path());
    REQUIRE(store->Commit({Op::Put("/a", "1")}).ok());
    REQUIRE(store->Commit({Op::Put("/b", "2")}).ok());
    REQUIRE(store->Commit({Op::Put("/a", "3")}).ok());
    REQUIRE(store->Commit({Op::Delete("/b")}).ok());
  }
  auto store = OpenStore(dir.path());
  CHECK(store->Revision() == 4);
  auto a = store->Get("/a");
  REQUIRE(a->has_value());
  CHECK(**a == KeyValue{"/a", "3", 1, 3});
  CHECK(!store->Get("/b")->has_value());
  REQUIRE(store->Commit({Op::Put("/c", "4")}).ok());
  CHECK(store->Revision() == 5);
}

TEST_CASE("Recovery drops a torn tail record and keeps everything before it") {
  TempDir dir;
  {
    auto store = OpenStore(dir.path());
    for (int i = 0; i < 10; ++i)
      REQUIRE(store->Commit({Op::Put("/k" + std::to_string(i), "v")}).ok());
  }
  std::string log = dir / "wal.log";
  auto size = std::filesystem::file_size(log);
  // Cut the last record in half, as a crash during write(2) would.
  std::filesystem::resize_file(log, size - 5);
  {
    auto store = OpenStore(dir.path());
    CHECK(store->Revision() == 9);
    CHECK(store->Get("/k8")->has_value());
    CHECK(!store->Get("/k9")->has_value());
    CHECK(store->GetStats().torn_bytes_dropped > 0);
    // New commits append after the valid prefix and survive another reopen.
    REQUIRE(store->Commit({Op::Put("/after", "v")}).ok());
  }
  auto store = OpenStore(dir.path());
  CHECK(store->Revision() == 10);
  CHECK(store->Get("/after")->has_value());
  CHECK(store->GetStats().torn_bytes_dropped == 0);
}

TEST_CASE("Garbage appended after the last record is dropped on recovery") {
  TempDir dir;
  {
    auto store = OpenStore(dir.path());
    REQUIRE(store->Commit({Op::Put("/k", "v")}).ok());
  }
  {
    std::ofstream out(dir / "wal.log", std::ios::app | std::ios::binary);
    out << std::string("\x10\x00\x00\x00garbage", 11);
  }
  auto store = OpenStore(dir.path());
  CHECK(store->Revision() == 1);
  CHECK(store->Get("/k")->has_value());
}

TEST_CASE("Compaction writes a snapshot, empties the log, and recovery uses both") {
  TempDir dir;
  WalStore::Options options;
  options.compact_log_bytes = 2000;
  {
    auto store = OpenStore(dir.path(), options);
    for (int i = 0; i < 100; ++i) {
      REQUIRE(store->Commit({Op::Put("/k" + std::to_string(i % 20), std::string(50, 'a' + i % 26))})
                  .ok());
    }
    REQUIRE(store->Commit({Op::Delete("/k0")}).ok());
    CHECK(store->GetStats().compactions > 0);
    CHECK(std::filesystem::file_size(dir / "wal.log") < 2000 + 200);
    CHECK(std::filesystem::exists(dir / "snapshot.dat"));
  }
  auto store = OpenStore(dir.path(), options);
  CHECK(store->Revision() == 101);
  auto list = store->List("/");
  REQUIRE(list.ok());
  CHECK(list->kvs.size() == 19);
  auto k19 = store->Get("/k19");
  REQUIRE(k19->has_value());
  CHECK((*k19)->value == std::string(50, 'a' + 99 % 26));
  CHECK((*k19)->mod_revision == 100);
}

TEST_CASE("An explicit Compact then a crash before any new write recovers the same state") {
  TempDir dir;
  {
    auto store = OpenStore(dir.path());
    REQUIRE(store->Commit({Op::Put("/a", "1")}).ok());
    REQUIRE(store->Compact().ok());
    REQUIRE(store->Commit({Op::Put("/b", "2")}).ok());
  }
  auto store = OpenStore(dir.path());
  CHECK(store->Revision() == 2);
  CHECK(store->Get("/a")->has_value());
  CHECK(store->Get("/b")->has_value());
}

TEST_CASE("A corrupt snapshot is refused rather than silently losing keys") {
  TempDir dir;
  {
    auto store = OpenStore(dir.path());
    REQUIRE(store->Commit({Op::Put("/a", "1")}).ok());
    REQUIRE(store->Compact().ok());
  }
  std::filesystem::resize_file(dir / "snapshot.dat",
                               std::filesystem::file_size(dir / "snapshot.dat") - 1);
  auto reopened = WalStore::Open(dir.path());
  REQUIRE(!reopened.ok());
  CHECK(absl::IsDataLoss(reopened.status()));
}

TEST_CASE("A second process cannot open a store directory in use") {
  TempDir dir;
  auto store = OpenStore(dir.path());
  auto second = WalStore::Open(dir.path());
  REQUIRE(!second.ok());
  CHECK(second.status().message() ==
        "store directory " + dir.path() + " is in use by another process");
}

TEST_CASE("Watch delivers the backlog after a revision, then live events, each once and in order") {
  TempDir dir;
  auto store = OpenStore(dir.path());
  REQUIRE(store->Commit({Op::Put("/w/a", "1")}).ok());
  REQUIRE(store->Commit({Op::Put("/other", "x")}).ok());
  REQUIRE(store->Commit({Op::Put("/w/a", "2")}).ok());
  std::mutex mu;
  std::vector<Event> seen;
  auto watch = store->Watch("/w/", 1, [&](const std::vector<Event>& events) {
    std::lock_guard lock(mu);
    seen.insert(seen.end(), events.begin(), events.end());
  });
  REQUIRE(watch.ok());
  {
    std::lock_guard lock(mu);
    REQUIRE(seen.size() == 1);
    CHECK(seen[0].revision == 3);
    CHECK(!seen[0].created());
  }
  REQUIRE(store->Commit({Op::Put("/w/b", "1")}).ok());
  REQUIRE(store->Commit({Op::Delete("/w/a")}).ok());
  std::lock_guard lock(mu);
  REQUIRE(seen.size() == 3);
  CHECK(seen[1].created());
  CHECK(seen[1].kv.key == "/w/b");
  CHECK(seen[2].type == Event::Type::kDelete);
  CHECK(seen[2].kv.value == "2");  // a delete carries the last value
  CHECK(seen[2].revision == 5);
}

TEST_CASE("Watch history survives a restart for revisions still in the log") {
  TempDir dir;
  {
    auto store = OpenStore(dir.path());
    for (int i = 0; i < 5; ++i) REQUIRE(store->Commit({Op::Put("/k", std::to_string(i))}).ok());
  }
  auto store = OpenStore(dir.path());
  std::vector<Event> seen;
  auto watch = store->Watch("/", 3, [&](const std::vector<Event>& events) {
    seen.insert(seen.end(), events.begin(), events.end());
  });
  REQUIRE(watch.ok());
  REQUIRE(seen.size() == 2);
  CHECK(seen[0].kv.value == "3");
}

TEST_CASE("A watch from before the retained history is refused with OutOfRange") {
  TempDir dir;
  WalStore::Options options;
  options.max_history = 4;
  auto store = OpenStore(dir.path(), options);
  for (int i = 0; i < 10; ++i) REQUIRE(store->Commit({Op::Put("/k", std::to_string(i))}).ok());
  auto old = store->Watch("/", 2, [](const std::vector<Event>&) {});
  CHECK(absl::IsOutOfRange(old.status()));
  auto recent = store->Watch("/", 8, [](const std::vector<Event>&) {});
  CHECK(recent.ok());
}

TEST_CASE("A destroyed watch receives nothing more") {
  TempDir dir;
  auto store = OpenStore(dir.path());
  int calls = 0;
  {
    auto watch = store->Watch("/", 0, [&](const std::vector<Event>&) { ++calls; });
    REQUIRE(watch.ok());
    REQUIRE(store->Commit({Op::Put("/a", "1")}).ok());
  }
  REQUIRE(store->Commit({Op::Put("/b", "1")}).ok());
  CHECK(calls == 1);
}

TEST_CASE("Concurrent writers are group-committed: every commit lands, with fewer syncs") {
  TempDir dir;
  auto store = OpenStore(dir.path());
  constexpr int kThreads = 8, kPerThread = 100;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        if (!store->Commit({Op::Put("/t" + std::to_string(t) + "/" + std::to_string(i), "v")}).ok())
          ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(failures == 0);
  CHECK(store->Revision() == kThreads * kPerThread);
  WalStore::Stats stats = store->GetStats();
  CHECK(stats.commits == kThreads * kPerThread);
  CHECK(stats.syncs < stats.commits);
  CHECK(store->List("/")->kvs.size() == kThreads * kPerThread);
}

TEST_CASE("Concurrent compare-and-swap on one key: exactly one writer wins each revision") {
  TempDir dir;
  auto store = OpenStore(dir.path());
  REQUIRE(store->Commit({Op::Put("/counter", "0")}).ok());
  std::atomic<int> wins{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 50; ++i) {
        auto cur = store->Get("/counter");
        int64_t rev = (*cur)->mod_revision;
        int value = std::stoi((*cur)->value);
        if (store->Commit({Op::Put("/counter", std::to_string(value + 1), rev)}).ok()) ++wins;
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(std::stoi((*store->Get("/counter"))->value) == wins.load());
}

}  // namespace
}  // namespace mesh::store

namespace mesh::store {
namespace {

TEST_CASE(
    "A check is a precondition that writes nothing, and a transaction of checks alone is refused") {
  TempDir dir;
  auto store = OpenStore(dir.path());
  REQUIRE(store->Commit({Op::Put("/a", "1"), Op::Put("/b", "1")}).ok());  // revision 1
  // Holds: /a is still at 1 and /absent still absent, so /b is written; /a is untouched.
  auto ok = store->Commit({Op::Check("/a", 1), Op::Check("/absent", 0), Op::Put("/b", "2")});
  REQUIRE(ok.ok());
  CHECK(ok->kvs[0] == KeyValue{"/a", "1", 1, 1});
  CHECK(ok->kvs[1] == KeyValue{"/absent", "", 0, 0});
  CHECK((*store->Get("/a"))->mod_revision == 1);
  // Fails: /a moved on, or /absent appeared; nothing is written either way.
  REQUIRE(store->Commit({Op::Put("/a", "2")}).ok());  // revision 3
  CHECK(
      absl::IsFailedPrecondition(store->Commit({Op::Check("/a", 1), Op::Put("/b", "3")}).status()));
  REQUIRE(store->Commit({Op::Put("/absent", "now")}).ok());
  CHECK(absl::IsAlreadyExists(store->Commit({Op::Check("/absent", 0), Op::Delete("/b")}).status()));
  CHECK((*store->Get("/b"))->value == "2");
  CHECK(store->Revision() == 4);
  CHECK(store->Commit({Op::Check("/a", 3)}).status() ==
        absl::InvalidArgumentError("a transaction needs at least one write"));
  // A check leaves no event: a watch sees only the writes.
  std::vector<Event> seen;
  std::mutex mu;
  auto watch = store->Watch("/", 4, [&](const std::vector<Event>& events) {
    std::lock_guard lock(mu);
    seen.insert(seen.end(), events.begin(), events.end());
  });
  REQUIRE(watch.ok());
  REQUIRE(store->Commit({Op::Check("/a", 3), Op::Put("/c", "1")}).ok());
  std::lock_guard lock(mu);
  REQUIRE(seen.size() == 1);
  CHECK(seen[0].kv.key == "/c");
}

TEST_CASE("GetMany reads every key at one revision, while writers commit") {
  TempDir dir;
  auto store = OpenStore(dir.path());
  // Every commit moves /x and /y together; a consistent read never sees them differ.
  REQUIRE(store->Commit({Op::Put("/x", "0"), Op::Put("/y", "0")}).ok());
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (int i = 1; !stop; ++i) {
      std::string v = std::to_string(i);
      if (!store->Commit({Op::Put("/x", v), Op::Put("/y", v)}).ok()) return;
    }
  });
  int torn = 0;
  for (int i = 0; i < 2000; ++i) {
    auto both = store->GetMany({"/x", "/y"});
    REQUIRE(both.ok());
    if ((*both)[0]->value != (*both)[1]->value) ++torn;
  }
  stop = true;
  writer.join();
  CHECK(torn == 0);
}

}  // namespace
}  // namespace mesh::store

namespace mesh::store {
namespace {

TEST_CASE("The watch history is bounded in bytes as well as in events") {
  TempDir dir;
  WalStore::Options options;
  options.max_history_bytes = 1 << 20;
  auto store = OpenStore(dir.path(), options);
  const std::string big(200 << 10, 'x');
  for (int i = 0; i < 20; ++i)
    REQUIRE(store->Commit({Op::Put("/big", big + std::to_string(i))}).ok());
  // 20 × 200 KiB do not fit in 1 MiB: the oldest revisions are gone, the newest are kept.
  auto old = store->Watch("/", 1, [](const std::vector<Event>&) {});
  CHECK(absl::IsOutOfRange(old.status()));
  std::vector<Event> seen;
  auto recent = store->Watch(
      "/", 17, [&](const std::vector<Event>& e) { seen.insert(seen.end(), e.begin(), e.end()); });
  REQUIRE(recent.ok());
  REQUIRE(seen.size() == 3);
  CHECK(seen.back().kv.value == big + "19");
}

}  // namespace
}  // namespace mesh::store
