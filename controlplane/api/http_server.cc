#include "controlplane/api/http_server.h"

#include <httplib.h>

#include <atomic>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <optional>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace mesh::api {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

std::string HttpRequest::header(const std::string& lower_name) const {
  auto it = headers.find(lower_name);
  return it == headers.end() ? "" : it->second;
}

std::string HttpRequest::param(const std::string& name) const {
  auto it = params.find(name);
  return it == params.end() ? "" : it->second;
}

bool HttpStream::Push(std::string data) {
  std::function<void()> wakeup;
  {
    std::lock_guard lock(mu_);
    if (closed_ || abandoned_ || queued_.size() + data.size() > max_bytes_) return false;
    queued_ += data;
    wakeup = wakeup_;
  }
  if (wakeup) wakeup();
  return true;
}

bool HttpStream::PushFinal(std::string data) {
  std::function<void()> wakeup;
  {
    std::lock_guard lock(mu_);
    if (closed_ || abandoned_) return false;
    queued_ += data;
    closed_ = true;
    wakeup = wakeup_;
  }
  if (wakeup) wakeup();
  return true;
}

void HttpStream::Close() {
  std::function<void()> wakeup;
  {
    std::lock_guard lock(mu_);
    if (closed_) return;
    closed_ = true;
    wakeup = wakeup_;
  }
  if (wakeup) wakeup();
}

bool HttpStream::open() const {
  std::lock_guard lock(mu_);
  return !closed_ && !abandoned_;
}

std::string HttpStream::Take(bool* closed) {
  std::lock_guard lock(mu_);
  *closed = closed_;
  return std::exchange(queued_, {});
}

void HttpStream::Abandon() {
  std::lock_guard lock(mu_);
  abandoned_ = true;
  queued_.clear();
  wakeup_ = nullptr;
}

void HttpStream::SetWakeup(std::function<void()> wakeup) {
  {
    std::lock_guard lock(mu_);
    wakeup_ = std::move(wakeup);
  }
  // Whatever arrived before the server was listening is picked up now.
  std::function<void()> now;
  {
    std::lock_guard lock(mu_);
    if (!queued_.empty() || closed_) now = wakeup_;
  }
  if (now) now();
}

namespace {

std::chrono::nanoseconds Chrono(absl::Duration d) {
  return absl::ToChronoNanoseconds(d);
}

}  // namespace

class HttpServer::Impl {
 public:
  class Connection;

  explicit Impl(HttpServer* server)
      : server_(server),
        options_(server->options_),
        work_(asio::make_work_guard(io_)),
        acceptor_(io_),
        pool_(std::max<size_t>(1, options_.handler_threads)) {}

