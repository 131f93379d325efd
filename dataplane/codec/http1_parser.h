#pragma once

#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/error.hpp>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "dataplane/stream/header_map.h"

// Used by the HTTP/1.1 codecs only: Boost.Beast's parser, sans I/O, reporting one message into
// plain fields and body callbacks. Beast checks the syntax of every line and the framing; the
// codecs add the proxy's rules (http1_rules.h) when the header is complete.
namespace mesh::dataplane::http1 {

// What the parser reports, in order: the header (OnHeader; an error it returns aborts the parse),
// body bytes, trailers (chunked only), completion.
class MessageEvents {
 public:
  virtual ~MessageEvents() = default;
  virtual boost::system::error_code OnHeader() = 0;
  virtual void OnBody(absl::string_view data) = 0;
  virtual void OnComplete(HeaderMap* trailers) = 0;  // trailers: nullptr when none came
};

template <bool isRequest>
class Parser : public boost::beast::http::basic_parser<isRequest> {
 public:
  using string_view = boost::beast::string_view;
  using error_code = boost::system::error_code;

  explicit Parser(MessageEvents& events, size_t header_limit) : events_(events) {
    this->header_limit(static_cast<uint32_t>(std::min<size_t>(header_limit, UINT32_MAX)));
    // Bodies stream through; nothing is held whole. (Not boost::none: Boost 1.74 compares a
    // Content-Length against an empty optional as if the limit were 0.)
    this->body_limit(std::numeric_limits<uint64_t>::max());
    this->eager(true);
  }

  // The message's start line and fields, once the header is done.
  std::string method, target;  // requests
  int status = 0;              // responses
  int version = 11;
  HeaderMap fields;  // every field but Host
  int hosts = 0;     // Host lines; the first one's value in `host`
  std::string host;

 private:
  static absl::string_view View(string_view s) { return {s.data(), s.size()}; }

  void on_request_impl(boost::beast::http::verb, string_view method_str, string_view target_str,
                       int v, error_code&) override {
    method.assign(method_str.data(), method_str.size());
    target.assign(target_str.data(), target_str.size());
    version = v;
  }
  void on_response_impl(int code, string_view, int v, error_code&) override {
    status = code;
    version = v;
  }
  void on_field_impl(boost::beast::http::field f, string_view name, string_view value,
                     error_code&) override {
    if (header_done_) {
      if (!trailers_) trailers_.emplace();
      trailers_->Add(View(name), View(value));
      return;
    }
    if (isRequest && f == boost::beast::http::field::host) {
      if (hosts++ == 0) host.assign(value.data(), value.size());
      return;
    }
    fields.Add(View(name), View(value));
  }
  void on_header_impl(error_code& ec) override {
    header_done_ = true;
    ec = events_.OnHeader();
  }
  void on_body_init_impl(const boost::optional<uint64_t>&, error_code&) override {}
  size_t on_body_impl(string_view body, error_code&) override {
    events_.OnBody(View(body));
    return body.size();
  }
  void on_chunk_header_impl(uint64_t, string_view, error_code&) override {}
  size_t on_chunk_body_impl(uint64_t, string_view body, error_code&) override {
    events_.OnBody(View(body));
    return body.size();
  }
  void on_finish_impl(error_code&) override {
    events_.OnComplete(trailers_ ? &*trailers_ : nullptr);
  }

  MessageEvents& events_;
  bool header_done_ = false;
  std::optional<HeaderMap> trailers_;
};

}  // namespace mesh::dataplane::http1
