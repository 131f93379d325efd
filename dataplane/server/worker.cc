#include "dataplane/server/worker.h"

#include <boost/asio/post.hpp>

#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace mesh::dataplane {
namespace {

// A TimeSource timer on the worker's loop.
class AsioTimer : public Timer {
 public:
  AsioTimer(boost::asio::io_context& io, DeferredQueue& deferred, std::function<void()> on_fire)
      : timer_(io),
        deferred_(deferred),
        on_fire_(std::move(on_fire)),
        alive_(std::make_shared<bool>(true)) {}
  ~AsioTimer() override { *alive_ = false; }
  void Enable(absl::Duration delay) override {
    enabled_ = true;
    timer_.expires_after(absl::ToChronoNanoseconds(delay));
    timer_.async_wait(
        [this, alive = alive_, generation = ++generation_](const boost::system::error_code& ec) {
          if (ec || !*alive || generation != generation_ || !enabled_) return;
          enabled_ = false;
          DeferredQueue::Scope scope(deferred_);
          on_fire_();  // may destroy this timer
        });
  }
  void Disable() override {
    if (!enabled_) return;
    enabled_ = false;
    timer_.cancel();
  }
  bool Enabled() const override { return enabled_; }

 private:
  boost::asio::steady_timer timer_;
  DeferredQueue& deferred_;
  std::function<void()> on_fire_;
  std::shared_ptr<bool> alive_;
  uint64_t generation_ = 0;
  bool enabled_ = false;
};

}  // namespace

Worker::Worker(int index, HttpPools::Options pool_options,
               telemetry::LocalWorkloadPtr local_workload)
    : index_(index),
      guard_(boost::asio::make_work_guard(io_)),
      local_workload_(local_workload ? std::move(local_workload)
                                     : std::make_shared<const telemetry::LocalWorkload>()),
      rng_(std::random_device{}()) {
  // The client TLS context for a secured cluster: its own files' context from the snapshot, or
  // the mesh identity's (ISTIO_MUTUAL).
  auto tls =
      [this](const Cluster& cluster) -> absl::StatusOr<std::shared_ptr<boost::asio::ssl::context>> {
    if (cluster.tls->files) {
      if (snapshot_) {
        auto it = snapshot_->cluster_tls.find(cluster.name);
        if (it != snapshot_->cluster_tls.end()) return it->second;
      }
      return absl::UnavailableError(absl::StrCat("no TLS context for cluster ", cluster.name));
    }
    if (!tls_) return absl::UnavailableError("no workload certificate yet for mutual TLS");
    return std::shared_ptr<boost::asio::ssl::context>(tls_, &tls_->client);
  };
  http_pools_ = std::make_unique<HttpPools>(io_, deferred_, *this, std::move(tls), pool_options);
}

Worker::~Worker() {
  Stop();
  // Teardown in order, on this thread now that the loop is stopped: downstream connections first
  // (their requests cancel what they hold upstream while the upstream connections still exist),
  // then the pools. What is left in the loop's queue is destroyed with it, never run.
  DeferredQueue::Scope scope(deferred_);
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    auto next = std::next(it);  // closing unregisters the session
    if (it->close) {
      it->close();
    } else {
      it->close_if_idle();
    }
    it = next;
  }
  http_pools_.reset();
}

TimerPtr Worker::CreateTimer(std::function<void()> on_fire) {
  return std::make_unique<AsioTimer>(io_, deferred_, std::move(on_fire));
}

const ListenerConfig* Worker::CurrentListener(const ListenerConfig& accepted) const {
  const ListenerConfig* listener = snapshot_ ? snapshot_->Listener(accepted.name) : nullptr;
  return listener ? listener : &accepted;
}

HttpContext::Routing Worker::RoutingFor(const ListenerConfig& accepted) {
  Routing routing;
  const ListenerConfig* listener = CurrentListener(accepted);
  routing.hold = snapshot_;
  routing.routes = listener->inline_routes
                       ? listener->inline_routes.get()
                       : (snapshot_ ? snapshot_->RoutesFor(*listener) : nullptr);
  routing.clusters = snapshot_ ? snapshot_->clusters.get() : nullptr;
  routing.listener = listener;
  return routing;
}

bool Worker::ConnectionAllowed(const ListenerConfig& accepted, const std::string& peer_ip,
                               const std::string& principal) {
  const ListenerConfig* listener = CurrentListener(accepted);
  if (listener->network_rbac.empty()) return true;
  RbacInput in;
  in.source_ip = in.remote_ip = peer_ip;
  in.principal = principal;
  in.destination_port = listener->port;
  const std::string* denied_by = nullptr;
  if (RbacAllows(listener->network_rbac, in, &denied_by)) return true;
  ++stats_.rbac_denied_connections;
  log::Debug("meshproxy: ", listener->name, ": RBAC closed the connection from ",
             principal.empty() ? peer_ip : principal,
             denied_by ? " by " + *denied_by : std::string(" (no ALLOW policy matched)"));
  return false;
}

void Worker::Start() {
  SweepPoolLater();
  thread_ = std::thread([this] { io_.run(); });
}

void Worker::SweepPoolLater() {
  sweep_timer_.expires_after(std::chrono::milliseconds(250));
  sweep_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    DeferredQueue::Scope scope(deferred_);
    absl::Time now = absl::Now();
    http_pools_->Sweep(now);
    for (auto it = sessions_.begin(); it != sessions_.end();) {
      auto next = std::next(it);  // a tick may close its session
      if (it->tick) it->tick(now);
      it = next;
    }
    SweepPoolLater();
  });
}

void Worker::Stop() {
  guard_.reset();
  io_.stop();
  if (thread_.joinable()) thread_.join();
}

void Worker::Publish(SnapshotPtr snapshot) {
  boost::asio::post(io_, [this, s = std::move(snapshot)]() mutable { snapshot_ = std::move(s); });
}

void Worker::PublishTls(TlsContextsPtr tls) {
  boost::asio::post(io_, [this, t = std::move(tls)]() mutable { tls_ = std::move(t); });
}

std::future<WorkerStats> Worker::CollectStats() {
  auto promise = std::make_shared<std::promise<WorkerStats>>();
  std::future<WorkerStats> out = promise->get_future();
  boost::asio::post(io_, [this, promise] { promise->set_value(stats_); });
  return out;
}

void Worker::CloseDraining(const ListenerRuntimePtr& listener) {
  boost::asio::post(io_, [this, listener] {
    for (auto it = sessions_.begin(); it != sessions_.end();) {
      auto next = std::next(it);  // closing may unregister the session synchronously
      if (it->listener == listener.get()) it->close_if_idle();
      it = next;
    }
  });
}

Worker::SessionHandle Worker::Register(Session session) {
  return sessions_.insert(sessions_.end(), std::move(session));
}

void Worker::Unregister(SessionHandle handle) {
  sessions_.erase(handle);
}

}  // namespace mesh::dataplane
