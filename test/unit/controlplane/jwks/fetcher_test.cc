#include "controlplane/jwks/fetcher.h"

#include <httplib.h>

#include <catch2/catch.hpp>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "controlplane/ca/authority.h"
#include "controlplane/ca/serving_certificate.h"
#include "nlohmann/json.hpp"
#include "test/support/process.h"
#include "test/support/temp_dir.h"

namespace mesh::jwks {
namespace {

const std::string kUri = "https://issuer.example/jwks";
const std::string kSet1 = R"({"keys":[{"kty":"EC","kid":"1"}]})";
const std::string kSet2 = R"({"keys":[{"kty":"EC","kid":"2"}]})";

// A fetcher on a fake clock whose fetches answer what `answers` holds for the URI (a body, or
// "!error" for a failure), counting calls and key changes.
struct Harness {
  absl::Time now = absl::FromUnixSeconds(1'000'000);
  std::map<std::string, std::string> answers;
  int fetches = 0, changes = 0;
  std::unique_ptr<Fetcher> fetcher;

  Harness() {
    Fetcher::Options o;
    o.start_worker = false;
    o.now = [this] { return now; };
    o.refresh = absl::Minutes(20);
    o.retry_min = absl::Seconds(1);
    o.retry_max = absl::Seconds(8);
    o.fetch = [this](const std::string& uri) {
      ++fetches;
      const std::string& a = answers[uri];
      if (!a.empty() && a[0] == '!') return FetchResult{false, "", a.substr(1)};
      return FetchResult{true, a, ""};
    };
    o.on_change = [this](auto) { ++changes; };
    fetcher = std::make_unique<Fetcher>(std::move(o));
  }
  std::string KeysOf(const std::string& uri) {
    auto keys = fetcher->Keys();
    auto it = keys->find(uri);
    return it == keys->end() ? "" : it->second;
  }
  Fetcher::Status StatusOf(const std::string& uri) {
    for (const auto& st : fetcher->GetStatus()) {
      if (st.uri == uri) return st;
    }
    FAIL("no status for " << uri);
    return {};
  }
};

TEST_CASE("JWKS: a new URI is fetched at once, then once per refresh interval") {
  Harness h;
  h.answers[kUri] = kSet1;
  CHECK(h.fetcher->Poll(h.now) == absl::InfiniteFuture());  // nothing named yet
  h.fetcher->SetUris({kUri});
  CHECK(h.fetcher->Poll(h.now) == h.now + absl::Minutes(20));
  CHECK(h.fetches == 1);
  CHECK(h.changes == 1);
  CHECK(h.KeysOf(kUri) == kSet1);
  // Not due yet: no fetch.
  h.now += absl::Minutes(10);
  h.fetcher->Poll(h.now);
  CHECK(h.fetches == 1);
  // Due, same keys: fetched, no change pushed.
  h.now += absl::Minutes(10);
  h.fetcher->Poll(h.now);
  CHECK(h.fetches == 2);
  CHECK(h.changes == 1);
  // Rotated keys are a change.
  h.answers[kUri] = kSet2;
  h.now += absl::Minutes(20);
  h.fetcher->Poll(h.now);
  CHECK(h.changes == 2);
  CHECK(h.KeysOf(kUri) == kSet2);
  CHECK(h.StatusOf(kUri).fetched == h.now);
}

TEST_CASE("JWKS: a failed fetch keeps the last good keys and retries with backoff") {
  Harness h;
  h.answers[kUri] = kSet1;
  h.fetcher->SetUris({kUri});
  h.fetcher->Poll(h.now);
  const absl::Time fetched = h.now;
  h.answers[kUri] = "!connection refused";
  h.now += absl::Minutes(20);
  std::vector<absl::Duration> waits;
  for (int i = 0; i < 6; ++i) {
    absl::Time next = h.fetcher->Poll(h.now);
    waits.push_back(next - h.now);
    h.now = next;
  }
  CHECK(waits == std::vector<absl::Duration>{absl::Seconds(1), absl::Seconds(2), absl::Seconds(4),
                                             absl::Seconds(8), absl::Seconds(8), absl::Seconds(8)});
  CHECK(h.KeysOf(kUri) == kSet1);
  CHECK(h.changes == 1);
  Fetcher::Status st = h.StatusOf(kUri);
  CHECK(st.has_keys);
  CHECK(st.fetched == fetched);
  CHECK(st.failures == 6);
  CHECK(st.error == "connection refused");
  auto json = nlohmann::json::parse(h.fetcher->StatusJson());
  CHECK(json[0]["ok"] == false);
  CHECK(json[0]["has_keys"] == true);
  CHECK(json[0]["error"] == "connection refused");
  CHECK(absl::StrContains(h.fetcher->MetricsText(),
                          "pilot_jwks_resolver_network_fetch_fail_total 6\n"));
  CHECK(absl::StrContains(h.fetcher->MetricsText(),
                          "pilot_jwks_resolver_network_fetch_success_total 1\n"));
  // Back: fetched, and the failure count clears.
  h.answers[kUri] = kSet1;
  h.fetcher->Poll(h.now);
  CHECK(h.StatusOf(kUri).failures == 0);
  CHECK(h.StatusOf(kUri).error.empty());
}

TEST_CASE("JWKS: an answer that is not a key set is a failure, and keys nothing") {
  Harness h;
  h.answers[kUri] = "<html>login</html>";
  h.fetcher->SetUris({kUri});
  h.fetcher->Poll(h.now);
  CHECK(h.changes == 0);
  CHECK(h.fetcher->Keys()->empty());
  CHECK(h.StatusOf(kUri).error == "the answer must be a JSON Web Key Set (a JSON object)");
  h.answers[kUri] = R"({"keys": []})";
  h.now += absl::Seconds(1);
  h.fetcher->Poll(h.now);
  CHECK(h.StatusOf(kUri).error == "the answer must hold a non-empty \"keys\" list");
  CHECK_FALSE(h.StatusOf(kUri).has_keys);
}

TEST_CASE("JWKS: a URI config no longer names is dropped with its keys") {
  Harness h;
  const std::string other = "http://other.example/keys";
  h.answers[kUri] = kSet1;
  h.answers[other] = kSet2;
  h.fetcher->SetUris({kUri, other});
  h.fetcher->Poll(h.now);
  CHECK(h.fetcher->Keys()->size() == 2);
  h.fetcher->SetUris({other});
  CHECK(h.fetcher->Keys()->size() == 1);
  CHECK(h.KeysOf(other) == kSet2);
  CHECK(h.fetcher->GetStatus().size() == 1);
  // Named again: fetched again at once.
  h.fetcher->SetUris({kUri, other});
  h.fetcher->Poll(h.now);
  CHECK(h.fetches == 3);
  CHECK(h.KeysOf(kUri) == kSet1);
}

TEST_CASE("JWKS: the worker thread fetches on its own and reports the change") {
  std::mutex mu;
  std::condition_variable cv;
  std::shared_ptr<const std::map<std::string, std::string>> seen;
  Fetcher::Options o;
  o.fetch = [](const std::string&) { return FetchResult{true, kSet1, ""}; };
  o.on_change = [&](auto keys) {
    std::lock_guard lock(mu);
    seen = std::move(keys);
    cv.notify_one();
  };
  Fetcher fetcher(std::move(o));
  fetcher.SetUris({kUri});
  std::unique_lock lock(mu);
  REQUIRE(cv.wait_for(lock, std::chrono::seconds(5), [&] { return seen != nullptr; }));
  CHECK(seen->at(kUri) == kSet1);
}

// A real HTTP(S) server on loopback, serving `body` at /jwks with `status`.
struct JwksServer {
  std::unique_ptr<httplib::Server> server;
  std::thread thread;
  int port = 0;
  std::string body = kSet1;
  int status = 200;

