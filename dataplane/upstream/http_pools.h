#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <unordered_map>

#include "absl/status/statusor.h"
#include "dataplane/network/deferred_queue.h"
#include "dataplane/stream/time_source.h"
#include "dataplane/upstream/upstream_connection.h"

namespace mesh::dataplane {

// A worker's upstream connection pools, per host (its pool key, which includes the cluster's TLS
// settings) and protocol: HTTP/1.1 connections carry one exchange at a time and wait idle for the
// next; HTTP/2 connections carry up to the peer's SETTINGS_MAX_CONCURRENT_STREAMS (and the
// cluster's limit) at once. New connections count against the cluster's max_connections; a
// request that finds none free waits (up to max_pending_requests of them, at most the connect
// timeout) or is refused as an overflow. Idle connections close after their idle timeout, and
// whenever the peer closes them or sends a byte nobody asked for. Worker-thread only.
class HttpPools : public ConnectionSource, private UpstreamConnectionEvents {
 public:
  // The client TLS context for a secured cluster's connections, or why there is none.
  using TlsProvider =
      std::function<absl::StatusOr<std::shared_ptr<boost::asio::ssl::context>>(const Cluster&)>;
  struct Options {
    size_t max_idle_per_host = 64;
    absl::Duration idle_timeout = absl::Seconds(30);  // unless the cluster sets one
    CodecLimits limits;
  };
  HttpPools(boost::asio::io_context& io, DeferredQueue& deferred, TimeSource& time, TlsProvider tls,
            Options options);
  ~HttpPools() override;

  // ConnectionSource
  PendingStreamPtr NewStream(const Cluster& cluster, const Host& host, HttpProtocol protocol,
                             absl::Time deadline, ResponseDecoder& decoder,
                             PoolCallbacks& callbacks) override;

  // Closes connections idle past their timeout.
  void Sweep(absl::Time now);

 private:
  struct Pool;
  class Waiter;
  friend class Waiter;

  // UpstreamConnectionEvents
  void OnConnected(UpstreamConnection& connection) override;
  void OnConnectFailed(UpstreamConnection& connection, PoolCallbacks::Failure failure,
                       const std::string& detail) override;
  void OnStreamClosed(UpstreamConnection& connection) override;
  void OnClosed(UpstreamConnection& connection) override;

  bool Usable(const UpstreamConnection& connection, const Pool& pool) const;
  // Gives waiting requests the streams `pool`'s connections can open now.
  void ServeWaiters(Pool& pool);
  void ServeLater(Pool& pool);
  void Remove(UpstreamConnection& connection);
  Pool* PoolOf(const UpstreamConnection& connection);

  boost::asio::io_context& io_;
  DeferredQueue& deferred_;
  TimeSource& time_;
  const TlsProvider tls_;
  const Options options_;
  std::unordered_map<std::string, std::unique_ptr<Pool>> pools_[2];  // [0] HTTP/1.1, [1] HTTP/2
  std::unordered_map<const UpstreamConnection*, Pool*> owner_;
  std::shared_ptr<int> alive_ =
      std::make_shared<int>(0);  // waiters outliving the pools see it gone
};

}  // namespace mesh::dataplane
