#include "dataplane/server/proxy_server.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "dataplane/server/tcp_session.h"
#include "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.pb.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"

namespace mesh::dataplane {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

// A listener's identity for "did it change": its deterministic serialization.
std::string Fingerprint(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::io::StringOutputStream stream(&out);
  google::protobuf::io::CodedOutputStream coded(&stream);
  coded.SetSerializationDeterministic(true);
  m.SerializeToCodedStream(&coded);
  coded.Trim();
  return out;
}

// What connections on a listener depend on: the listener without the HCMs' tracing, which every
// request reads from the config in force (so a new collector or sampling rate, as when a proxy
// moves to another meshpilot replica, drains no connection).
std::string ConnectionFingerprint(const envoy::config::listener::v3::Listener& l) {
  namespace hcm = envoy::extensions::filters::network::http_connection_manager::v3;
  envoy::config::listener::v3::Listener copy = l;
  for (auto& chain : *copy.mutable_filter_chains()) {
    for (auto& filter : *chain.mutable_filters()) {
      hcm::HttpConnectionManager m;
      if (!filter.typed_config().Is<hcm::HttpConnectionManager>() ||
          !filter.typed_config().UnpackTo(&m) || !m.has_tracing())
        continue;
      m.clear_tracing();
      filter.mutable_typed_config()->PackFrom(m);
    }
  }
  return Fingerprint(copy);
}

std::string ToString(const tcp::endpoint& ep) {
  return absl::StrCat(ep.address().to_string(), ":", ep.port());
}

}  // namespace

struct ProxyServer::Active {
  std::string name;
  tcp::endpoint endpoint;
  std::string fingerprint;
  ListenerConfigPtr config;
  ListenerRuntimePtr runtime;
  std::unique_ptr<tcp::acceptor> acceptor;
  std::string error;  // why it could not bind
};

ProxyServer::ProxyServer(Options options) : options_(std::move(options)) {
  int n = std::max(1, options_.concurrency);
  for (int i = 0; i < n; ++i)
    workers_.push_back(std::make_unique<Worker>(i, HttpPools::Options{}, options_.local_workload));
}

ProxyServer::~ProxyServer() {
  Stop();
}

void ProxyServer::Start() {
  for (auto& w : workers_) w->Start();
  control_thread_ = std::thread([this] {
    auto guard = asio::make_work_guard(control_);
    control_.run();
  });
}

void ProxyServer::Stop() {
  if (stopped_) return;
  stopped_ = true;
  asio::post(control_, [this] {
    for (auto& [name, a] : active_) {
      error_code ignored;
      if (a->acceptor) a->acceptor->close(ignored);
    }
    control_.stop();
  });
  if (control_thread_.joinable()) control_thread_.join();
  for (auto& w : workers_) w->Stop();
}

void ProxyServer::DrainAll(absl::Duration wait) {
  asio::post(control_, [this] {
    for (auto& [name, a] : active_) Drain(a);
    active_.clear();
  });
  const absl::Time give_up = absl::Now() + wait;
  while (absl::Now() < give_up && ActiveConnections() > 0) absl::SleepFor(absl::Milliseconds(50));
}

int64_t ProxyServer::ActiveConnections() {
  std::vector<std::future<WorkerStats>> stats;
  for (auto& w : workers_) stats.push_back(w->CollectStats());
  int64_t active = 0;
  for (auto& f : stats) active += f.get().downstream_active;
  return active;
}

std::vector<Worker*> ProxyServer::workers() {
  std::vector<Worker*> out;
  for (auto& w : workers_) out.push_back(w.get());
  return out;
}

absl::Status ProxyServer::Apply(ProxyConfigPtr config) {
  SnapshotPtr previous = snapshot();
  absl::StatusOr<SnapshotPtr> next = Snapshot::Build(std::move(config), previous.get());
  if (!next.ok()) return next.status();
  for (auto& w : workers_) w->Publish(*next);
  {
    std::lock_guard lock(mu_);
    snapshot_ = *next;
  }
  asio::post(control_, [this, s = *next] { Reconcile(s); });
  return absl::OkStatus();
}

SnapshotPtr ProxyServer::snapshot() const {
  std::lock_guard lock(mu_);
  return snapshot_;
}

std::vector<ProxyServer::ListenerStatus> ProxyServer::listeners() const {
  std::lock_guard lock(mu_);
  return status_;
}

bool ProxyServer::ready() const {
  std::lock_guard lock(mu_);
  return ready_ && (have_tls_ || !options_.expect_tls);
}

void ProxyServer::SetTls(TlsContextsPtr tls) {
  for (auto& w : workers_) w->PublishTls(tls);
  std::lock_guard lock(mu_);
  have_tls_ = tls != nullptr;
}

