#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <memory>
#include <optional>
#include <string>

#include "absl/time/time.h"
#include "dataplane/codec/codec.h"
#include "dataplane/network/connection_io.h"
#include "dataplane/network/deferred_queue.h"
#include "dataplane/upstream/cluster_table.h"
#include "dataplane/upstream/connection_source.h"

namespace mesh::dataplane {

class UpstreamConnection;

// What a connection tells the pool that owns it. Calls come from the connection's own I/O
// completions, or from inside its codec (OnStreamClosed): the pool must not open a stream on it
// from there.
class UpstreamConnectionEvents {
 public:
  virtual ~UpstreamConnectionEvents() = default;
  virtual void OnConnected(UpstreamConnection& connection) = 0;
  virtual void OnConnectFailed(UpstreamConnection& connection, PoolCallbacks::Failure failure,
                               const std::string& detail) = 0;
  virtual void OnStreamClosed(UpstreamConnection& connection) = 0;
  virtual void OnClosed(UpstreamConnection& connection) = 0;
};

// One connection to an upstream host: connect (within a timeout), the TLS handshake for secured
// clusters (SNI, ALPN, and the peer's SPIFFE ID checked against the cluster's accepted
// identities), then a client codec (HTTP/2 when asked for and, over TLS, agreed by ALPN) driven
// by the socket. Counts itself in its cluster's open connections while it exists. Worker-thread
// only; owned by the pool through a shared_ptr that its pending I/O also holds.
class UpstreamConnection : public std::enable_shared_from_this<UpstreamConnection>,
                           public CodecOwner,
                           public ConnectionIo::Owner,
                           public DeferredTask {
 public:
  UpstreamConnection(boost::asio::io_context& io, DeferredQueue& deferred,
                     UpstreamConnectionEvents& events, std::shared_ptr<ClusterState> cluster,
                     HttpProtocol protocol, const CodecLimits& limits);
  ~UpstreamConnection() override;

  // `tls`: the client context for a secured cluster (nullptr for plaintext); it must live as
  // long as the connection, which keeps a reference.
  void Connect(const Cluster& cluster, const Host& host,
               std::shared_ptr<boost::asio::ssl::context> tls, absl::Duration timeout);
  void Close();

  bool connected() const { return codec_ != nullptr && !closed_; }
  bool closed() const { return closed_; }
  ClientCodec& codec() { return *codec_; }
  HttpProtocol protocol() const { return codec_ ? codec_->protocol() : protocol_; }
  uint32_t streams_opened() const { return streams_opened_; }
  RequestEncoder& NewStream(ResponseDecoder& decoder);

  std::optional<absl::Time> idle_since;  // set by the pool while it carries no stream

  // CodecOwner
  void OnCodecOutput() override;
  void OnCodecReadResumed() override;
  void OnCodecStreamClosed() override;
  // ConnectionIo::Owner
  void OnRead(const boost::system::error_code& ec, size_t n) override;
  void OnWritten(const boost::system::error_code& ec) override;
  // DeferredTask
  void RunDeferred() override;

 private:
  void Handshake(const Cluster& cluster, const Host& host);
  void Ready(bool h2);
  void Fail(PoolCallbacks::Failure failure, const std::string& detail);
  void StartRead();
  void DispatchHeld();
  void Flush();

  boost::asio::io_context& io_;
  DeferredQueue& deferred_;
  UpstreamConnectionEvents& events_;
  const std::shared_ptr<ClusterState> cluster_;
  const HttpProtocol protocol_;
  const CodecLimits limits_;
  std::unique_ptr<ConnectionIo> io_conn_;
  std::shared_ptr<boost::asio::ssl::context> tls_context_;
  boost::asio::steady_timer connect_timer_;
  std::vector<std::string> san_uris_;
  std::string cluster_name_;
  std::unique_ptr<ClientCodec> codec_;
  std::string in_;  // read buffer; the first `held_` bytes are unconsumed
  size_t held_ = 0;
  bool reading_ = false;
  bool writing_ = false;
  bool dispatching_ = false;
  bool flush_scheduled_ = false;
  bool closed_ = false;
  bool failed_ = false;
  size_t write_length_ = 0;  // bytes handed to an async write
  uint32_t streams_opened_ = 0;
};
using UpstreamConnectionPtr = std::shared_ptr<UpstreamConnection>;

}  // namespace mesh::dataplane
