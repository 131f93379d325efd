#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <memory>

#include "absl/strings/string_view.h"

namespace mesh::dataplane {

// A socket bound to its worker's io_context executor: no type-erased executor on the hot path.
using Socket =
    boost::asio::basic_stream_socket<boost::asio::ip::tcp, boost::asio::io_context::executor_type>;
using TlsStream = boost::asio::ssl::stream<Socket&>;

// The bytes of one connection, plain or TLS. Plain sockets are driven by readiness, as nginx
// drives them: a read happens once the socket is readable, and a write is tried at once
// (non-blocking), waiting for the socket only when it would block. TLS goes through OpenSSL via
// Asio.
// Worker-thread only; the owner keeps it alive until every callback it started has run.
class ConnectionIo {
 public:
  // Where completions go. `keep` (given with each operation) holds the owner alive until then.
  class Owner {
   public:
    virtual ~Owner() = default;
    virtual void OnRead(const boost::system::error_code& ec, size_t n) = 0;
    virtual void OnWritten(const boost::system::error_code& ec) = 0;
  };
  using Keep = std::shared_ptr<void>;

  ConnectionIo(Socket socket, Owner& owner);
  ~ConnectionIo();

  Socket& socket() { return socket_; }
  // From now on bytes go through TLS with `context` (then the owner runs the handshake on
  // tls()). The context must outlive this object.
  TlsStream& StartTls(boost::asio::ssl::context& context);
  TlsStream* tls() { return tls_.get(); }

  // Reads what is available once the socket has it (at most `size` bytes into `data`), then
  // calls OnRead once, never before Read returns.
  void Read(char* data, size_t size, Keep keep);
  // Plain only: writes what the socket takes now without waiting; returns how much (0 when it
  // would block, or for TLS, where everything goes through Write).
  size_t TryWrite(absl::string_view data, boost::system::error_code& ec);
  // Writes all of `data` (which must stay valid until then), then calls OnWritten once.
  void Write(absl::string_view data, Keep keep);
  void Close();

 private:
  void WriteRest(absl::string_view data, Keep keep);

  Socket socket_;
  Owner& owner_;
  std::unique_ptr<TlsStream> tls_;
};

}  // namespace mesh::dataplane
