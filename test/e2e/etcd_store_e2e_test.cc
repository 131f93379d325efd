// The etcd-backed store against real etcd members (Debian's etcd-server) on free loopback ports:
// the store contract the embedded store keeps, watches across broken streams and compactions,
// and writes across a member's death.
#include <atomic>
#include <catch2/catch.hpp>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "controlplane/ca/authority.h"
#include "controlplane/store/etcd_store.h"
#include "test/support/etcd.h"
#include "test/support/temp_dir.h"
#include "test/support/x509.h"

namespace mesh::store {
namespace {

using testing::EtcdCluster;
using testing::TempDir;
using testing::WaitFor;
using namespace std::chrono_literals;

std::unique_ptr<EtcdStore> Connect(std::vector<std::string> endpoints) {
  EtcdStore::Options options;
  options.endpoints = std::move(endpoints);
  auto store = EtcdStore::Open(options);
  REQUIRE(store.ok());
  return std::move(*store);
}

// What a watch delivered, for checks from the test thread.
struct Seen {
  std::mutex mu;
  std::vector<Event> events;
  void Add(const std::vector<Event>& batch) {
    std::lock_guard lock(mu);
    events.insert(events.end(), batch.begin(), batch.end());
  }
  // The keys and values the events leave, as a watcher replaying them would hold.
  std::map<std::string, std::string> State(std::map<std::string, std::string> from = {}) {
    std::lock_guard lock(mu);
    for (const Event& e : events) {
      if (e.type == Event::Type::kDelete) {
        from.erase(e.kv.key);
      } else {
        from[e.kv.key] = e.kv.value;
      }
    }
    return from;
  }
  size_t size() {
    std::lock_guard lock(mu);
    return events.size();
  }
};

TEST_CASE("EtcdStore keeps the store contract: preconditions, errors naming the key, all or none") {
  TempDir dir;
  EtcdCluster etcd(dir.path());
  REQUIRE(etcd.Start());
  auto store = Connect(etcd.Endpoints());
  auto first = store->Commit({Op::Put("/k", "v", 0)});
  REQUIRE(first.ok());
  CHECK(first->kvs[0].create_revision == first->revision);
  CHECK(first->kvs[0].mod_revision == first->revision);
  auto again = store->Commit({Op::Put("/k", "w", first->revision)});
  REQUIRE(again.ok());
  CHECK(again->revision == first->revision + 1);
  CHECK(again->kvs[0].create_revision == first->revision);  // etcd keeps the creation revision

  auto exists = store->Commit({Op::Put("/k", "x", 0)});
  CHECK(absl::IsAlreadyExists(exists.status()));
  CHECK(exists.status().message() == "key /k already exists");
  auto stale = store->Commit({Op::Put("/k", "x", first->revision)});
  CHECK(absl::IsFailedPrecondition(stale.status()));
  CHECK(stale.status().message() ==
        absl::StrCat("key /k is at revision ", again->revision, ", not ", first->revision));
  CHECK(absl::IsNotFound(store->Commit({Op::Delete("/missing")}).status()));
  CHECK(absl::IsNotFound(store->Commit({Op::Put("/missing", "v", 3)}).status()));
  CHECK(absl::IsInvalidArgument(store->Commit({Op::Put("/d", "1"), Op::Put("/d", "2")}).status()));
  // The second op fails, so the first is not written either.
  CHECK(!store->Commit({Op::Put("/new", "v"), Op::Put("/k", "y", 1)}).ok());
  CHECK(!store->Get("/new")->has_value());

  auto got = store->Get("/k");
  REQUIRE(got.ok());
  REQUIRE(got->has_value());
  CHECK((*got)->value == "w");
  CHECK((*got)->mod_revision == again->revision);
  REQUIRE(store->Commit({Op::Put("/a/1", "1"), Op::Put("/a/2", "2"), Op::Put("/b", "3")}).ok());
  auto listed = store->List("/a/");
  REQUIRE(listed.ok());
  REQUIRE(listed->kvs.size() == 2);
  CHECK(listed->kvs[0].key == "/a/1");
  CHECK(listed->revision == store->Revision());
  // A check is a precondition that writes nothing.
  auto checked =
      store->Commit({Op::Check("/k", again->revision), Op::Check("/nope", 0), Op::Put("/c", "1")});
  REQUIRE(checked.ok());
  CHECK(checked->kvs[0].mod_revision == again->revision);
  CHECK(checked->kvs[1] == KeyValue{"/nope", "", 0, 0});
  CHECK((*store->Get("/k"))->mod_revision == again->revision);
  auto moved = store->Commit({Op::Check("/k", first->revision), Op::Put("/c", "2")});
  CHECK(moved.status().message() ==
        absl::StrCat("key /k is at revision ", again->revision, ", not ", first->revision));
  CHECK((*store->Get("/c"))->value == "1");
  CHECK(absl::IsInvalidArgument(store->Commit({Op::Check("/k", again->revision)}).status()));
  // GetMany over more keys than one etcd transaction reads them all at one revision.
  std::vector<std::string> many;
  for (int i = 0; i < 150; ++i) many.push_back(absl::StrCat("/a/", i % 2 + 1));
  auto read = store->GetMany(many);
  REQUIRE(read.ok());
  CHECK(read->size() == 150);
  CHECK((*read)[149]->value == "2");

  auto removed = store->Commit({Op::Delete("/k", again->revision)});
  REQUIRE(removed.ok());
  CHECK(removed->kvs[0].value == "w");

  // etcd allows 128 operations per transaction by default: a bigger batch is refused whole.
  std::vector<Op> big;
  for (int i = 0; i < 200; ++i) big.push_back(Op::Put(absl::StrCat("/big/", i), "v"));
  auto refused = store->Commit(big);
  CHECK(absl::IsInvalidArgument(refused.status()));
  CHECK(absl::StrContains(refused.status().message(), "exceeds etcd's limits"));
  CHECK(store->List("/big/")->kvs.empty());
}

TEST_CASE("Concurrent compare-and-swap through etcd: exactly one writer wins each revision") {
  TempDir dir;
  EtcdCluster etcd(dir.path());
  REQUIRE(etcd.Start());
  auto a = Connect(etcd.Endpoints());
  auto b = Connect(etcd.Endpoints());
  REQUIRE(a->Commit({Op::Put("/counter", "0")}).ok());
  std::atomic<int> wins{0}, conflicts{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      EtcdStore* store = t % 2 ? a.get() : b.get();
      for (int i = 0; i < 25; ++i) {
        auto cur = store->Get("/counter");
        int value = std::stoi((*cur)->value);
        auto r =
            store->Commit({Op::Put("/counter", std::to_string(value + 1), (*cur)->mod_revision)});
        if (r.ok()) {
          ++wins;
        } else if (absl::IsFailedPrecondition(r.status())) {
          ++conflicts;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(std::stoi((*a->Get("/counter"))->value) == wins.load());
  CHECK(wins + conflicts == 100);
  CHECK(conflicts > 0);
}

TEST_CASE("An etcd watch resumes after its member dies, and re-lists across a compaction") {
  TempDir dir;
  EtcdCluster etcd(dir.path(), 3);
  REQUIRE(etcd.Start());
  std::vector<std::string> all = etcd.Endpoints();
  auto writer = Connect({all[1], all[2]});
  REQUIRE(writer->Commit({Op::Put("/w/keep", "1"), Op::Put("/w/gone", "1")}).ok());
  int64_t start = writer->Revision();
  // The watcher talks to member 0 only, so killing it breaks the watch for as long as it is down.
  EtcdStore::Options only0;
  only0.endpoints = {all[0]};
  only0.retry_for = absl::Seconds(30);
  auto watcher = EtcdStore::Open(only0);
  REQUIRE(watcher.ok());
  Seen seen;
  std::map<std::string, std::string> base = {{"/w/keep", "1"}, {"/w/gone", "1"}};
  auto watch = (*watcher)->Watch("/w/", start, [&](const auto& batch) { seen.Add(batch); });
  REQUIRE(watch.ok());
  REQUIRE(writer->Commit({Op::Put("/w/a", "1")}).ok());
  REQUIRE(WaitFor([&] { return seen.size() == 1; }, 5s));

  SECTION("a broken stream resumes from the last revision, each event once") {
    etcd.Kill(0);
    REQUIRE(writer->Commit({Op::Put("/w/b", "1")}).ok());
    REQUIRE(writer->Commit({Op::Delete("/w/gone")}).ok());
    REQUIRE(etcd.Restart(0));
    REQUIRE(WaitFor([&] { return seen.size() == 3; }, 20s));
    std::this_thread::sleep_for(300ms);
    CHECK(seen.size() == 3);
    std::lock_guard lock(seen.mu);
    CHECK(seen.events[1].kv.key == "/w/b");
    CHECK(seen.events[2].type == Event::Type::kDelete);
    CHECK(seen.events[2].kv.key == "/w/gone");
    CHECK(seen.events[2].kv.value == "1");  // the value it had
  }
  SECTION("history compacted while it was down: the difference is delivered") {
    etcd.Kill(0);
    REQUIRE(writer->Commit({Op::Put("/w/b", "1")}).ok());
    REQUIRE(writer->Commit({Op::Put("/w/b", "2")}).ok());
    REQUIRE(writer->Commit({Op::Delete("/w/gone")}).ok());
    REQUIRE(writer->Commit({Op::Put("/other", "x")}).ok());
    REQUIRE(writer->Compact(writer->Revision()).ok());
    REQUIRE(etcd.Restart(0));
    std::map<std::string, std::string> want = {{"/w/keep", "1"}, {"/w/a", "1"}, {"/w/b", "2"}};
    REQUIRE(WaitFor([&] { return seen.State(base) == want; }, 20s));
    // And it watches on from there.
    REQUIRE(writer->Commit({Op::Put("/w/c", "1")}).ok());
    want.emplace("/w/c", "1");
    CHECK(WaitFor([&] { return seen.State(base) == want; }, 10s));
  }
  // A watch from a compacted revision is refused as the embedded store refuses one.
  if (writer->Compact(writer->Revision()).ok()) {
    auto old = writer->Watch("/w/", start, [](const auto&) {});
    CHECK(absl::IsOutOfRange(old.status()));
  }
}

TEST_CASE("One etcd member of three killed during a write loop: no acknowledged write is lost") {
  TempDir dir;
  EtcdCluster etcd(dir.path(), 3);
  REQUIRE(etcd.Start());
  auto store = Connect(etcd.Endpoints());
  std::atomic<bool> stop{false};
  std::atomic<int> acked{0}, failed{0};
  std::thread writer([&] {
    for (int i = 0; !stop; ++i) {
      if (store->Commit({Op::Put(absl::StrCat("/loop/", i), absl::StrCat("v", i), 0)}).ok()) {
        acked = i + 1;
      } else {
        ++failed;
        break;  // each key is written once: a failure ends the loop to keep the check exact
      }
    }
  });
  REQUIRE(WaitFor([&] { return acked > 50; }, 10s));
  etcd.Kill(0);  // the member the client is connected to
  int at_kill = acked;
  REQUIRE(WaitFor([&] { return acked > at_kill + 50 || failed > 0; }, 20s));
  stop = true;
  writer.join();
  CHECK(failed == 0);
  auto listed = store->List("/loop/");
  REQUIRE(listed.ok());
  std::map<std::string, std::string> got;
  for (const KeyValue& kv : listed->kvs) got[kv.key] = kv.value;
  for (int i = 0; i < acked; ++i) {
    INFO(i);
    CHECK(got[absl::StrCat("/loop/", i)] == absl::StrCat("v", i));
  }
}

TEST_CASE("A lease keeps its keys while kept alive, and etcd deletes them when it expires") {
  TempDir dir;
  EtcdCluster etcd(dir.path());
  REQUIRE(etcd.Start());
  auto store = Connect(etcd.Endpoints());
  auto lease = store->GrantLease(absl::Seconds(2));
  REQUIRE(lease.ok());
  REQUIRE(store->PutWithLease("/leased", "x", *lease).ok());
  for (int i = 0; i < 3; ++i) {
    std::this_thread::sleep_for(1s);
    auto ttl = store->KeepAlive(*lease);
    REQUIRE(ttl.ok());
    CHECK(*ttl > absl::ZeroDuration());
  }
  CHECK(store->Get("/leased")->has_value());
  CHECK(WaitFor([&] { return !store->Get("/leased")->has_value(); }, 6s));
  CHECK(absl::IsNotFound(store->KeepAlive(*lease).status()));
}

TEST_CASE("With etcd authentication on, the store logs in, and a wrong password is refused") {
  TempDir dir;
  EtcdCluster etcd(dir.path());
  REQUIRE(etcd.Start());
  const std::string endpoint = etcd.Endpoints()[0];
  for (std::vector<std::string> args :
       {std::vector<std::string>{"user", "add", "root", "--new-user-password=mesh-pw"},
        std::vector<std::string>{"auth", "enable"}}) {
    std::vector<std::string> argv = {"etcdctl", "--endpoints", endpoint};
    argv.insert(argv.end(), args.begin(), args.end());
    testing::CommandResult r = testing::RunCommand(argv);
    INFO(r.out);
    REQUIRE(r.exit_code == 0);
  }
  auto url = EtcdStore::ParseUrl("etcd://root:mesh-pw@" + endpoint);
  REQUIRE(url.ok());
  auto store = EtcdStore::Open(*url);
  REQUIRE(store.ok());
  REQUIRE((*store)->Commit({Op::Put("/auth/k", "v")}).ok());
  CHECK((*(*store)->Get("/auth/k"))->value == "v");

  auto wrong = EtcdStore::ParseUrl("etcd://root:nope@" + endpoint);
  REQUIRE(wrong.ok());
  wrong->retry_for = absl::Seconds(1);
  auto refused = EtcdStore::Open(*wrong);
  INFO(refused.status().ToString());
  CHECK(absl::IsPermissionDenied(refused.status()));
  CHECK(absl::StrContains(refused.status().message(), "authentication failed"));
  // Without credentials etcd refuses the reads themselves.
  EtcdStore::Options anonymous;
  anonymous.endpoints = {endpoint};
  anonymous.retry_for = absl::Seconds(1);
  CHECK(!EtcdStore::Open(anonymous).ok());
}

TEST_CASE("Over TLS the store verifies etcd and shows its client certificate") {
  TempDir dir;
  // Certificates from a CA made here: etcd's for 127.0.0.1, also good as a client certificate.
  auto ca = ca::Authority::Create({});
  REQUIRE(ca.ok());
  std::string key;
  auto cert = ca->authority->SignServing(testing::MakeCsr({}, &key), {"127.0.0.1"});
  REQUIRE(cert.ok());
  std::ofstream(dir / "ca.pem") << ca->authority->root_cert_pem();
  std::ofstream(dir / "cert.pem") << cert->cert_pem;
  std::ofstream(dir / "key.pem") << key;
  EtcdCluster etcd(dir / "etcd");
  etcd.UseTls(dir / "cert.pem", dir / "key.pem", dir / "ca.pem");
  REQUIRE(etcd.Start());  // itself a TLS client with that certificate
  auto options = EtcdStore::ParseUrl(etcd.Url());
  REQUIRE(options.ok());
  CHECK(options->tls);
  options->ca_file = dir / "ca.pem";
  options->cert_file = dir / "cert.pem";
  options->key_file = dir / "key.pem";
  auto store = EtcdStore::Open(*options);
  REQUIRE(store.ok());
  CHECK((*store)->Commit({Op::Put("/tls/k", "v")}).ok());
  // Without a client certificate, or trusting another CA, nothing gets through.
  options->retry_for = absl::Seconds(1);
  options->request_timeout = absl::Seconds(1);
  EtcdStore::Options no_cert = *options;
  no_cert.cert_file.clear();
  no_cert.key_file.clear();
  CHECK(!EtcdStore::Open(no_cert).ok());
  auto other = ca::Authority::Create({});
  REQUIRE(other.ok());
  std::ofstream(dir / "other.pem") << other->authority->root_cert_pem();
  EtcdStore::Options wrong_ca = *options;
  wrong_ca.ca_file = dir / "other.pem";
  CHECK(!EtcdStore::Open(wrong_ca).ok());
}

}  // namespace
}  // namespace mesh::store
