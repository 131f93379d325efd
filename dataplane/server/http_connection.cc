#include "dataplane/server/http_connection.h"

#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "dataplane/codec/http1_server_codec.h"
#include "dataplane/codec/http2_codec.h"
#include "dataplane/http/connection_manager.h"
#include "dataplane/network/connection_io.h"

namespace mesh::dataplane {
namespace {

namespace asio = boost::asio;
using error_code = boost::system::error_code;

constexpr absl::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
constexpr size_t kReadChunk = 16 * 1024;

class HttpConnection : public std::enable_shared_from_this<HttpConnection>,
                       public CodecOwner,
                       public ConnectionIo::Owner,
                       public DeferredTask {
 public:
  HttpConnection(Worker& worker, Socket socket, ListenerRuntimePtr listener,
                 ListenerConfigPtr config, const HttpOptions& options)
      : worker_(worker),
        io_(std::move(socket), *this),
        listener_(std::move(listener)),
        config_(std::move(config)),
        options_(options) {
    error_code ec;
    io_.socket().set_option(asio::ip::tcp::no_delay(true), ec);
    asio::ip::tcp::endpoint peer = io_.socket().remote_endpoint(ec);
    if (!ec) {
      downstream_.peer_ip = peer.address().to_string();
      downstream_.peer_address = absl::StrCat(downstream_.peer_ip, ":", peer.port());
    }
    asio::ip::tcp::endpoint local = io_.socket().local_endpoint(ec);
    if (!ec)
      downstream_.local_address = absl::StrCat(local.address().to_string(), ":", local.port());
    downstream_.append_forwarded_for = options_.append_forwarded_for;
    limits_.max_header_bytes = options_.max_header_bytes;
  }

  void Start() {
    WorkerStats& stats = worker_.stats();
    ++stats.downstream_active;
    ++stats.downstream_total;
    last_activity_ = request_started_ = absl::Now();
    std::weak_ptr<HttpConnection> weak = weak_from_this();
    handle_ = worker_.Register({listener_.get(),
                                [weak] {
                                  if (auto self = weak.lock()) self->OnDrain();
                                },
                                [weak](absl::Time now) {
                                  if (auto self = weak.lock()) self->Tick(now);
                                },
                                [weak] {
                                  if (auto self = weak.lock()) self->Close();
                                }});
    registered_ = true;
    if (config_->tls != ListenerConfig::Tls::kNone) {
      AcceptTls();
    } else if (worker_.ConnectionAllowed(*config_, downstream_.peer_ip, "")) {
      StartRead();
    } else {
      Close();
    }
  }

  // ConnectionIo::Owner
  void OnRead(const error_code& ec, size_t n) override {
    reading_ = false;
    if (closed_) return;
    DeferredQueue::Scope scope(worker_.deferred());
    if (ec) {
      Close();
      return;
    }
    const absl::Time now = absl::Now();
    last_activity_ = now;
    if (held_ == 0 && (!codec_ || codec_->ActiveStreams() == 0)) request_started_ = now;
    held_ += n;
    DispatchHeld();
    StartRead();
  }
  void OnWritten(const error_code& ec) override {
    writing_ = false;
    if (closed_) return;
    DeferredQueue::Scope scope(worker_.deferred());
    if (ec) {
      Close();
      return;
    }
    last_activity_ = absl::Now();
    codec_->ConsumeOutput(write_length_);
    Flush();
    StartRead();
  }

  // CodecOwner
  void OnCodecOutput() override {
    // Written once the event that produced it is handled: a head and its body, encoded one after
    // the other, leave in one write.
    if (dispatching_ || flush_scheduled_ || closed_) return;
    flush_scheduled_ = true;
    worker_.deferred().Defer(shared_from_this());
  }
  // DeferredTask
  void RunDeferred() override {
    flush_scheduled_ = false;
    Flush();
  }
  void OnCodecReadResumed() override {
    asio::post(worker_.io(), [self = shared_from_this()] {
      DeferredQueue::Scope scope(self->worker_.deferred());
      self->DispatchHeld();
      self->StartRead();
    });
  }

 private:
  void StartRead() {
    if (reading_ || closed_) return;
    if (codec_ && !codec_->WantsRead()) return;
    // A client that sends far ahead of its responses waits for them (pipelining is bounded).
    if (held_ >= options_.max_header_bytes + kReadChunk * 4) return;
    if (in_.size() < held_ + kReadChunk) in_.resize(held_ + kReadChunk);
    reading_ = true;
    io_.Read(in_.data() + held_, in_.size() - held_, shared_from_this());
  }

  void DispatchHeld() {
    if (closed_ || held_ == 0) return;
    if (!codec_) {
      // Plaintext: HTTP/2 with prior knowledge opens with the preface; anything else is HTTP/1.1.
      absl::string_view got(in_.data(), held_);
      const size_t n = std::min(got.size(), kPreface.size());
      const bool h2 = got.substr(0, n) == kPreface.substr(0, n);
      if (h2 && got.size() < kPreface.size()) return;  // wait for the rest of the preface
      StartCodec(h2);
    }
    dispatching_ = true;
    absl::StatusOr<size_t> used = codec_->Dispatch(absl::string_view(in_.data(), held_));
    dispatching_ = false;
    if (!used.ok()) {
      ++worker_.stats().downstream_rejected;
      log::Debug("meshproxy: ", config_->name, ": ", downstream_.peer_ip, ": ",
                 used.status().message());
      held_ = 0;
    } else if (*used > 0) {
      std::memmove(in_.data(), in_.data() + *used, held_ - *used);
      held_ -= *used;
    }
    manager_->Cleanup();
    Flush();
  }

  void StartCodec(bool h2) {
    manager_ = std::make_unique<ConnectionManager>(
        worker_, *config_, downstream_, ConnectionManager::Settings{options_.buffer_limit});
    const bool tls = io_.tls() != nullptr;
    if (h2) {
      codec_ = std::make_unique<Http2ServerCodec>(*this, *manager_, limits_, tls);
    } else {
      codec_ = std::make_unique<Http1ServerCodec>(*this, *manager_, limits_, tls);
    }
    if (listener_->draining) codec_->GoAway();
  }

  void Flush() {
    if (writing_ || closed_ || !codec_) return;
    for (;;) {
      absl::string_view out = codec_->PendingOutput();
      if (out.empty()) break;
      error_code ec;
      size_t n = io_.TryWrite(out, ec);
      if (ec) {
        ScheduleClose();
        return;
      }
      codec_->ConsumeOutput(n);
      if (n < out.size()) {
        absl::string_view rest = out.substr(n);
        writing_ = true;
        write_length_ = rest.size();
        io_.Write(rest, shared_from_this());
        return;
      }
    }
    if (codec_->WantsClose()) ScheduleClose();
  }

  void ScheduleClose() {
    if (close_scheduled_ || closed_) return;
    close_scheduled_ = true;
    asio::post(worker_.io(), [self = shared_from_this()] { self->Close(); });
  }

  void Close() {
    if (closed_) return;
    closed_ = true;
    if (registered_) worker_.Unregister(handle_);
    registered_ = false;
    io_.Close();
    if (codec_) codec_->OnConnectionClosed(ResetReason::kRemote);
    if (manager_) manager_->Cleanup();
    --worker_.stats().downstream_active;
  }

  // The listener drains: finish what is in flight, take nothing new.
  void OnDrain() {
    if (!codec_ || codec_->ActiveStreams() == 0) {
      Close();
      return;
    }
    codec_->GoAway();
    Flush();
  }

  void Tick(absl::Time now) {
    if (closed_) return;
    if (listener_->draining && codec_ && !going_away_) {
      // Drain: HTTP/2 clients get GOAWAY, HTTP/1.1 ones "Connection: close" on their next
      // response (an idle one closes now); what is in flight finishes.
      going_away_ = true;
      codec_->GoAway();
      Flush();
      if (closed_) return;
    }
    if (handshake_deadline_ && now > *handshake_deadline_) {
      ++worker_.stats().downstream_rejected;
      Close();
      return;
    }
    const bool busy = codec_ && codec_->ActiveStreams() > 0;
    if (busy) {
      // A stream that stopped moving either way ends, alone (Envoy's stream_idle_timeout).
      manager_->CheckIdleStreams(now);
      manager_->Cleanup();
      Flush();
      return;
    }
    if (held_ > 0) {
      // A request header that does not complete in time (a slowloris client).
      if (now - request_started_ > options_.header_timeout) {
        ++worker_.stats().downstream_rejected;
        Close();
      }
      return;
    }
    if (now - last_activity_ > options_.idle_timeout) Close();
  }

  // On a listener with mutual TLS: a client that starts a TLS handshake must present a mesh
  // certificate; a plaintext client is served only when the listener is PERMISSIVE. Refusals
  // are logged and counted.
  void AcceptTls() {
    handshake_deadline_ = absl::Now() + options_.header_timeout;  // enforced by the tick
    auto self = shared_from_this();
    io_.socket().async_wait(Socket::wait_read, [this, self](const error_code& ec) {
      if (ec || closed_) return Close();
      DeferredQueue::Scope scope(worker_.deferred());
      unsigned char first = 0;
      if (::recv(io_.socket().native_handle(), &first, 1, MSG_PEEK) != 1) return Close();
      if (first != 0x16) {  // not a TLS handshake record
        handshake_deadline_.reset();
        if (config_->tls == ListenerConfig::Tls::kPermissive) {
          if (!worker_.ConnectionAllowed(*config_, downstream_.peer_ip, "")) return Close();
          return StartRead();
        }
        ++worker_.stats().downstream_rejected;
        log::Info("meshproxy: ", config_->name, ": plaintext from ", downstream_.peer_ip,
                  " refused (mutual TLS is STRICT)");
        return Close();
      }
      // A gateway's own certificates (from files), else the mesh identity.
      asio::ssl::context* context = nullptr;
      if (const SnapshotPtr& snapshot = worker_.snapshot()) {
        auto it = snapshot->file_tls.find(config_->name);
        if (it != snapshot->file_tls.end()) file_tls_ = it->second;
      }
      if (file_tls_) {
        context = file_tls_.get();
      } else {
        tls_ = worker_.tls();
        if (!tls_) {
          log::Warn("meshproxy: ", config_->name, ": TLS from ", downstream_.peer_ip,
                    " refused: no workload certificate yet");
          return Close();
        }
        context = &tls_->server;
      }
      TlsStream& stream = io_.StartTls(*context);
      stream.async_handshake(asio::ssl::stream_base::server, [this, self](const error_code& ec) {
        handshake_deadline_.reset();
        if (closed_) return;
        DeferredQueue::Scope scope(worker_.deferred());
        SSL* ssl = io_.tls()->native_handle();
        if (ec) {
          ++worker_.stats().downstream_rejected;
          log::Info("meshproxy: ", config_->name, ": TLS from ", downstream_.peer_ip,
                    " refused: ", HandshakeFailure(ssl, ec.message()));
          return Close();
        }
        downstream_.tls = true;
        downstream_.peer_identity = PeerSpiffeId(ssl);
        if (!worker_.ConnectionAllowed(*config_, downstream_.peer_ip, downstream_.peer_identity))
          return Close();
        if (tls_) downstream_.local_identity = tls_->spiffe_id;
        const unsigned char* alpn = nullptr;
        unsigned int length = 0;
        SSL_get0_alpn_selected(ssl, &alpn, &length);
        StartCodec(absl::string_view(reinterpret_cast<const char*>(alpn), length) == "h2");
        StartRead();
      });
    });
  }

  Worker& worker_;
  TlsContextsPtr tls_;  // the identity the client's TLS was accepted with; outlives io_
  std::shared_ptr<asio::ssl::context> file_tls_;  // or a gateway's certificates from files
  ConnectionIo io_;
  ListenerRuntimePtr listener_;
  ListenerConfigPtr config_;
  const HttpOptions& options_;
  CodecLimits limits_;
  DownstreamInfo downstream_;
  std::unique_ptr<ConnectionManager> manager_;  // declared before the codec: outlives it
  std::unique_ptr<ServerCodec> codec_;
  Worker::SessionHandle handle_;
  bool registered_ = false;
  std::string in_;
  size_t held_ = 0;
  size_t write_length_ = 0;
  bool reading_ = false;
  bool writing_ = false;
  bool dispatching_ = false;
  bool closed_ = false;
  bool close_scheduled_ = false;
  bool flush_scheduled_ = false;
  bool going_away_ = false;
  std::optional<absl::Time> handshake_deadline_;
  absl::Time last_activity_, request_started_;
};

}  // namespace

void ServeHttp(Worker& worker, asio::ip::tcp::socket socket, ListenerRuntimePtr listener,
               ListenerConfigPtr config, const HttpOptions& options) {
  error_code ec;
  asio::ip::tcp protocol = socket.local_endpoint(ec).protocol();
  if (ec) return;
  Socket own(worker.io().get_executor(), protocol, socket.release(ec));
  if (ec) return;
  auto connection = std::make_shared<HttpConnection>(worker, std::move(own), std::move(listener),
                                                     std::move(config), options);
  connection->Start();
}

}  // namespace mesh::dataplane