  explicit JwksServer(std::unique_ptr<httplib::Server> s) : server(std::move(s)) {
    server->Get("/jwks", [this](const httplib::Request&, httplib::Response& res) {
      res.status = status;
      res.set_content(body, "application/json");
    });
    server->Get("/moved",
                [](const httplib::Request&, httplib::Response& res) { res.set_redirect("/jwks"); });
    port = server->bind_to_any_port("127.0.0.1");
    // Bound and listening already: a connection made before the accept loop runs waits for it.
    thread = std::thread([this] { server->listen_after_bind(); });
  }
  ~JwksServer() {
    server->stop();
    thread.join();
  }
};

TEST_CASE("JWKS: HttpFetch reads a key set over HTTP, follows redirects, refuses bad answers") {
  JwksServer s(std::make_unique<httplib::Server>());
  const std::string base = absl::StrCat("http://127.0.0.1:", s.port);
  HttpOptions options;
  options.timeout = absl::Seconds(2);
  options.max_bytes = 1000;
  FetchFunction fetch = HttpFetch(options);
  FetchResult r = fetch(base + "/jwks");
  CHECK(r.ok);
  CHECK(r.body == kSet1);
  CHECK(fetch(base + "/moved").body == kSet1);
  r = fetch(base + "/nothing");
  CHECK_FALSE(r.ok);
  CHECK(r.error == "HTTP status 404");
  s.body = std::string(2000, ' ');
  r = fetch(base + "/jwks");
  CHECK_FALSE(r.ok);
  CHECK(r.error == "the answer is over 1000 bytes");
  // Nothing listening.
  r = fetch(absl::StrCat("http://127.0.0.1:", testing::FreePort(), "/jwks"));
  CHECK_FALSE(r.ok);
  CHECK_FALSE(r.error.empty());
}

TEST_CASE("JWKS: HttpFetch over HTTPS verifies the server against the system's and extra roots") {
  testing::TempDir dir;
  auto ca = ca::Authority::Create({});
  REQUIRE(ca.ok());
  ca::ServingCertificate::Options options;
  options.dir = dir / "tls";
  options.names = {"127.0.0.1"};
  auto serving = ca::ServingCertificate::Start(ca->authority.get(), options);
  REQUIRE(serving.ok());
  JwksServer s(std::make_unique<httplib::SSLServer>((dir / "tls/cert.pem").c_str(),
                                                    (dir / "tls/key.pem").c_str()));
  const std::string uri = absl::StrCat("https://127.0.0.1:", s.port, "/jwks");
  // The mesh CA is no system root: refused.
  FetchResult r = HttpFetch({})(uri);
  CHECK_FALSE(r.ok);
  CHECK(absl::StrContains(r.error, "not trusted"));
  // Trusted as an extra root.
  r = HttpFetch({.extra_roots_file = dir / "tls/root.pem"})(uri);
  CHECK(r.ok);
  CHECK(r.body == kSet1);
  // An extra roots file that cannot be read is said so.
  r = HttpFetch({.extra_roots_file = dir / "missing.pem"})(uri);
  CHECK_FALSE(r.ok);
  CHECK(absl::StrContains(r.error, "missing.pem"));
}

}  // namespace
}  // namespace mesh::jwks
