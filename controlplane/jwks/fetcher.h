#pragma once

#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

// The key sets behind RequestAuthentication `jwksUri`s, fetched by meshpilot and inlined into
// the proxies' jwt_authn providers (what istiod's JWKS resolver does). Each URI is fetched when
// config first names it, then every refresh interval; a failed fetch is retried with backoff and
// keeps the last good keys. Thread-safe.
namespace mesh::jwks {

// One fetch: the body, or why there is none.
struct FetchResult {
  bool ok = false;
  std::string body;
  std::string error;
};
using FetchFunction = std::function<FetchResult(const std::string& uri)>;

struct HttpOptions {
  absl::Duration timeout = absl::Seconds(5);
  size_t max_bytes = 1 << 20;
  // PEM roots trusted for https:// besides the system's (ca-certificates); none when empty.
  std::string extra_roots_file;
};
// GET over HTTP/1.1 or HTTPS (the server's certificate verified, redirects followed), with a
// 2xx answer of at most `max_bytes` as success.
FetchFunction HttpFetch(HttpOptions options);

class Fetcher {
 public:
  struct Options {
    FetchFunction fetch;
    // Istio's PILOT_JWT_PUB_KEY_REFRESH_INTERVAL.
    absl::Duration refresh = absl::Minutes(20);
    // After a failure: retry_min, doubling up to retry_max (and never past `refresh`).
    absl::Duration retry_min = absl::Seconds(1);
    absl::Duration retry_max = absl::Minutes(1);
    std::function<absl::Time()> now = [] { return absl::Now(); };
    // Called with the new Keys() (on the fetching thread, no lock held) after they changed.
    std::function<void(std::shared_ptr<const std::map<std::string, std::string>>)> on_change;
    // Whether a thread of its own polls; tests that call Poll themselves turn it off.
    bool start_worker = true;
  };
  explicit Fetcher(Options options);
  ~Fetcher();

  // The URIs config names now: new ones are fetched at once, ones no longer named are dropped
  // with their keys.
  void SetUris(const std::set<std::string>& uris);

  // The last good key set of every URI that has one.
  std::shared_ptr<const std::map<std::string, std::string>> Keys();

  struct Status {
    std::string uri;
    bool has_keys = false;
    absl::Time fetched = absl::InfinitePast();  // of the keys held
    absl::Time last_attempt = absl::InfinitePast();
    std::string error;  // of the last attempt; empty when it succeeded
    int failures = 0;   // in a row
    absl::Time next = absl::InfinitePast();
  };
  std::vector<Status> GetStatus();
  // GetStatus as JSON (GET /debug/jwksz): [{"uri", "ok", "has_keys", "fetched", "last_attempt",
  // "error", "failures"}], times in RFC 3339.
  std::string StatusJson();

  // Istio's pilot_jwks_resolver_network_fetch_{success,fail}_total counters.
  std::string MetricsText();

  // Fetches every URI due by `now`; returns when the next one is due (InfiniteFuture: none).
  absl::Time Poll(absl::Time now);

 private:
  struct Entry {
    Status status;
    std::string keys;
  };
  void Run();
  void PublishKeysLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Options options_;
  std::mutex mu_;
  std::map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const std::map<std::string, std::string>> keys_ ABSL_GUARDED_BY(mu_);
  int64_t successes_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t failures_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::condition_variable cv_;
  std::thread worker_;
};

}  // namespace mesh::jwks
