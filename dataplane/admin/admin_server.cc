#include "dataplane/admin/admin_server.h"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace mesh::dataplane {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

}  // namespace

struct AdminServer::Impl {
  explicit Impl(Handler h) : handler(std::move(h)), acceptor(io) {}
  Handler handler;
  asio::io_context io{1};
  tcp::acceptor acceptor;
  std::thread thread;

  asio::awaitable<void> Serve(tcp::socket socket) {
    beast::tcp_stream stream(std::move(socket));
    beast::flat_buffer buffer;
    for (;;) {
      http::request<http::string_body> req;
      error_code ec;
      stream.expires_after(std::chrono::seconds(30));
      co_await http::async_read(stream, buffer, req, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return;
      std::string target(req.target());
      size_t q = target.find('?');
      AdminResponse r;
      try {
        r = handler(std::string(req.method_string()), target.substr(0, q),
                    q == std::string::npos ? "" : target.substr(q + 1));
      } catch (const std::exception& e) {
        r = {500, "text/plain", absl::StrCat("admin handler failed: ", e.what(), "\n")};
      }
      http::response<http::string_body> res{static_cast<http::status>(r.status), req.version()};
      res.set(http::field::server, "meshproxy");
      res.set(http::field::content_type, r.content_type);
      res.keep_alive(req.keep_alive());
      res.body() = std::move(r.body);
      res.prepare_payload();
      co_await http::async_write(stream, res, asio::redirect_error(asio::use_awaitable, ec));
      if (ec || !res.keep_alive()) co_return;
    }
  }

  asio::awaitable<void> Accept() {
    for (;;) {
      error_code ec;
      tcp::socket socket =
          co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
      if (!acceptor.is_open()) co_return;
      if (ec) continue;
      asio::co_spawn(io, Serve(std::move(socket)), asio::detached);
    }
  }
};

AdminServer::AdminServer(Handler handler) : impl_(std::make_unique<Impl>(std::move(handler))) {}

AdminServer::~AdminServer() {
  Stop();
}

absl::StatusOr<int> AdminServer::Start(const std::string& address) {
  size_t colon = address.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(address.substr(colon + 1), &port) ||
      port < 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("admin address ", address, ": want ip:port"));
  }
  error_code ec;
  asio::ip::address ip = asio::ip::make_address(address.substr(0, colon), ec);
  if (ec) return absl::InvalidArgumentError(absl::StrCat("admin address ", address, ": bad IP"));
  tcp::endpoint ep(ip, static_cast<uint16_t>(port));
  impl_->acceptor.open(ep.protocol(), ec);
  if (!ec) impl_->acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) impl_->acceptor.bind(ep, ec);
  if (!ec) impl_->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("admin ", address, ": ", ec.message()));
  int bound = impl_->acceptor.local_endpoint().port();
  asio::co_spawn(impl_->io, impl_->Accept(), asio::detached);
  impl_->thread = std::thread([this] { impl_->io.run(); });
  return bound;
}

void AdminServer::Stop() {
  if (!impl_->thread.joinable()) return;
  asio::post(impl_->io, [this] {
    error_code ignored;
    impl_->acceptor.close(ignored);
    impl_->io.stop();
  });
  impl_->thread.join();
}

}  // namespace mesh::dataplane
