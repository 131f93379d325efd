#include "test/support/recording_backend.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <stdexcept>

namespace mesh::testing {

namespace http = boost::beast::http;
using tcp = boost::asio::ip::tcp;

RecordingBackend::RecordingBackend(Script script) : script_(std::move(script)) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listen_fd_, 64) != 0) {
    throw std::runtime_error("recording backend: cannot listen");
  }
  socklen_t len = sizeof addr;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  acceptor_ = std::thread([this] {
    while (!stopping_) {
      int fd = ::accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) return;
      std::lock_guard lock(mu_);
      if (stopping_) {
        ::close(fd);
        return;
      }
      connections_.push_back(fd);
      threads_.emplace_back([this, fd] { Serve(fd); });
    }
  });
}

RecordingBackend::~RecordingBackend() {
  stopping_ = true;
  ::shutdown(listen_fd_, SHUT_RDWR);
  ::close(listen_fd_);
  acceptor_.join();
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(mu_);
    for (int fd : connections_) ::shutdown(fd, SHUT_RDWR);
    threads.swap(threads_);
  }
  for (std::thread& t : threads) t.join();
  for (int fd : connections_) ::close(fd);
}

void RecordingBackend::Serve(int fd) {
  boost::asio::io_context io;
  tcp::socket socket(io);
  boost::system::error_code ec;
  socket.assign(tcp::v4(), ::dup(fd), ec);
  if (ec) return;
  boost::beast::flat_buffer buffer;
  while (!stopping_) {
    http::request_parser<http::string_body> parser;
    parser.body_limit(16 << 20);
    http::read(socket, buffer, parser, ec);
    if (ec) break;
    const auto& req = parser.get();
    std::string target(req.target());
    {
      std::lock_guard lock(mu_);
      requests_.push_back(std::string(req.method_string()) + " " + target +
                          " host=" + std::string(req[http::field::host]) + " body=" + req.body());
    }
    Answer answer = script_ ? script_(target) : Answer{};
    if (answer.bytes.empty()) {
      http::response<http::string_body> res{http::status::ok, 11};
      res.body() = "ok " + target;
      res.keep_alive(parser.keep_alive());
      res.prepare_payload();
      http::write(socket, res, ec);
      if (ec || !parser.keep_alive()) break;
      continue;
    }
    boost::asio::write(socket, boost::asio::buffer(answer.bytes), ec);
    if (ec) break;
    if (!answer.then.empty()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(answer.then_after_ms));
      boost::asio::write(socket, boost::asio::buffer(answer.then), ec);
      if (ec) break;
    }
  }
  socket.close(ec);
}

std::vector<std::string> RecordingBackend::Requests() const {
  std::lock_guard lock(mu_);
  return requests_;
}

int RecordingBackend::Count(const std::string& text) const {
  std::lock_guard lock(mu_);
  int n = 0;
  for (const std::string& r : requests_) {
    std::string target = r.substr(0, r.find(" host="));
    if (target.find(text) != std::string::npos) ++n;
  }
  return n;
}

}  // namespace mesh::testing
