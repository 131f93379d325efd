#include "dataplane/server/tcp_session.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace mesh::dataplane {
namespace {

namespace asio = boost::asio;
using asio::awaitable;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

// Both sockets of one proxied connection and what the two copy directions share.
struct Pipe {
  Pipe(tcp::socket down_socket)
      : down(std::move(down_socket)), up(down.get_executor()), finished(down.get_executor()) {}
  tcp::socket down, up;
  asio::steady_timer finished;  // cancelled when a direction ends
  int running = 2;
  absl::Time last_activity = absl::Now();

  void CloseBoth() {
    error_code ignored;
    down.close(ignored);
    up.close(ignored);
  }
};

awaitable<void> Copy(std::shared_ptr<Pipe> pipe, tcp::socket& from, tcp::socket& to,
                     uint64_t& counter) {
  char buffer[16 * 1024];
  error_code ec;
  for (;;) {
    size_t n = co_await from.async_read_some(asio::buffer(buffer),
                                             asio::redirect_error(asio::use_awaitable, ec));
    if (ec) break;
    co_await asio::async_write(to, asio::buffer(buffer, n),
                               asio::redirect_error(asio::use_awaitable, ec));
    if (ec) break;
    counter += n;
    pipe->last_activity = absl::Now();
  }
  if (ec == asio::error::eof) {
    error_code ignored;
    to.shutdown(tcp::socket::shutdown_send, ignored);  // pass the half-close on
  } else {
    pipe->CloseBoth();  // a reset or an error ends both directions
  }
  --pipe->running;
  pipe->finished.cancel();
}

}  // namespace

awaitable<void> ServeTcp(Worker& worker, tcp::socket socket, ListenerRuntimePtr listener,
                         ListenerConfigPtr accepted) {
  WorkerStats& stats = worker.stats();
  ++stats.downstream_active;
  ++stats.downstream_total;
  auto pipe = std::make_shared<Pipe>(std::move(socket));
  Worker::SessionHandle handle =
      worker.Register({listener.get(), [pipe] { pipe->CloseBoth(); }, nullptr});

  const SnapshotPtr snapshot = worker.snapshot();
  const ListenerConfig* config = snapshot ? snapshot->Listener(accepted->name) : nullptr;
  if (!config || config->kind != ListenerConfig::Kind::kTcp) config = accepted.get();
  const TcpTarget* target = config->PickTcp(worker.Random());
  const Cluster* cluster = target && snapshot ? snapshot->clusters->Find(target->cluster) : nullptr;
  const Host* host = cluster ? cluster->Pick(worker.Random(), std::nullopt, absl::Now()) : nullptr;
  error_code ec;
  if (!host) {
    log::Debug("meshproxy: ", config->name, ": no endpoint for ",
               target ? target->cluster : std::string("<none>"));
    if (cluster) ++stats.no_healthy_upstream[cluster->name];
  } else {
    asio::ip::address ip = asio::ip::make_address(host->address, ec);
    if (!ec) {
      asio::steady_timer connect_timer(pipe->down.get_executor());
      connect_timer.expires_after(absl::ToChronoNanoseconds(cluster->connect_timeout));
      connect_timer.async_wait([pipe](error_code e) {
        if (!e) pipe->up.close(e);
      });
      co_await pipe->up.async_connect(tcp::endpoint(ip, host->port),
                                      asio::redirect_error(asio::use_awaitable, ec));
      connect_timer.cancel();
    }
    if (ec) ++stats.upstream_connect_failures[cluster->name];
  }
  if (host && !ec) {
    pipe->up.set_option(tcp::no_delay(true), ec);
    pipe->down.set_option(tcp::no_delay(true), ec);
    host->state->active_requests.fetch_add(1, std::memory_order_relaxed);
    auto executor = pipe->down.get_executor();
    asio::co_spawn(executor, Copy(pipe, pipe->down, pipe->up, stats.tcp_bytes_sent),
                   asio::detached);
    asio::co_spawn(executor, Copy(pipe, pipe->up, pipe->down, stats.tcp_bytes_received),
                   asio::detached);
    const std::optional<absl::Duration> idle = config->tcp_idle_timeout;
    while (pipe->running > 0) {
      // Wake when a direction ends, and for the idle timeout when there is one.
      pipe->finished.expires_after(idle ? absl::ToChronoNanoseconds(*idle / 4)
                                        : std::chrono::hours(24));
      error_code wait_ec;
      co_await pipe->finished.async_wait(asio::redirect_error(asio::use_awaitable, wait_ec));
      if (idle && absl::Now() - pipe->last_activity > *idle) pipe->CloseBoth();
    }
    host->state->active_requests.fetch_sub(1, std::memory_order_relaxed);
  }
  pipe->CloseBoth();
  worker.Unregister(handle);
  --worker.stats().downstream_active;
}

}  // namespace mesh::dataplane
