#include "dataplane/server/worker.h"

#include <boost/asio/post.hpp>

namespace mesh::dataplane {

Worker::Worker(int index, ConnectionPool::Options pool_options)
    : index_(index),
      guard_(boost::asio::make_work_guard(io_)),
      pool_(pool_options),
      rng_(std::random_device{}()) {}

Worker::~Worker() {
  Stop();
}

void Worker::Start() {
  SweepPoolLater();
  thread_ = std::thread([this] { io_.run(); });
}

void Worker::SweepPoolLater() {
  sweep_timer_.expires_after(std::chrono::milliseconds(250));
  sweep_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    absl::Time now = absl::Now();
    pool_.Sweep(now);
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
