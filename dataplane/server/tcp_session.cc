#include "dataplane/server/tcp_session.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "dataplane/tls/mesh_stream.h"

namespace mesh::dataplane {
namespace {

namespace asio = boost::asio;
using asio::awaitable;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

// Both sides of one proxied connection and what the two copy directions share. Either side may
// be TLS (mutual TLS accepted on the listener, ISTIO_MUTUAL towards the cluster).
struct Pipe {
  Pipe(tcp::socket down_socket)
      : down(std::move(down_socket)), up(down.get_executor()), finished(down.get_executor()) {}
  TlsContextsPtr down_tls, up_tls;  // the contexts the TLS sides were made with; outlive them
  std::shared_ptr<asio::ssl::context> up_files;  // or the cluster's TLS from files
  MeshStream down, up;
  asio::steady_timer finished;  // cancelled when a direction ends
  int running = 2;
  absl::Time last_activity = absl::Now();
  std::string peer_identity;        // proven by mutual TLS; empty without
  uint64_t sent = 0, received = 0;  // to the upstream, and back to the client

  void CloseBoth() {
    error_code ignored;
    down.socket().close(ignored);
    up.socket().close(ignored);
  }
};

awaitable<void> Copy(std::shared_ptr<Pipe> pipe, MeshStream& from, MeshStream& to,
                     uint64_t& counter, uint64_t& pipe_counter) {
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
    pipe_counter += n;
    pipe->last_activity = absl::Now();
  }
  // A TLS peer that closes without close_notify reads as a truncated stream: an end all the same.
  if (ec == asio::error::eof || ec == asio::ssl::error::stream_truncated) {
    error_code ignored;
    to.socket().shutdown(tcp::socket::shutdown_send, ignored);  // pass the half-close on
  } else {
    pipe->CloseBoth();  // a reset or an error ends both directions
  }
  --pipe->running;
  pipe->finished.cancel();
}

// Either end of an accepted connection, "ip:port".
struct Addresses {
  std::string remote, local;
};
Addresses AddressesOf(const tcp::socket& socket) {
  auto text = [](const tcp::endpoint& e) {
    return e.port() ? absl::StrCat(e.address().to_string(), ":", e.port()) : std::string();
  };
  error_code ec;
  return {text(socket.remote_endpoint(ec)), text(socket.local_endpoint(ec))};
}

// Istio's TCP metrics record for a connection: a sidecar's inbound listener reports as the
// destination (the client proven by mTLS, the service from the inbound cluster's metadata),
// anything else as the source (the service from the outbound cluster's name). Views into
// `local`, `peer_identity`, `target` and `cluster`, which outlive the connection's records.
telemetry::TcpRecord TcpTelemetry(const telemetry::LocalWorkload& local,
                                  const ListenerConfig& accepted, const std::string& peer_identity,
                                  const TcpTarget* target, const Cluster* cluster) {
  telemetry::TcpRecord r;
  if (local.sidecar && accepted.direction == ListenerConfig::Direction::kInbound) {
    r.reporter = telemetry::Reporter::kDestination;
    r.destination = &local.peer;
    r.source_principal = peer_identity;
    r.destination_principal = local.principal;
    r.connection_security_policy = peer_identity.empty() ? "none" : "mutual_tls";
    if (cluster && !cluster->service_hosts.empty())
      r.destination_service = cluster->service_hosts.front();
  } else {
    r.source = &local.peer;
    r.source_principal = local.principal;
    r.connection_security_policy = "unknown";
    if (target) r.destination_service = telemetry::OutboundClusterService(target->cluster);
  }
  return r;
}

// Copies both ways until both directions end (or the idle timeout closes them), reporting the
// bytes moved in Istio's TCP metrics every 5 s and at the end (`telemetry` opened first).
awaitable<void> Relay(std::shared_ptr<Pipe> pipe, const Host& host,
                      std::optional<absl::Duration> idle, bool metrics, WorkerStats& stats,
                      telemetry::TcpRecord* telemetry) {
  error_code ec;
  pipe->up.socket().set_option(tcp::no_delay(true), ec);
  pipe->down.socket().set_option(tcp::no_delay(true), ec);
  host.state->active_requests.fetch_add(1, std::memory_order_relaxed);
  auto executor = pipe->down.get_executor();
  asio::co_spawn(executor, Copy(pipe, pipe->down, pipe->up, stats.tcp_bytes_sent, pipe->sent),
                 asio::detached);
  asio::co_spawn(executor,
                 Copy(pipe, pipe->up, pipe->down, stats.tcp_bytes_received, pipe->received),
                 asio::detached);
  telemetry->opened = true;
  const absl::Duration report = absl::Seconds(5);
  uint64_t reported_sent = 0, reported_received = 0;
  while (pipe->running > 0) {
    // Wake when a direction ends, to report, and for the idle timeout when there is one.
    pipe->finished.expires_after(
        absl::ToChronoNanoseconds(idle ? std::min(*idle / 4, report) : report));
    error_code wait_ec;
    co_await pipe->finished.async_wait(asio::redirect_error(asio::use_awaitable, wait_ec));
    if (idle && absl::Now() - pipe->last_activity > *idle) pipe->CloseBoth();
    telemetry->sent_bytes = pipe->received - reported_received;  // to the client
    telemetry->received_bytes = pipe->sent - reported_sent;      // from the client
    reported_sent = pipe->sent;
    reported_received = pipe->received;
    if (metrics && (telemetry->opened || telemetry->sent_bytes || telemetry->received_bytes))
      stats.istio.Record(*telemetry);
    telemetry->opened = false;
  }
  host.state->active_requests.fetch_sub(1, std::memory_order_relaxed);
  telemetry->sent_bytes = telemetry->received_bytes = 0;
}

// The connection's line in each of `config`'s access logs.
void WriteAccessLogs(const ListenerConfig& config, absl::Time start, const Pipe& pipe,
                     absl::string_view flags, const Host* host, const Cluster* cluster,
                     const Addresses& addresses) {
  telemetry::AccessLogEntry e;
  e.start = start;
  e.duration = absl::Now() - start;
  e.response_flags = flags;
  e.bytes_received = pipe.sent;
  e.bytes_sent = pipe.received;
  const std::string upstream = host ? absl::StrCat(host->address, ":", host->port) : std::string();
  e.upstream_host = upstream;
  if (cluster) e.upstream_cluster = cluster->name;
  e.downstream_remote_address = addresses.remote;
  e.downstream_local_address = addresses.local;
  for (const auto& log : config.access_logs) log->Write(e);
}

// Mutual TLS on the accepted side, as the listener requires (see HttpConnection::AcceptTls).
awaitable<bool> AcceptTls(Worker& worker, std::shared_ptr<Pipe> shared,
                          const ListenerConfig& config, absl::Duration timeout) {
  Pipe& pipe = *shared;
  error_code ec;
  asio::steady_timer limit(pipe.down.get_executor());
  limit.expires_after(absl::ToChronoNanoseconds(timeout));
  auto expired = std::make_shared<bool>(false);
  // The handler may run after this coroutine ended: it holds what it touches.
  limit.async_wait([shared, expired](error_code e) {
    if (!e) {
      *expired = true;
      shared->CloseBoth();
    }
  });
  co_await pipe.down.socket().async_wait(tcp::socket::wait_read,
                                         asio::redirect_error(asio::use_awaitable, ec));
  unsigned char first = 0;
  if (ec || ::recv(pipe.down.socket().native_handle(), &first, 1, MSG_PEEK) != 1) {
    limit.cancel();
    co_return false;
  }
  if (first != 0x16) {
    limit.cancel();
    if (config.tls == ListenerConfig::Tls::kPermissive) co_return true;
    ++worker.stats().downstream_rejected;
    log::Info("meshproxy: ", config.name, ": plaintext refused (mutual TLS is STRICT)");
    co_return false;
  }
  pipe.down_tls = worker.tls();
  if (!pipe.down_tls) {
    limit.cancel();
    log::Warn("meshproxy: ", config.name, ": TLS refused: no workload certificate yet");
    co_return false;
  }
  MeshStream::Tls& stream = pipe.down.StartTls(pipe.down_tls->server);
  co_await stream.async_handshake(asio::ssl::stream_base::server,
                                  asio::redirect_error(asio::use_awaitable, ec));
  limit.cancel();
  if (ec || *expired) {
    ++worker.stats().downstream_rejected;
    log::Info("meshproxy: ", config.name,
              ": TLS refused: ", HandshakeFailure(stream.native_handle(), ec.message()));
    co_return false;
  }
  pipe.peer_identity = PeerSpiffeId(stream.native_handle());
  co_return true;
}

}  // namespace