void ProxyServer::Drain(std::shared_ptr<Active> active) {
  if (active->acceptor) {
    error_code ignored;
    active->acceptor->close(ignored);
  }
  ListenerRuntimePtr runtime = active->runtime;
  runtime->draining = true;
  log::Info("meshproxy: listener ", active->name, " on ", ToString(active->endpoint), " draining");
  auto timer = std::make_shared<asio::steady_timer>(control_);
  timer->expires_after(absl::ToChronoNanoseconds(options_.drain_time));
  timer->async_wait([this, timer, runtime](error_code) {
    for (auto& w : workers_) w->CloseDraining(runtime);
  });
}

void ProxyServer::Reconcile(SnapshotPtr snapshot) {
  std::vector<ListenerStatus> status;
  bool warming = false;
  std::set<std::string> wanted;
  for (const auto& [name, lc] : snapshot->listeners) {
    std::optional<tcp::endpoint> ep = options_.bind(*lc);
    if (!ep) continue;
    wanted.insert(name);
    std::string fingerprint = ConnectionFingerprint(snapshot->config->listeners.at(name));
    auto it = active_.find(name);
    if (it != active_.end() && it->second->acceptor && it->second->endpoint == *ep) {
      Active& a = *it->second;
      if (a.fingerprint != fingerprint) {
        // Same address, new filter chain: new connections get the new config at once, and the
        // open ones close after their request in flight.
        auto old = std::make_shared<Active>();
        old->name = a.name;
        old->endpoint = a.endpoint;
        old->runtime = a.runtime;
        Drain(old);
        a.runtime = std::make_shared<ListenerRuntime>();
        a.runtime->name = name;
        a.fingerprint = fingerprint;
        a.config = lc;
        log::Info("meshproxy: listener ", name, " updated in place");
      }
      status.push_back({name, ToString(*ep), "active"});
      continue;
    }
    if (it != active_.end()) {
      Drain(it->second);
      active_.erase(it);
    }
    if (lc->kind == ListenerConfig::Kind::kHttp && !snapshot->RoutesFor(*lc)) {
      warming = true;  // opens when its route config arrives
      status.push_back({name, ToString(*ep), "warming"});
      continue;
    }
    auto a = std::make_shared<Active>();
    a->name = name;
    a->endpoint = *ep;
    a->fingerprint = fingerprint;
    a->config = lc;
    a->runtime = std::make_shared<ListenerRuntime>();
    a->runtime->name = name;
    auto acceptor = std::make_unique<tcp::acceptor>(control_);
    error_code ec;
    acceptor->open(ep->protocol(), ec);
    if (!ec) acceptor->set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor->bind(*ep, ec);
    if (!ec) acceptor->listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      a->error = ec.message();
      log::Warn("meshproxy: listener ", name, " cannot bind ", ToString(*ep), ": ", ec.message());
      status.push_back({name, ToString(*ep), "failed: " + ec.message()});
      continue;  // tried again on the next update
    }
    a->acceptor = std::move(acceptor);
    active_[name] = a;
    log::Info("meshproxy: listener ", name, " listening on ", ToString(*ep));
    status.push_back({name, ToString(*ep), "active"});
    asio::co_spawn(control_, AcceptLoop(a), asio::detached);
  }
  for (auto it = active_.begin(); it != active_.end();) {
    if (wanted.count(it->first)) {
      ++it;
      continue;
    }
    Drain(it->second);
    it = active_.erase(it);
  }
  const auto& versions = snapshot->config->versions;
  std::lock_guard lock(mu_);
  status_ = std::move(status);
  ready_ = !warming && versions.count("type.googleapis.com/envoy.config.listener.v3.Listener") &&
           versions.count("type.googleapis.com/envoy.config.cluster.v3.Cluster");
}

asio::awaitable<void> ProxyServer::AcceptLoop(std::shared_ptr<Active> a) {
  asio::steady_timer pause(control_);
  for (;;) {
    Worker& worker = *workers_[next_worker_++ % workers_.size()];
    error_code ec;
    tcp::socket socket = co_await a->acceptor->async_accept(
        worker.io(), asio::redirect_error(asio::use_awaitable, ec));
    if (!a->acceptor->is_open()) co_return;
    if (ec) {
      // Out of descriptors or a transient error: pause rather than spin.
      log::Warn("meshproxy: listener ", a->name, ": accept: ", ec.message());
      pause.expires_after(std::chrono::milliseconds(100));
      co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    if (a->config->kind == ListenerConfig::Kind::kHttp) {
      asio::post(worker.io(), [&worker, s = std::move(socket), a, this]() mutable {
        ServeHttp(worker, std::move(s), a->runtime, a->config, options_.http);
      });
    } else {
      asio::co_spawn(worker.io(), ServeTcp(worker, std::move(socket), a->runtime, a->config),
                     asio::detached);
    }
  }
}

}  // namespace mesh::dataplane
