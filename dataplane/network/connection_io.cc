#include "dataplane/network/connection_io.h"

#include <boost/asio/write.hpp>

namespace mesh::dataplane {

namespace asio = boost::asio;
using error_code = boost::system::error_code;

namespace {

bool WouldBlock(const error_code& ec) {
  return ec == asio::error::would_block || ec == asio::error::try_again;
}

}  // namespace

ConnectionIo::ConnectionIo(Socket socket, Owner& owner)
    : socket_(std::move(socket)), owner_(owner) {
  error_code ignored;
  socket_.non_blocking(true, ignored);
}

ConnectionIo::~ConnectionIo() = default;

TlsStream& ConnectionIo::StartTls(asio::ssl::context& context) {
  tls_ = std::make_unique<TlsStream>(socket_, context);
  return *tls_;
}

void ConnectionIo::Read(char* data, size_t size, Keep keep) {
  auto done = [this, keep = std::move(keep)](const error_code& ec, size_t n) {
    owner_.OnRead(ec, n);
  };
  if (tls_) {
    tls_->async_read_some(asio::buffer(data, size), std::move(done));
  } else {
    // Asio tries the read at once (on a drained socket that costs one recv that finds nothing),
    // then waits on the edge-triggered registration made when the socket opened, with no
    // epoll_ctl per read (async_wait would re-arm the descriptor every time). Skipping that
    // first try needs to know whether a FIN came in with the last bytes (EPOLLRDHUP, which
    // Asio does not ask for); without it a close-delimited response would stall.
    socket_.async_read_some(asio::buffer(data, size), std::move(done));
  }
}

size_t ConnectionIo::TryWrite(absl::string_view data, error_code& ec) {
  ec = {};
  if (tls_ || data.empty()) return 0;
  size_t n = socket_.write_some(asio::buffer(data.data(), data.size()), ec);
  if (WouldBlock(ec)) ec = {};
  return ec ? 0 : n;
}

void ConnectionIo::Write(absl::string_view data, Keep keep) {
  if (tls_) {
    asio::async_write(
        *tls_, asio::buffer(data.data(), data.size()),
        [this, keep = std::move(keep)](const error_code& ec, size_t) { owner_.OnWritten(ec); });
    return;
  }
  WriteRest(data, std::move(keep));
}

void ConnectionIo::WriteRest(absl::string_view data, Keep keep) {
  asio::async_write(
      socket_, asio::buffer(data.data(), data.size()),
      [this, keep = std::move(keep)](const error_code& ec, size_t) { owner_.OnWritten(ec); });
}

void ConnectionIo::Close() {
  error_code ignored;
  socket_.shutdown(Socket::shutdown_both, ignored);
  socket_.close(ignored);
}

}  // namespace mesh::dataplane
