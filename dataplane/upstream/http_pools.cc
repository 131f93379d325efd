#include "dataplane/upstream/http_pools.h"

#include <boost/asio/post.hpp>

namespace mesh::dataplane {

struct HttpPools::Pool {
  bool h2 = false;
  std::list<UpstreamConnectionPtr> connections;
  std::list<Waiter*> waiters;
  // From the cluster that last used the pool.
  uint32_t max_requests_per_connection = 0;
  uint32_t max_concurrent_streams = 0;
  std::optional<absl::Duration> idle_timeout;
  bool serve_scheduled = false;
};

// A request waiting for a stream: for a connection being made for it (`bound`), or for any
// connection of its pool to have room.
class HttpPools::Waiter : public PendingStream {
 public:
  UpstreamConnection* bound;

  Waiter(HttpPools& pools, Pool& pool, const Cluster& cluster, const Host& host,
         ResponseDecoder& decoder, PoolCallbacks& callbacks, UpstreamConnection* bound,
         bool counts_pending)
      : bound(bound),
        pools_(pools),
        alive_(pools.alive_),
        pool_(pool),
        cluster_(cluster),
        host_(host),
        state_(cluster.state),
        decoder_(decoder),
        callbacks_(callbacks),
        counts_pending_(counts_pending) {
    pool_.waiters.push_back(this);
    if (counts_pending_) state_->pending.fetch_add(1, std::memory_order_relaxed);
  }
  ~Waiter() override {
    if (!done_ && alive_.lock()) Leave();
  }

  void GiveUpAt(absl::Duration after) {
    timer_ = pools_.time_.CreateTimer([this] { Fail(Failure::kOverflow, "max_connections"); });
    timer_->Enable(after);
  }
  // Each ends the wait; the callback is the last thing that touches this object.
  void Ready(UpstreamConnection& connection) {
    Leave();
    const bool reused = connection.streams_opened() > 0;
    RequestEncoder& encoder = connection.NewStream(decoder_);
    callbacks_.OnPoolReady(encoder, connection.protocol(), reused);
  }
  void Fail(PoolCallbacks::Failure failure, const std::string& detail) {
    Leave();
    callbacks_.OnPoolFailure(failure, detail);
  }
  const Cluster& cluster() const { return cluster_; }
  const Host& host() const { return host_; }

 private:
  using Failure = PoolCallbacks::Failure;
  void Leave() {
    done_ = true;
    if (timer_) timer_->Disable();
    pool_.waiters.remove(this);
    if (counts_pending_) state_->pending.fetch_sub(1, std::memory_order_relaxed);
    counts_pending_ = false;
  }

