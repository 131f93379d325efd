#include "dataplane/telemetry/access_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "envoy/config/accesslog/v3/accesslog.pb.h"
#include "envoy/extensions/access_loggers/file/v3/file.pb.h"
#include "nlohmann/json.hpp"

namespace mesh::dataplane::telemetry {

namespace {

using Piece = AccessLogFormat::Piece;
using Op = Piece::Op;

const std::map<std::string, Op, std::less<>>& Operators() {
  static const auto* ops = new std::map<std::string, Op, std::less<>>{
      {"PROTOCOL", Op::kProtocol},
      {"RESPONSE_CODE", Op::kResponseCode},
      {"RESPONSE_FLAGS", Op::kResponseFlags},
      {"RESPONSE_CODE_DETAILS", Op::kResponseCodeDetails},
      {"CONNECTION_TERMINATION_DETAILS", Op::kConnectionTerminationDetails},
      {"UPSTREAM_TRANSPORT_FAILURE_REASON", Op::kUpstreamTransportFailureReason},
      {"BYTES_RECEIVED", Op::kBytesReceived},
      {"BYTES_SENT", Op::kBytesSent},
      {"DURATION", Op::kDuration},
      {"UPSTREAM_HOST", Op::kUpstreamHost},
      {"UPSTREAM_CLUSTER", Op::kUpstreamCluster},
      {"UPSTREAM_CLUSTER_RAW", Op::kUpstreamCluster},
      {"UPSTREAM_LOCAL_ADDRESS", Op::kUpstreamLocalAddress},
      {"DOWNSTREAM_LOCAL_ADDRESS", Op::kDownstreamLocalAddress},
      {"DOWNSTREAM_REMOTE_ADDRESS", Op::kDownstreamRemoteAddress},
      {"DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT", Op::kDownstreamRemoteAddressWithoutPort},
      {"DOWNSTREAM_PEER_ADDRESS", Op::kDownstreamRemoteAddress},
      {"REQUESTED_SERVER_NAME", Op::kRequestedServerName},
      {"ROUTE_NAME", Op::kRouteName},
  };
  return *ops;
}

// Splits a format string into literals and operators.
absl::StatusOr<std::vector<Piece>> Parse(absl::string_view format, std::vector<std::string>* req,
                                         std::vector<std::string>* resp) {
  std::vector<Piece> out;
  std::string literal;
  size_t i = 0;
  while (i < format.size()) {
    if (format[i] != '%') {
      literal.push_back(format[i++]);
      continue;
    }
    size_t end = format.find('%', i + 1);
    // An argument may hold '%' (START_TIME(%Y-%m-%d)): the operator then ends at ")%".
    if (size_t open = format.find('(', i + 1); open != absl::string_view::npos && open < end) {
      size_t close = format.find(')', open);
      if (close != absl::string_view::npos && close > end) end = format.find('%', close);
    }
    if (end == absl::string_view::npos)
      return absl::InvalidArgumentError(absl::StrCat("unclosed % at offset ", i));
    absl::string_view token = format.substr(i + 1, end - i - 1);
    i = end + 1;
    if (token.empty()) {  // "%%"
      literal.push_back('%');
      continue;
    }
    if (!literal.empty()) out.push_back({Op::kLiteral, std::move(literal), "", "", 0});
    literal.clear();
    Piece p;
    // A trailing ":N" truncates the value (REQ(...):N).
    const size_t close = token.rfind(')');
    if (size_t colon = token.rfind(':');
        colon != absl::string_view::npos && close != absl::string_view::npos && colon > close) {
      if (!absl::SimpleAtoi(token.substr(colon + 1), &p.max_length))
        return absl::InvalidArgumentError(absl::StrCat("%", token, "%: bad length"));
      token = token.substr(0, colon);
    }
    size_t open = token.find('(');
    absl::string_view name = token.substr(0, open);
    std::string arg;
    if (open != absl::string_view::npos) {
      if (token.back() != ')')
        return absl::InvalidArgumentError(absl::StrCat("%", token, "%: unclosed ("));
      arg = std::string(token.substr(open + 1, token.size() - open - 2));
    }
    if (name == "REQ" || name == "RESP") {
      if (arg.empty())
        return absl::InvalidArgumentError(absl::StrCat("%", name, "%: a header name is required"));
      p.op = name == "REQ" ? Op::kRequestHeader : Op::kResponseHeader;
      size_t q = arg.find('?');
      p.header = absl::AsciiStrToLower(arg.substr(0, q));
      if (q != std::string::npos) p.fallback = absl::AsciiStrToLower(arg.substr(q + 1));
      std::vector<std::string>* names = name == "REQ" ? req : resp;
      for (const std::string* h : {&p.header, &p.fallback}) {
        if (!h->empty() && std::find(names->begin(), names->end(), *h) == names->end())
          names->push_back(*h);
      }
    } else if (name == "START_TIME") {
      p.op = Op::kStartTime;
      p.text = arg;
    } else {
      auto it = Operators().find(name);
      if (it == Operators().end() || !arg.empty())
        return absl::InvalidArgumentError(absl::StrCat("%", token, "%: unknown operator"));
      p.op = it->second;
    }
    out.push_back(std::move(p));
  }
  if (!literal.empty()) out.push_back({Op::kLiteral, std::move(literal), "", "", 0});
  return out;
}

// A piece's value; nullopt when unset (written "-", or null in JSON).
std::optional<std::string> Value(const Piece& p, const AccessLogEntry& e) {
  auto text = [](absl::string_view v) -> std::optional<std::string> {
    if (v.empty()) return std::nullopt;
    return std::string(v);
  };
  switch (p.op) {
    case Op::kLiteral: return p.text;
    case Op::kStartTime:
      return absl::FormatTime(p.text.empty() ? "%Y-%m-%dT%H:%M:%E3SZ" : p.text, e.start,
                              absl::UTCTimeZone());
    case Op::kRequestHeader:
    case Op::kResponseHeader: {
      const HeaderMap* h = p.op == Op::kRequestHeader ? e.request : e.response;
      if (!h) return std::nullopt;
      const std::string* v = h->Get(p.header);
      if (!v && !p.fallback.empty()) v = h->Get(p.fallback);
      if (!v) return std::nullopt;
      return p.max_length ? v->substr(0, p.max_length) : *v;
    }
    case Op::kProtocol: return text(e.protocol);
    case Op::kResponseCode: return absl::StrCat(e.response_code);
    case Op::kResponseFlags: return e.response_flags.empty() ? "-" : std::string(e.response_flags);
    case Op::kResponseCodeDetails: return text(e.response_code_details);
    case Op::kConnectionTerminationDetails: return text(e.connection_termination_details);
    case Op::kUpstreamTransportFailureReason: return text(e.upstream_transport_failure_reason);
    case Op::kBytesReceived: return absl::StrCat(e.bytes_received);
    case Op::kBytesSent: return absl::StrCat(e.bytes_sent);
    case Op::kDuration: return absl::StrCat(absl::ToInt64Milliseconds(e.duration));
    case Op::kUpstreamHost: return text(e.upstream_host);
    case Op::kUpstreamCluster: return text(e.upstream_cluster);
    case Op::kUpstreamLocalAddress: return text(e.upstream_local_address);
    case Op::kDownstreamLocalAddress: return text(e.downstream_local_address);
    case Op::kDownstreamRemoteAddress: return text(e.downstream_remote_address);
    case Op::kDownstreamRemoteAddressWithoutPort: {
      absl::string_view a = e.downstream_remote_address;
      return text(a.substr(0, a.rfind(':')));
    }
    case Op::kRequestedServerName: return text(e.requested_server_name);
    case Op::kRouteName: return text(e.route_name);
  }
  return std::nullopt;
}

std::string Render(const std::vector<Piece>& pieces, const AccessLogEntry& e) {
  std::string out;
  for (const Piece& p : pieces) {
    std::optional<std::string> v = Value(p, e);
    out += v ? *v : "-";
  }
  return out;
}

std::atomic<uint64_t> g_written{0}, g_dropped{0};

}  // namespace

const char AccessLogFormat::kEnvoyDefault[] =
    "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" "
    "%RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% "
    "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" "
    "\"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\"\n";

absl::StatusOr<AccessLogFormat> AccessLogFormat::Text(absl::string_view format) {
  AccessLogFormat f;
  auto pieces = Parse(format, &f.request_headers_, &f.response_headers_);
  if (!pieces.ok()) return pieces.status();
  f.pieces_ = std::move(*pieces);
  return f;
}

absl::StatusOr<AccessLogFormat> AccessLogFormat::Json(const google::protobuf::Struct& fields) {
  AccessLogFormat f;
  f.json_ = true;
  std::map<std::string, std::string> sorted;
  for (const auto& [key, value] : fields.fields()) {
    if (!value.has_string_value())
      return absl::InvalidArgumentError(absl::StrCat("json_format.", key, ": must be a string"));
    sorted[key] = value.string_value();
  }
  for (const auto& [key, value] : sorted) {
    auto pieces = Parse(value, &f.request_headers_, &f.response_headers_);
    if (!pieces.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("json_format.", key, ": ", pieces.status().message()));
    }
    f.fields_.push_back({key, std::move(*pieces)});
  }
  return f;
}

