#pragma once

#include <boost/asio/ssl/stream.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <memory>

namespace mesh::dataplane {

// A connection that speaks plain TCP or, once StartTls made it so, TLS over the same socket.
// It is an Asio/Beast stream either way (async_read_some, async_write_some, get_executor), so the
// HTTP and TCP code runs unchanged over both. Timeouts are the TCP layer's (expires_after).
class MeshStream {
 public:
  using executor_type = boost::beast::tcp_stream::executor_type;
  using Tls = boost::asio::ssl::stream<boost::beast::tcp_stream&>;

  explicit MeshStream(const executor_type& executor) : tcp_(executor) {}
  explicit MeshStream(boost::asio::ip::tcp::socket socket) : tcp_(std::move(socket)) {}

  executor_type get_executor() { return tcp_.get_executor(); }
  boost::beast::tcp_stream& tcp() { return tcp_; }
  boost::asio::ip::tcp::socket& socket() { return tcp_.socket(); }
  template <class D>
  void expires_after(D d) {
    tcp_.expires_after(d);
  }
  void expires_never() { tcp_.expires_never(); }

  // From now on bytes go through TLS with `context` (the caller then does the handshake on
  // tls()). The context must outlive the stream.
  Tls& StartTls(boost::asio::ssl::context& context) {
    tls_ = std::make_unique<Tls>(tcp_, context);
    return *tls_;
  }
  Tls* tls() { return tls_.get(); }

  template <class MutableBuffers, class Token>
  auto async_read_some(const MutableBuffers& buffers, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        [this](auto handler, const MutableBuffers& b) {
          if (tls_) {
            tls_->async_read_some(b, std::move(handler));
          } else {
            tcp_.async_read_some(b, std::move(handler));
          }
        },
        token, buffers);
  }

  template <class ConstBuffers, class Token>
  auto async_write_some(const ConstBuffers& buffers, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        [this](auto handler, const ConstBuffers& b) {
          if (tls_) {
            tls_->async_write_some(b, std::move(handler));
          } else {
            tcp_.async_write_some(b, std::move(handler));
          }
        },
        token, buffers);
  }

 private:
  boost::beast::tcp_stream tcp_;
  std::unique_ptr<Tls> tls_;
};

}  // namespace mesh::dataplane