awaitable<void> ServeTcp(Worker& worker, tcp::socket socket, ListenerRuntimePtr listener,
                         ListenerConfigPtr accepted) {
  const absl::Time start = absl::Now();
  WorkerStats& stats = worker.stats();
  ++stats.downstream_active;
  ++stats.downstream_total;
  auto pipe = std::make_shared<Pipe>(std::move(socket));
  // For the access log, read before the socket closes; only when the listener logs.
  const Addresses addresses =
      accepted->access_logs.empty() ? Addresses{} : AddressesOf(pipe->down.socket());
  Worker::SessionHandle handle =
      worker.Register({listener.get(), [pipe] { pipe->CloseBoth(); }, nullptr});

  bool accepted_tls = true;  // (not inside &&: GCC 12 miscompiles co_await there)
  if (accepted->tls != ListenerConfig::Tls::kNone)
    accepted_tls = co_await AcceptTls(worker, pipe, *accepted, absl::Seconds(10));
  // Authorization (AuthorizationPolicy on a TCP port): before anything goes upstream.
  if (accepted_tls) {
    error_code peer_ec;
    tcp::endpoint peer = pipe->down.socket().remote_endpoint(peer_ec);
    accepted_tls = worker.ConnectionAllowed(
        *accepted, peer_ec ? std::string() : peer.address().to_string(), pipe->peer_identity);
  }
  if (!accepted_tls) {
    pipe->CloseBoth();
    worker.Unregister(handle);
    --worker.stats().downstream_active;
    co_return;
  }
  const SnapshotPtr snapshot = worker.snapshot();
  const ListenerConfig* config = snapshot ? snapshot->Listener(accepted->name) : nullptr;
  if (!config || config->kind != ListenerConfig::Kind::kTcp) config = accepted.get();
  const TcpTarget* target = config->PickTcp(worker.Random());
  const Cluster* cluster = target && snapshot ? snapshot->clusters->Find(target->cluster) : nullptr;
  const Host* host = cluster ? cluster->Pick(worker.Random(), std::nullopt, absl::Now()) : nullptr;
  const telemetry::LocalWorkload& local = worker.local_workload();
  telemetry::TcpRecord telemetry =
      TcpTelemetry(local, *accepted, pipe->peer_identity, target, cluster);
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
        if (!e) pipe->up.socket().close(e);
      });
      co_await pipe->up.socket().async_connect(tcp::endpoint(ip, host->port),
                                               asio::redirect_error(asio::use_awaitable, ec));
      if (!ec && cluster->tls) {
        // ISTIO_MUTUAL with the mesh identity, or SIMPLE/MUTUAL from files; never plaintext.
        asio::ssl::context* context = nullptr;
        if (cluster->tls->files) {
          auto it = snapshot->cluster_tls.find(cluster->name);
          if (it != snapshot->cluster_tls.end()) pipe->up_files = it->second;
          context = pipe->up_files.get();
        } else if (!cluster->tls->unsupported) {
          pipe->up_tls = worker.tls();
          if (pipe->up_tls) context = &pipe->up_tls->client;
        }
        if (!context) {
          log::Warn("meshproxy: ", config->name, ": cluster ", cluster->name,
                    ": no usable TLS settings or workload certificate");
          ec = asio::error::access_denied;
        } else {
          MeshStream::Tls& tls = pipe->up.StartTls(*context);
          co_await tls.async_handshake(asio::ssl::stream_base::client,
                                       asio::redirect_error(asio::use_awaitable, ec));
          if (ec) {
            log::Warn("meshproxy: ", config->name, ": TLS to ", cluster->name, ": ",
                      HandshakeFailure(tls.native_handle(), ec.message()));
          }
        }
      }
      connect_timer.cancel();
    }
    if (ec) ++stats.upstream_connect_failures[cluster->name];
  }
  if (host && !ec) {
    telemetry.destination = telemetry.destination ? telemetry.destination : host->peer.get();
    co_await Relay(pipe, *host, config->tcp_idle_timeout, local.metrics, stats, &telemetry);
  } else {
    telemetry.opened = true;
    telemetry.response_flags = host ? "UF" : "UH";
  }
  telemetry.closed = true;
  if (local.metrics) stats.istio.Record(telemetry);
  if (!config->access_logs.empty())
    WriteAccessLogs(*config, start, *pipe, telemetry.response_flags, host, cluster, addresses);
  pipe->CloseBoth();
  worker.Unregister(handle);
  --worker.stats().downstream_active;
}

}  // namespace mesh::dataplane
