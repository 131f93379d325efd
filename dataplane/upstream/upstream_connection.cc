#include "dataplane/upstream/upstream_connection.h"

#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "dataplane/codec/http1_client_codec.h"
#include "dataplane/codec/http2_codec.h"
#include "dataplane/tls/tls_contexts.h"

namespace mesh::dataplane {

namespace asio = boost::asio;
using error_code = boost::system::error_code;

namespace {
constexpr size_t kReadChunk = 16 * 1024;
}  // namespace

UpstreamConnection::UpstreamConnection(asio::io_context& io, DeferredQueue& deferred,
                                       UpstreamConnectionEvents& events,
                                       std::shared_ptr<ClusterState> cluster, HttpProtocol protocol,
                                       const CodecLimits& limits)
    : io_(io),
      deferred_(deferred),
      events_(events),
      cluster_(std::move(cluster)),
      protocol_(protocol),
      limits_(limits),
      io_conn_(std::make_unique<ConnectionIo>(Socket(io.get_executor()), *this)),
      connect_timer_(io) {
  cluster_->connections.fetch_add(1, std::memory_order_relaxed);
}

UpstreamConnection::~UpstreamConnection() {
  codec_.reset();  // before the socket: streams still open are reset
  cluster_->connections.fetch_sub(1, std::memory_order_relaxed);
}

void UpstreamConnection::Connect(const Cluster& cluster, const Host& host,
                                 std::shared_ptr<asio::ssl::context> tls, absl::Duration timeout) {
  tls_context_ = std::move(tls);
  if (cluster.tls) san_uris_ = cluster.tls->san_uris;
  error_code ec;
  asio::ip::address ip = asio::ip::make_address(host.address, ec);
  if (ec) {
    Fail(PoolCallbacks::Failure::kConnect, absl::StrCat(host.address, " is not an IP address"));
    return;
  }
  connect_timer_.expires_after(absl::ToChronoNanoseconds(std::max(timeout, absl::Milliseconds(1))));
  auto self = shared_from_this();
  connect_timer_.async_wait([this, self](const error_code& ec) {
    if (ec || connected() || closed_) return;
    DeferredQueue::Scope scope(deferred_);
    Fail(PoolCallbacks::Failure::kTimeout, "connect timeout");
  });
  // Copies: the config the host and cluster came from may be replaced while connecting.
  auto cluster_copy = std::make_shared<std::pair<std::string, std::string>>(
      cluster.tls ? cluster.tls->sni : "", absl::StrCat(host.address, ":", host.port));
  cluster_name_ = cluster.name;
  io_conn_->socket().async_connect(
      asio::ip::tcp::endpoint(ip, static_cast<uint16_t>(host.port)),
      [this, self, cluster_copy](const error_code& ec) {
        if (closed_) return;
        DeferredQueue::Scope scope(deferred_);
        if (ec) {
          Fail(PoolCallbacks::Failure::kConnect, ec.message());
          return;
        }
        error_code ignored;
        io_conn_->socket().set_option(asio::ip::tcp::no_delay(true), ignored);
        io_conn_->socket().non_blocking(true, ignored);
        if (tls_context_) {
          TlsStream& stream = io_conn_->StartTls(*tls_context_);
          const std::string& sni = cluster_copy->first;
          if (!sni.empty()) SSL_set_tlsext_host_name(stream.native_handle(), sni.c_str());
          // ALPN: HTTP/2 when the cluster speaks it, and HTTP/1.1 either way.
          static const unsigned char kH2[] = "\x02h2\x08http/1.1";
          static const unsigned char kH1[] = "\x08http/1.1";
          if (protocol_ == HttpProtocol::kHttp2) {
            SSL_set_alpn_protos(stream.native_handle(), kH2, sizeof kH2 - 1);
          } else {
            SSL_set_alpn_protos(stream.native_handle(), kH1, sizeof kH1 - 1);
          }
          stream.async_handshake(
              asio::ssl::stream_base::client, [this, self, cluster_copy](const error_code& ec) {
                if (closed_) return;
                DeferredQueue::Scope scope(deferred_);
                SSL* ssl = io_conn_->tls()->native_handle();
                if (ec) {
                  Fail(PoolCallbacks::Failure::kConnect,
                       absl::StrCat("TLS handshake with ", cluster_copy->second,
                                    " failed: ", HandshakeFailure(ssl, ec.message())));
                  return;
                }
                std::string peer = PeerSpiffeId(ssl);
                if (!san_uris_.empty() &&
                    std::find(san_uris_.begin(), san_uris_.end(), peer) == san_uris_.end()) {
                  Fail(PoolCallbacks::Failure::kConnect,
                       absl::StrCat(cluster_copy->second, " presented ",
                                    peer.empty() ? "no identity" : peer,
                                    ", not one of the identities its DestinationRule names"));
                  return;
                }
                const unsigned char* alpn = nullptr;
                unsigned int alpn_length = 0;
                SSL_get0_alpn_selected(ssl, &alpn, &alpn_length);
                const bool h2 = alpn_length == 0
                                    ? protocol_ == HttpProtocol::kHttp2
                                    : absl::string_view(reinterpret_cast<const char*>(alpn),
                                                        alpn_length) == "h2";
                Ready(h2);
              });
          return;
        }
        Ready(protocol_ == HttpProtocol::kHttp2);
      });
}

void UpstreamConnection::Ready(bool h2) {
  connect_timer_.cancel();
  if (h2) {
    codec_ = std::make_unique<Http2ClientCodec>(*this, limits_);
  } else {
    codec_ = std::make_unique<Http1ClientCodec>(*this, limits_);
  }
  StartRead();
  Flush();  // HTTP/2's preface and SETTINGS
  events_.OnConnected(*this);
}

void UpstreamConnection::Fail(PoolCallbacks::Failure failure, const std::string& detail) {
  if (failed_ || closed_) return;
  // A refused or unreachable host is the client's 503 (and outlier detection's business); a
  // secured connection that fails is a configuration problem worth the operator's eye.
  if (tls_context_) log::Warn("meshproxy: cluster ", cluster_name_, ": ", detail);
  failed_ = true;
  closed_ = true;
  connect_timer_.cancel();
  io_conn_->Close();
  events_.OnConnectFailed(*this, failure, detail);
}

RequestEncoder& UpstreamConnection::NewStream(ResponseDecoder& decoder) {
  ++streams_opened_;
  idle_since.reset();
  return codec_->NewStream(decoder);
}

void UpstreamConnection::StartRead() {
  if (reading_ || closed_ || !codec_ || !codec_->WantsRead()) return;
  if (in_.size() < held_ + kReadChunk) in_.resize(held_ + kReadChunk);
  reading_ = true;
  io_conn_->Read(in_.data() + held_, in_.size() - held_, shared_from_this());
}

void UpstreamConnection::OnRead(const error_code& ec, size_t n) {
  reading_ = false;
  if (closed_) return;
  DeferredQueue::Scope scope(deferred_);
  if (ec) {
    Close();
    return;
  }
  held_ += n;
  DispatchHeld();
  StartRead();
}

void UpstreamConnection::DispatchHeld() {
  if (closed_ || !codec_ || held_ == 0) return;
  dispatching_ = true;
  absl::StatusOr<size_t> used = codec_->Dispatch(absl::string_view(in_.data(), held_));
  dispatching_ = false;
  if (!used.ok()) {
    log::Debug("meshproxy: upstream connection: ", used.status().message());
    Flush();
    Close();
    return;
  }
  if (*used > 0) {
    std::memmove(in_.data(), in_.data() + *used, held_ - *used);
    held_ -= *used;
  }
  Flush();
}

void UpstreamConnection::Flush() {
  if (writing_ || closed_ || !codec_) return;
  for (;;) {
    absl::string_view out = codec_->PendingOutput();
    if (out.empty()) break;
    error_code ec;
    size_t n = io_conn_->TryWrite(out, ec);
    if (ec) {
      asio::post(io_, [self = shared_from_this()] { self->Close(); });
      return;
    }
    codec_->ConsumeOutput(n);
    if (n < out.size()) {
      absl::string_view rest = out.substr(n);
      writing_ = true;
      write_length_ = rest.size();
      io_conn_->Write(rest, shared_from_this());
      return;
    }
  }
  if (codec_->WantsClose()) asio::post(io_, [self = shared_from_this()] { self->Close(); });
}

void UpstreamConnection::OnWritten(const error_code& ec) {
  writing_ = false;
  if (closed_) return;
  DeferredQueue::Scope scope(deferred_);
  if (ec) {
    Close();
    return;
  }
  codec_->ConsumeOutput(write_length_);
  Flush();
  StartRead();
}

void UpstreamConnection::OnCodecOutput() {
  // Written once the event that produced it is handled: a request head and its body leave in
  // one write.
  if (dispatching_ || flush_scheduled_ || closed_) return;
  flush_scheduled_ = true;
  deferred_.Defer(shared_from_this());
}

void UpstreamConnection::RunDeferred() {
  flush_scheduled_ = false;
  Flush();
}

void UpstreamConnection::OnCodecReadResumed() {
  asio::post(io_, [self = shared_from_this()] {
    DeferredQueue::Scope scope(self->deferred_);
    self->DispatchHeld();
    self->StartRead();
  });
}

void UpstreamConnection::OnCodecStreamClosed() {
  events_.OnStreamClosed(*this);
}

void UpstreamConnection::Close() {
  if (closed_) return;
  closed_ = true;
  connect_timer_.cancel();
  io_conn_->Close();
  if (codec_) codec_->OnConnectionClosed(ResetReason::kConnectionTermination);
  events_.OnClosed(*this);
}

}  // namespace mesh::dataplane
