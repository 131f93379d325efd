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

ConnectionIo::ConnectionIo(Socket socket, Owner& owner) : socket_(std::move(socket)), owner_(owner) {
  error_code ignored;
  socket_.non_blocking(true, ignored);
}

ConnectionIo::~ConnectionIo() = default;

TlsStream& ConnectionIo::StartTls(asio::ssl::context& context) {
  tls_ = std::make_unique<TlsStream>(socket_, context);
  return *tls_;
}

void ConnectionIo::Read(char* data, size_t size, Keep keep) {
  if (tls_) {
    tls_->async_read_some(asio::buffer(data, size),
                          [this, keep = std::move(keep)](const error_code& ec, size_t n) {
                            owner_.OnRead(ec, n);
                          });
    return;
  }
  // Readiness first, then one read: a request costs epoll and read, never a read that finds
  // nothing. OnRead never runs before Read returns.
  WaitAndRead(data, size, std::move(keep));
}

void ConnectionIo::WaitAndRead(char* data, size_t size, Keep keep) {
  socket_.async_wait(Socket::wait_read,
                     [this, data, size, keep = std::move(keep)](const error_code& ec) mutable {
                       if (ec) {
                         owner_.OnRead(ec, 0);
                         return;
                       }
                       error_code read_ec;
                       size_t n = socket_.read_some(asio::buffer(data, size), read_ec);
                       if (WouldBlock(read_ec)) {
                         WaitAndRead(data, size, std::move(keep));  // woken without data
                         return;
                       }
                       owner_.OnRead(read_ec, n);
                     });
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
    asio::async_write(*tls_, asio::buffer(data.data(), data.size()),
                      [this, keep = std::move(keep)](const error_code& ec, size_t) {
                        owner_.OnWritten(ec);
                      });
    return;
  }
  WriteRest(data, std::move(keep));
}

void ConnectionIo::WriteRest(absl::string_view data, Keep keep) {
  error_code ec;
  size_t n = TryWrite(data, ec);
  if (ec || n == data.size()) {
    owner_.OnWritten(ec);
    return;
  }
  data.remove_prefix(n);
  socket_.async_wait(Socket::wait_write,
                     [this, data, keep = std::move(keep)](const error_code& ec) mutable {
                       if (ec) {
                         owner_.OnWritten(ec);
                         return;
                       }
                       WriteRest(data, std::move(keep));
                     });
}

void ConnectionIo::Close() {
  error_code ignored;
  socket_.shutdown(Socket::shutdown_both, ignored);
  socket_.close(ignored);
}

}  // namespace mesh::dataplane
