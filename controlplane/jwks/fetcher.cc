#include "controlplane/jwks/fetcher.h"

#include <httplib.h>
#include <openssl/x509.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "controlplane/model/names.h"
#include "nlohmann/json.hpp"

namespace mesh::jwks {
namespace {

std::string Rfc3339(absl::Time t) {
  if (t == absl::InfinitePast() || t == absl::InfiniteFuture()) return "";
  return absl::FormatTime(absl::RFC3339_sec, t, absl::UTCTimeZone());
}

std::string Ago(absl::Time then, absl::Time now) {
  return absl::StrCat(absl::FormatDuration(absl::Trunc(now - then, absl::Seconds(1))), " ago");
}

}  // namespace

FetchFunction HttpFetch(HttpOptions options) {
  return [options](const std::string& uri) -> FetchResult {
    // The URI was checked at apply (model::CheckJwksUri): scheme://authority[/path][?query].
    size_t scheme_end = uri.find("://");
    if (scheme_end == std::string::npos) return {false, "", "not an http(s) URL"};
    size_t path_start = uri.find_first_of("/?#", scheme_end + 3);
    std::string origin = uri.substr(0, path_start);
    origin.replace(0, scheme_end, absl::AsciiStrToLower(uri.substr(0, scheme_end)));
    std::string path = path_start == std::string::npos ? "/" : uri.substr(path_start);
    path = path.substr(0, path.find('#'));
    if (path.empty() || path[0] == '?') path = "/" + path;

    httplib::Client client(origin);
    if (!client.is_valid()) return {false, "", "cannot make a client for this URL"};
    const auto seconds = [](absl::Duration d) {
      return std::make_pair(absl::ToInt64Seconds(d),
                            absl::ToInt64Microseconds(d % absl::Seconds(1)));
    };
    auto [s, us] = seconds(options.timeout);
    client.set_connection_timeout(s, us);
    client.set_read_timeout(s, us);
    client.set_write_timeout(s, us);
    client.set_follow_location(true);
    if (absl::StartsWith(origin, "https://")) {
      client.enable_server_certificate_verification(true);
      if (!options.extra_roots_file.empty()) {
        X509_STORE* store = X509_STORE_new();  // owned by the client's TLS context from here
        X509_STORE_set_default_paths(store);
        if (X509_STORE_load_file(store, options.extra_roots_file.c_str()) != 1) {
          X509_STORE_free(store);
          return {false, "",
                  absl::StrCat("cannot read the extra roots in ", options.extra_roots_file)};
        }
        client.set_ca_cert_store(store);
      }
    }
    std::string body;
    bool too_big = false;
    httplib::Result result = client.Get(path, httplib::Headers{{"Accept", "application/json"}},
                                        [&](const char* data, size_t n) {
                                          if (body.size() + n > options.max_bytes) {
                                            too_big = true;
                                            return false;
                                          }
                                          body.append(data, n);
                                          return true;
                                        });
    if (too_big)
      return {false, "", absl::StrCat("the answer is over ", options.max_bytes, " bytes")};
    if (!result) {
      std::string why = httplib::to_string(result.error());
      if (result.error() == httplib::Error::SSLServerVerification)
        why += " (the server's certificate is not trusted: see --jwks-extra-root-ca)";
      return {false, "", why};
    }
    if (result->status < 200 || result->status > 299)
      return {false, "", absl::StrCat("HTTP status ", result->status)};
    return {true, std::move(body), ""};
  };
}

Fetcher::Fetcher(Options options) : options_(std::move(options)) {
  keys_ = std::make_shared<const std::map<std::string, std::string>>();
  if (options_.start_worker) worker_ = std::thread([this] { Run(); });
}

Fetcher::~Fetcher() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_one();
  if (worker_.joinable()) worker_.join();
}

void Fetcher::SetUris(const std::set<std::string>& uris) {
  bool dropped = false;
  {
    std::lock_guard lock(mu_);
    for (auto it = entries_.begin(); it != entries_.end();) {
      if (uris.count(it->first)) {
        ++it;
        continue;
      }
      dropped = dropped || it->second.status.has_keys;
      it = entries_.erase(it);
    }
    for (const std::string& uri : uris) {
      if (entries_.count(uri)) continue;
      Entry& e = entries_[uri];
      e.status.uri = uri;
      e.status.next = absl::InfinitePast();  // due now
    }
    if (dropped) PublishKeysLocked();
  }
  cv_.notify_one();
}