  absl::StatusOr<int> Start() {
    error_code ec;
    asio::ip::address address = asio::ip::make_address(options_.host, ec);
    if (ec) return absl::InvalidArgumentError(absl::StrCat("not an IP address: ", options_.host));
    tcp::endpoint endpoint(address, static_cast<uint16_t>(options_.port));
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return absl::UnavailableError(
          absl::StrCat("cannot bind ", options_.host, ":", options_.port, ": ", ec.message()));
    }
    int port = acceptor_.local_endpoint().port();
    Accept();
    thread_ = std::thread([this] { io_.run(); });
    return port;
  }

  void Stop() {
    if (stopping_.exchange(true)) return;
    asio::post(io_, [this] {
      error_code ignored;
      acceptor_.close(ignored);
    });
    CloseAll();
    pool_.join();   // handlers in flight finish; their answers find closed connections
    CloseAll();     // and any connection their answers reopened for reading
    work_.reset();  // the loop ends once every closed connection has unwound
    if (thread_.joinable()) thread_.join();
  }

  size_t open_connections() {
    std::lock_guard lock(mu_);
    return connections_.size();
  }

  // Serves `request` on a handler thread: filter, route, handler; errors answered as the
  // server's own.
  void Handle(HttpRequest& request, HttpResponse& response) {
    try {
      if (server_->before_ && server_->before_(request, response)) return;
      bool path_known = false;
      for (const RouteEntry& route : server_->routes_) {
        std::smatch m;
        if (!std::regex_match(request.path, m, route.pattern)) continue;
        path_known = true;
        if (route.method != request.method) continue;
        request.matches = std::move(m);
        route.handler(request, response);
        return;
      }
      if (path_known) {
        Error(request, response, 405,
              absl::StrCat(request.method, " is not allowed on ", request.path));
      } else {
        Error(request, response, 404,
              absl::StrCat("no route for ", request.method, " ", request.path));
      }
    } catch (const std::exception& e) {
      log::Error("rest: ", request.method, " ", request.path, ": ", e.what());
      response = HttpResponse{};
      Error(request, response, 500, e.what());
    }
  }

  void Error(const HttpRequest& request, HttpResponse& response, int status,
             const std::string& message) {
    response.status = status;
    if (server_->on_error_) {
      server_->on_error_(request, response, message);
    } else {
      response.set_content(message + "\n", "text/plain");
    }
  }

 private:
  void Accept();
  void CloseAll();

  HttpServer* server_;
  const Options& options_;
  std::atomic<bool> stopping_{false};
  // Declared before the event loop: connections still queued in it at destruction unregister
  // themselves here.
  std::mutex mu_;
  std::map<Connection*, std::weak_ptr<Connection>> connections_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, size_t> per_client_ ABSL_GUARDED_BY(mu_);
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  tcp::acceptor acceptor_;
  asio::thread_pool pool_;
  std::thread thread_;

  friend class Connection;
};