std::string AccessLogFormat::Format(const AccessLogEntry& e) const {
  if (!json_) return Render(pieces_, e);
  nlohmann::json out = nlohmann::json::object();
  for (const Field& field : fields_) {
    if (field.pieces.size() == 1 && field.pieces[0].op != Op::kLiteral) {
      std::optional<std::string> v = Value(field.pieces[0], e);
      int64_t n = 0;
      if (!v || (field.pieces[0].op == Op::kResponseFlags && *v == "-")) {
        out[field.key] = nullptr;
      } else if (field.pieces[0].numeric() && absl::SimpleAtoi(*v, &n)) {
        out[field.key] = n;
      } else {
        out[field.key] = *v;
      }
      continue;
    }
    out[field.key] = Render(field.pieces, e);
  }
  return out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

absl::StatusOr<std::shared_ptr<AccessLogSink>> AccessLogSink::Open(const std::string& path) {
  static std::mutex mu;
  static auto* sinks = new std::map<std::string, std::weak_ptr<AccessLogSink>>;
  std::lock_guard lock(mu);
  if (auto it = sinks->find(path); it != sinks->end()) {
    if (auto sink = it->second.lock()) return sink;
  }
  int fd = -1;
  bool owned = false;
  if (path == "/dev/stdout") {
    fd = STDOUT_FILENO;
  } else if (path == "/dev/stderr") {
    fd = STDERR_FILENO;
  } else {
    fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
      return absl::InvalidArgumentError(absl::StrCat("cannot open ", path, ": ", strerror(errno)));
    owned = true;
  }
  auto sink = std::make_shared<AccessLogSink>(fd, owned, size_t{4} << 20);
  (*sinks)[path] = sink;
  return sink;
}

AccessLogSink::AccessLogSink(int fd, bool owned, size_t max_buffered)
    : fd_(fd), owned_(owned), max_buffered_(max_buffered) {
  thread_ = std::thread([this] { Run(); });
}

AccessLogSink::~AccessLogSink() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_one();
  thread_.join();
  if (owned_) ::close(fd_);
}