  HttpPools& pools_;
  std::weak_ptr<int> alive_;
  Pool& pool_;
  const Cluster& cluster_;
  const Host& host_;
  std::shared_ptr<ClusterState> state_;
  ResponseDecoder& decoder_;
  PoolCallbacks& callbacks_;
  bool counts_pending_;
  bool done_ = false;
  TimerPtr timer_;
};

HttpPools::HttpPools(boost::asio::io_context& io, DeferredQueue& deferred, TimeSource& time,
                     TlsProvider tls, Options options)
    : io_(io), deferred_(deferred), time_(time), tls_(std::move(tls)), options_(options) {}

HttpPools::~HttpPools() {
  // Closing a connection reports back (OnClosed); with owner_ emptied first, those reports find
  // nothing to change while the lists are walked.
  owner_.clear();
  std::vector<UpstreamConnectionPtr> all;
  for (auto& pools : pools_) {
    for (auto& [key, pool] : pools) {
      all.insert(all.end(), pool->connections.begin(), pool->connections.end());
    }
  }
  for (const UpstreamConnectionPtr& connection : all) connection->Close();
}

bool HttpPools::Usable(const UpstreamConnection& connection, const Pool& pool) const {
  auto& c = const_cast<UpstreamConnection&>(connection);
  if (!c.connected() || !c.codec().CanOpenStream()) return false;
  if (pool.max_requests_per_connection && c.streams_opened() >= pool.max_requests_per_connection)
    return false;
  return !pool.h2 || pool.max_concurrent_streams == 0 ||
         c.codec().ActiveStreams() < pool.max_concurrent_streams;
}

PendingStreamPtr HttpPools::NewStream(const Cluster& cluster, const Host& host,
                                      HttpProtocol protocol, absl::Time deadline,
                                      ResponseDecoder& decoder, PoolCallbacks& callbacks) {
  const bool h2 = protocol == HttpProtocol::kHttp2;
  std::unique_ptr<Pool>& slot = pools_[h2][host.pool_key];
  if (!slot) {
    slot = std::make_unique<Pool>();
    slot->h2 = h2;
  }
  Pool& pool = *slot;
  pool.max_requests_per_connection = cluster.limits.max_requests_per_connection;
  pool.max_concurrent_streams = cluster.max_concurrent_streams;
  pool.idle_timeout = cluster.limits.idle_timeout;
  for (const UpstreamConnectionPtr& c : pool.connections) {
    if (!Usable(*c, pool)) continue;
    const bool reused = c->streams_opened() > 0;
    RequestEncoder& encoder = c->NewStream(decoder);
    callbacks.OnPoolReady(encoder, c->protocol(), reused);
    return nullptr;
  }
  if (h2) {
    // An HTTP/2 connection on its way will have room for this one too.
    for (const UpstreamConnectionPtr& c : pool.connections) {
      if (!c->connected() && !c->closed())
        return std::make_unique<Waiter>(*this, pool, cluster, host, decoder, callbacks, c.get(),
                                        false);
    }
  }
  const absl::Time now = time_.Now();
  ClusterState& state = *cluster.state;
  if (state.connections.load(std::memory_order_relaxed) >= cluster.limits.max_connections) {
    if (state.pending.load(std::memory_order_relaxed) >= cluster.limits.max_pending_requests) {
      callbacks.OnPoolFailure(PoolCallbacks::Failure::kOverflow, "max_pending_requests");
      return nullptr;
    }
    auto waiter =
        std::make_unique<Waiter>(*this, pool, cluster, host, decoder, callbacks, nullptr, true);
    waiter->GiveUpAt(
        std::max(absl::ZeroDuration(), std::min(deadline - now, cluster.connect_timeout)));
    return waiter;
  }
  std::shared_ptr<boost::asio::ssl::context> tls;
  if (cluster.tls) {
    absl::StatusOr<std::shared_ptr<boost::asio::ssl::context>> context = tls_(cluster);
    if (!context.ok()) {
      callbacks.OnPoolFailure(PoolCallbacks::Failure::kConnect,
                              std::string(context.status().message()));
      return nullptr;
    }
    tls = *std::move(context);
  }
  auto connection = std::make_shared<UpstreamConnection>(
      io_, deferred_, static_cast<UpstreamConnectionEvents&>(*this), cluster.state, protocol,
      options_.limits);
  pool.connections.push_back(connection);
  owner_[connection.get()] = &pool;
  auto waiter = std::make_unique<Waiter>(*this, pool, cluster, host, decoder, callbacks,
                                         connection.get(), false);
  bool failed_at_once = false;
  {
    // Connect may fail before returning (an address that is not an IP): the waiter then has
    // been answered already, and nothing waits.
    auto keep = connection;
    connection->Connect(cluster, host, std::move(tls),
                        std::min(cluster.connect_timeout, deadline - now));
    failed_at_once = keep->closed();
  }
  if (failed_at_once) return nullptr;
  return waiter;
}

void HttpPools::OnConnected(UpstreamConnection& connection) {
  if (Pool* pool = PoolOf(connection)) ServeWaiters(*pool);
}

void HttpPools::ServeWaiters(Pool& pool) {
  while (!pool.waiters.empty()) {
    Waiter* waiter = pool.waiters.front();
    UpstreamConnection* usable = nullptr;
    if (waiter->bound && Usable(*waiter->bound, pool)) usable = waiter->bound;
    for (auto it = pool.connections.begin(); !usable && it != pool.connections.end(); ++it) {
      if (Usable(**it, pool)) usable = it->get();
    }
    if (!usable) return;
    waiter->Ready(*usable);
  }
}

void HttpPools::ServeLater(Pool& pool) {
  if (pool.serve_scheduled) return;
  pool.serve_scheduled = true;
  Pool* p = &pool;
  boost::asio::post(io_, [this, p, alive = std::weak_ptr<int>(alive_)] {
    if (!alive.lock()) return;
    DeferredQueue::Scope scope(deferred_);
    p->serve_scheduled = false;
    ServeWaiters(*p);
  });
}

void HttpPools::OnConnectFailed(UpstreamConnection& connection, PoolCallbacks::Failure failure,
                                const std::string& detail) {
  Pool* pool = PoolOf(connection);
  if (!pool) return;
  std::vector<Waiter*> bound;
  for (Waiter* w : pool->waiters) {
    if (w->bound == &connection) bound.push_back(w);
  }
  Remove(connection);
  for (Waiter* w : bound) w->Fail(failure, detail);
}

void HttpPools::OnStreamClosed(UpstreamConnection& connection) {
  Pool* pool = PoolOf(connection);
  if (!pool) return;
  if (connection.codec().ActiveStreams() == 0) connection.idle_since = time_.Now();
  if (!pool->waiters.empty()) ServeLater(*pool);
}

void HttpPools::OnClosed(UpstreamConnection& connection) {
  Pool* pool = PoolOf(connection);
  Remove(connection);
  if (pool && !pool->waiters.empty()) ServeLater(*pool);
}

HttpPools::Pool* HttpPools::PoolOf(const UpstreamConnection& connection) {
  auto it = owner_.find(&connection);
  return it == owner_.end() ? nullptr : it->second;
}

void HttpPools::Remove(UpstreamConnection& connection) {
  auto it = owner_.find(&connection);
  if (it == owner_.end()) return;
  Pool& pool = *it->second;
  owner_.erase(it);
  for (Waiter* w : pool.waiters) {
    if (w->bound == &connection) w->bound = nullptr;
  }
  pool.connections.remove_if(
      [&](const UpstreamConnectionPtr& c) { return c.get() == &connection; });
}

void HttpPools::Sweep(absl::Time now) {
  for (auto& pools : pools_) {
    for (auto& [key, pool] : pools) {
      size_t idle = 0;
      std::vector<UpstreamConnectionPtr> expired;
      for (auto it = pool->connections.rbegin(); it != pool->connections.rend(); ++it) {
        UpstreamConnection& c = **it;
        if (!c.connected() || c.codec().ActiveStreams() > 0 || !c.idle_since) continue;
        const absl::Duration timeout = pool->idle_timeout.value_or(options_.idle_timeout);
        const bool reusable = c.codec().Reusable();
        if (!reusable || now - *c.idle_since >= timeout || ++idle > options_.max_idle_per_host)
          expired.push_back(*it);
      }
      for (const UpstreamConnectionPtr& c : expired) c->Close();
    }
  }
}

}  // namespace mesh::dataplane