class HttpServer::Impl::Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(Impl* impl, tcp::socket socket, std::string remote)
      : impl_(impl), stream_(std::move(socket)), remote_(std::move(remote)) {}

  ~Connection() {
    if (stream_body_) stream_body_->Abandon();
    std::lock_guard lock(impl_->mu_);
    impl_->connections_.erase(this);
    if (--impl_->per_client_[remote_] == 0) impl_->per_client_.erase(remote_);
  }

  void Start() { ReadNext(); }

  // Closes the connection from any thread.
  void Close() {
    asio::post(stream_.get_executor(), [self = shared_from_this()] { self->CloseNow(); });
  }

 private:
  const Options& options() const { return impl_->options_; }

  void CloseNow() {
    error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.socket().close(ignored);
    if (stream_body_) stream_body_->Abandon();
  }

  // Between requests: the next one's first byte must come within the idle timeout.
  void ReadNext() {
    if (impl_->stopping_) return CloseNow();
    if (buffer_.size() > 0) return ReadRequest();
    stream_.expires_after(Chrono(options().idle_timeout));
    stream_.async_read_some(buffer_.prepare(4096),
                            [self = shared_from_this()](error_code ec, size_t n) {
                              if (ec) return self->CloseNow();
                              self->buffer_.commit(n);
                              self->ReadRequest();
                            });
  }

  // The whole request, header and body, within the request timeout.
  void ReadRequest() {
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(options().max_header_bytes));
    parser_->body_limit(options().max_body_bytes);
    stream_.expires_after(Chrono(options().request_timeout));
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](error_code ec, size_t) { self->OnRead(ec); });
  }

  void OnRead(error_code ec) {
    if (ec) {
      int status = 0;
      std::string message;
      if (ec == http::error::body_limit) {
        status = 413;
        message = "the request body is larger than the server accepts";
      } else if (ec == http::error::header_limit) {
        status = 431;
        message = "the request header is larger than the server accepts";
      } else if (ec != beast::error::timeout && ec != http::error::end_of_stream &&
                 ec != asio::error::eof && ec != asio::error::connection_reset &&
                 ec != http::error::partial_message) {
        status = 400;
        message = absl::StrCat("malformed HTTP request: ", ec.message());
      }
      if (status == 0) return CloseNow();
      auto request = std::make_shared<HttpRequest>();
      auto response = std::make_shared<HttpResponse>();
      impl_->Error(*request, *response, status, message);
      return Write(std::move(request), std::move(response), false);
    }
    auto request = std::make_shared<HttpRequest>();
    http::request<http::string_body>& req = parser_->get();
    request->method = std::string(req.method_string());
    request->target = std::string(req.target());
    size_t q = request->target.find('?');
    request->path = request->target.substr(0, q);
    if (q != std::string::npos) {
      httplib::Params params;
      httplib::detail::parse_query_text(request->target.substr(q + 1), params);
      request->params.insert(params.begin(), params.end());
    }
    for (const auto& field : req) {
      std::string name = absl::AsciiStrToLower(std::string(field.name_string()));
      std::string& value = request->headers[name];
      if (!value.empty()) value += ", ";
      value += std::string(field.value());
    }
    request->body = std::move(req.body());
    request->remote = remote_;
    const bool keep_alive = parser_->keep_alive();
    parser_.reset();
    // The handler may block (a durable write): it runs on the pool, and the answer comes back
    // to this connection's strand.
    asio::post(impl_->pool_, [self = shared_from_this(), request, keep_alive] {
      auto response = std::make_shared<HttpResponse>();
      self->impl_->Handle(*request, *response);
      asio::post(self->stream_.get_executor(), [self, request, response, keep_alive] {
        self->Write(request, response, keep_alive);
      });
    });
  }

  void Write(std::shared_ptr<HttpRequest> request, std::shared_ptr<HttpResponse> response,
             bool keep_alive) {
    if (response->stream) return StartStream(std::move(response));
    auto res = std::make_shared<http::response<http::string_body>>(
        static_cast<http::status>(response->status), 11);
    res->set(http::field::content_type, response->content_type);
    for (const auto& [name, value] : response->headers) res->set(name, value);
    res->body() = std::move(response->body);
    res->keep_alive(keep_alive && !impl_->stopping_);
    res->prepare_payload();
    if (request->method == "HEAD") res->body().clear();
    stream_.expires_after(Chrono(options().write_timeout));
    http::async_write(stream_, *res, [self = shared_from_this(), res](error_code ec, size_t) {
      if (ec || !res->keep_alive()) return self->CloseNow();
      self->ReadNext();
    });
  }

  // A streamed answer: the header, then a chunk for whatever the producer queued, until it
  // closes the stream, the client leaves, or a write stalls past the write timeout.
  void StartStream(std::shared_ptr<HttpResponse> response) {
    stream_body_ = response->stream;
    keep_ = std::move(response->keep);
    header_.emplace(static_cast<http::status>(response->status), 11);
    header_->set(http::field::content_type, response->content_type);
    for (const auto& [name, value] : response->headers) header_->set(name, value);
    header_->chunked(true);
    header_->keep_alive(false);
    serializer_.emplace(*header_);
    if (response->stream_max < absl::InfiniteDuration()) {
      stream_timer_.emplace(stream_.get_executor());
      stream_timer_->expires_after(Chrono(response->stream_max));
      stream_timer_->async_wait([body = stream_body_](error_code ec) {
        if (!ec) body->Close();  // the stream's time is up: end it after what is queued
      });
    }
    stream_.expires_after(Chrono(options().write_timeout));
    http::async_write_header(stream_, *serializer_,
                             [self = shared_from_this()](error_code ec, size_t) {
                               if (ec) return self->EndStream();
                               std::weak_ptr<Connection> weak = self;
                               self->stream_body_->SetWakeup([weak] {
                                 if (auto c = weak.lock()) {
                                   asio::post(c->stream_.get_executor(), [c] { c->Pump(); });
                                 }
                               });
                               self->WatchForHangUp();
                               self->Pump();
                             });
  }

  // A streaming client sends nothing more: a read that ends means it has gone.
  void WatchForHangUp() {
    stream_.socket().async_read_some(asio::buffer(discard_),
                                     [self = shared_from_this()](error_code ec, size_t) {
                                       if (ec) return self->EndStream();
                                       self->WatchForHangUp();
                                     });
  }

  void Pump() {
    if (writing_ || !stream_body_ || done_) return;
    bool closed = false;
    chunk_ = stream_body_->Take(&closed);
    if (chunk_.empty() && !closed) return;
    writing_ = true;
    stream_.expires_after(Chrono(options().write_timeout));
    auto after = [self = shared_from_this(), closed](error_code ec, size_t) {
      self->writing_ = false;
      if (ec || (closed && self->chunk_.empty())) return self->EndStream();
      if (closed) {
        self->chunk_.clear();
        self->writing_ = true;
        return asio::async_write(self->stream_, http::make_chunk_last(),
                                 [self](error_code, size_t) { self->EndStream(); });
      }
      self->Pump();
    };
    if (chunk_.empty()) {
      asio::async_write(stream_, http::make_chunk_last(), std::move(after));
    } else {
      asio::async_write(stream_, http::make_chunk(asio::buffer(chunk_)), std::move(after));
    }
  }

  void EndStream() {
    if (done_) return;
    done_ = true;
    if (stream_timer_) stream_timer_->cancel();
    if (stream_body_) stream_body_->Abandon();
    keep_.reset();  // the producer (a store watch) is released here, on this strand
    CloseNow();
  }

  Impl* impl_;
  beast::tcp_stream stream_;
  const std::string remote_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  // A streamed answer.
  HttpStreamPtr stream_body_;
  std::shared_ptr<void> keep_;
  std::optional<http::response<http::empty_body>> header_;
  std::optional<http::response_serializer<http::empty_body>> serializer_;
  std::optional<asio::steady_timer> stream_timer_;
  std::string chunk_;
  char discard_[256];
  bool writing_ = false, done_ = false;
};