void AccessLogSink::Write(std::string line) {
  bool wake = false;
  {
    std::lock_guard lock(mu_);
    if (buffer_.size() + line.size() > max_buffered_) {
      g_dropped.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    buffer_ += line;
    wake = buffer_.size() >= 64 * 1024;
  }
  g_written.fetch_add(1, std::memory_order_relaxed);
  if (wake) cv_.notify_one();
}

void AccessLogSink::Run() {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait_for(lock, std::chrono::milliseconds(100),
                 [this] { return stop_ || buffer_.size() >= 64 * 1024; });
    std::string out;
    out.swap(buffer_);
    const bool stop = stop_;
    lock.unlock();
    size_t done = 0;
    while (done < out.size()) {
      ssize_t n = ::write(fd_, out.data() + done, out.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;  // a full disk or a closed pipe: what is left is lost
      done += static_cast<size_t>(n);
    }
    lock.lock();
    if (stop && buffer_.empty()) return;
  }
}

uint64_t AccessLogSink::TotalWritten() {
  return g_written.load(std::memory_order_relaxed);
}
uint64_t AccessLogSink::TotalDropped() {
  return g_dropped.load(std::memory_order_relaxed);
}

absl::StatusOr<std::shared_ptr<const AccessLog>> AccessLog::FromProto(
    const envoy::config::accesslog::v3::AccessLog& log, const std::string& where) {
  envoy::extensions::access_loggers::file::v3::FileAccessLog file;
  if (!log.typed_config().Is<decltype(file)>() || !log.typed_config().UnpackTo(&file)) {
    return absl::InvalidArgumentError(
        absl::StrCat(where,
                     ".typed_config: only envoy.extensions.access_loggers.file.v3.FileAccessLog is "
                     "supported, not ",
                     log.typed_config().type_url()));
  }
  if (file.path().empty()) return absl::InvalidArgumentError(where + ".path: required");
  absl::StatusOr<AccessLogFormat> format = AccessLogFormat::Text(AccessLogFormat::kEnvoyDefault);
  if (file.has_log_format()) {
    const auto& f = file.log_format();
    if (f.has_json_format()) {
      format = AccessLogFormat::Json(f.json_format());
    } else if (f.has_text_format_source()) {
      if (!f.text_format_source().has_inline_string())
        return absl::InvalidArgumentError(where + ".log_format.text_format_source: inline only");
      format = AccessLogFormat::Text(f.text_format_source().inline_string());
    } else if (!f.text_format().empty()) {
      format = AccessLogFormat::Text(f.text_format());
    }
  }
  if (!format.ok())
    return absl::InvalidArgumentError(
        absl::StrCat(where, ".log_format: ", format.status().message()));
  absl::StatusOr<std::shared_ptr<AccessLogSink>> sink = AccessLogSink::Open(file.path());
  if (!sink.ok())
    return absl::InvalidArgumentError(absl::StrCat(where, ".path: ", sink.status().message()));
  auto out = std::make_shared<AccessLog>();
  out->format = std::move(*format);
  out->sink = std::move(*sink);
  return std::shared_ptr<const AccessLog>(std::move(out));
}

}  // namespace mesh::dataplane::telemetry