void Fetcher::PublishKeysLocked() {
  auto keys = std::make_shared<std::map<std::string, std::string>>();
  for (const auto& [uri, e] : entries_) {
    if (e.status.has_keys) (*keys)[uri] = e.keys;
  }
  keys_ = std::move(keys);
}

std::shared_ptr<const std::map<std::string, std::string>> Fetcher::Keys() {
  std::lock_guard lock(mu_);
  return keys_;
}

absl::Time Fetcher::Poll(absl::Time now) {
  std::vector<std::string> due;
  {
    std::lock_guard lock(mu_);
    for (const auto& [uri, e] : entries_) {
      if (e.status.next <= now) due.push_back(uri);
    }
  }
  bool changed = false;
  for (const std::string& uri : due) {
    FetchResult r = options_.fetch(uri);  // no lock held: a fetch may take seconds
    if (r.ok) {
      std::string problem = model::CheckJwks(r.body);
      if (!problem.empty()) r = {false, "", absl::StrCat("the answer ", problem)};
    }
    const absl::Time after = options_.now();
    std::lock_guard lock(mu_);
    auto it = entries_.find(uri);
    if (it == entries_.end()) continue;  // no longer named by config
    Status& st = it->second.status;
    st.last_attempt = after;
    if (r.ok) {
      ++successes_;
      if (st.failures > 0)
        log::Info("jwks: ", uri, " fetched again after ", st.failures, " failed attempts");
      changed = changed || !st.has_keys || it->second.keys != r.body;
      it->second.keys = std::move(r.body);
      st.has_keys = true;
      st.fetched = after;
      st.error.clear();
      st.failures = 0;
      st.next = after + options_.refresh;
      continue;
    }
    ++failures_;
    ++st.failures;
    st.error = std::move(r.error);
    absl::Duration backoff = options_.retry_min;
    for (int i = 1; i < st.failures && backoff < options_.retry_max; ++i) backoff *= 2;
    backoff = std::min({backoff, options_.retry_max, options_.refresh});
    st.next = after + backoff;
    if (st.has_keys) {
      log::Warn("jwks: fetching ", uri, " failed (", st.error, "); keeping the keys fetched ",
                Ago(st.fetched, after), "; next attempt in ", absl::FormatDuration(backoff));
    } else {
      log::Warn("jwks: fetching ", uri, " failed (", st.error,
                "); no keys yet, so tokens that need them are refused (401); next attempt in ",
                absl::FormatDuration(backoff));
    }
  }
  absl::Time next = absl::InfiniteFuture();
  std::shared_ptr<const std::map<std::string, std::string>> keys;
  {
    std::lock_guard lock(mu_);
    if (changed) PublishKeysLocked();
    keys = keys_;
    for (const auto& [uri, e] : entries_) next = std::min(next, e.status.next);
  }
  if (changed && options_.on_change) options_.on_change(std::move(keys));
  return next;
}

void Fetcher::Run() {
  std::unique_lock lock(mu_);
  absl::Time next = absl::InfinitePast();
  while (!stop_) {
    if (next > options_.now()) {
      if (next == absl::InfiniteFuture()) {
        cv_.wait(lock);
      } else {
        cv_.wait_for(lock, absl::ToChronoNanoseconds(next - options_.now()));
      }
    }
    if (stop_) break;
    lock.unlock();
    next = Poll(options_.now());
    lock.lock();
  }
}

std::vector<Fetcher::Status> Fetcher::GetStatus() {
  std::lock_guard lock(mu_);
  std::vector<Status> out;
  for (const auto& [uri, e] : entries_) out.push_back(e.status);
  return out;
}

std::string Fetcher::StatusJson() {
  nlohmann::json out = nlohmann::json::array();
  for (const Status& st : GetStatus()) {
    out.push_back({{"uri", st.uri},
                   {"ok", st.error.empty() && st.has_keys},
                   {"has_keys", st.has_keys},
                   {"fetched", Rfc3339(st.fetched)},
                   {"last_attempt", Rfc3339(st.last_attempt)},
                   {"error", st.error},
                   {"failures", st.failures}});
  }
  return out.dump(2);
}

std::string Fetcher::MetricsText() {
  std::lock_guard lock(mu_);
  return absl::StrCat(
      "# TYPE pilot_jwks_resolver_network_fetch_success_total counter\n"
      "pilot_jwks_resolver_network_fetch_success_total ",
      successes_,
      "\n# TYPE pilot_jwks_resolver_network_fetch_fail_total counter\n"
      "pilot_jwks_resolver_network_fetch_fail_total ",
      failures_, "\n");
}

}  // namespace mesh::jwks