void HttpServer::Impl::Accept() {
  acceptor_.async_accept(asio::make_strand(io_), [this](error_code ec, tcp::socket socket) {
    if (ec) {
      if (ec != asio::error::operation_aborted && !stopping_) Accept();
      return;
    }
    error_code ignored;
    std::string remote = socket.remote_endpoint(ignored).address().to_string();
    socket.set_option(tcp::no_delay(true), ignored);
    std::shared_ptr<Connection> connection;
    {
      std::lock_guard lock(mu_);
      size_t& mine = per_client_[remote];
      if (stopping_ || connections_.size() >= options_.max_connections ||
          mine >= options_.max_connections_per_client) {
        if (mine == 0) per_client_.erase(remote);
        socket.close(ignored);  // over the cap: refused at once, nothing read
      } else {
        ++mine;
        connection = std::make_shared<Connection>(this, std::move(socket), remote);
        connections_[connection.get()] = connection;
      }
    }
    if (connection) connection->Start();
    if (!stopping_) Accept();
  });
}

void HttpServer::Impl::CloseAll() {
  std::vector<std::shared_ptr<Connection>> open;
  {
    std::lock_guard lock(mu_);
    for (auto& [raw, weak] : connections_) {
      if (auto c = weak.lock()) open.push_back(std::move(c));
    }
  }
  for (auto& c : open) c->Close();
}

HttpServer::HttpServer(Options options) : options_(std::move(options)) {}

HttpServer::~HttpServer() {
  Stop();
}

void HttpServer::Route(const std::string& method, const std::string& pattern, Handler handler) {
  routes_.push_back({method, std::regex(pattern), std::move(handler)});
}

absl::StatusOr<int> HttpServer::Start() {
  impl_ = std::make_unique<Impl>(this);
  return impl_->Start();
}

void HttpServer::Stop() {
  if (impl_) impl_->Stop();
}

size_t HttpServer::open_connections() const {
  return impl_ ? impl_->open_connections() : 0;
}

}  // namespace mesh::api
