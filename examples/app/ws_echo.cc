#include "examples/app/ws_echo.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <cstdio>
#include <thread>

namespace mesh::demo {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;

void Serve(tcp::socket socket, const std::string& prefix) {
  beast::error_code ec;
  beast::flat_buffer buffer;
  for (;;) {
    http::request<http::string_body> req;
    http::read(socket, buffer, req, ec);
    if (ec) return;
    if (websocket::is_upgrade(req)) {
      websocket::stream<tcp::socket> ws(std::move(socket));
      ws.accept(req, ec);
      if (ec) return;
      for (;;) {
        beast::flat_buffer message;
        ws.read(message, ec);
        if (ec) return;
        ws.text(ws.got_text());
        ws.write(asio::buffer(prefix + beast::buffers_to_string(message.data())), ec);
        if (ec) return;
      }
    }
    http::response<http::string_body> res{http::status::ok, req.version()};
    res.set(http::field::content_type, "text/plain");
    res.body() = prefix + "\n";
    res.keep_alive(req.keep_alive());
    res.prepare_payload();
    http::write(socket, res, ec);
    if (ec || !res.keep_alive()) return;
  }
}

}  // namespace

int ServeWebSocketEcho(const std::string& listen, const std::string& name,
                       const std::string& version) {
  size_t colon = listen.rfind(':');
  if (colon == std::string::npos) return 2;
  asio::io_context io;
  beast::error_code ec;
  tcp::endpoint endpoint(asio::ip::make_address(listen.substr(0, colon), ec),
                         static_cast<uint16_t>(std::stoi(listen.substr(colon + 1))));
  tcp::acceptor acceptor(io);
  acceptor.open(endpoint.protocol(), ec);
  acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  acceptor.bind(endpoint, ec);
  acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    std::fprintf(stderr, "mesh-demo-app: cannot listen on %s\n", listen.c_str());
    return 1;
  }
  std::fprintf(stderr, "mesh-demo-app: ready name=%s version=%s mode=ws-echo listen=%s\n",
               name.c_str(), version.c_str(), listen.c_str());
  const std::string prefix = name + " " + version + ": ";
  for (;;) {
    tcp::socket socket(io);
    acceptor.accept(socket, ec);
    if (ec) continue;
    std::thread(Serve, std::move(socket), prefix).detach();
  }
}

}  // namespace mesh::demo
