#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "dataplane/stream/header_map.h"

namespace google::protobuf {
class Struct;
}
namespace envoy::config::accesslog::v3 {
class AccessLog;
}

// Access logs as Envoy writes them (envoy.access_loggers.file): a text format of command
// operators (%START_TIME%, %REQ(:METHOD)%, %RESPONSE_FLAGS%, ...) or a JSON dictionary of them,
// one line per request or TCP connection, written by a background thread so that the request
// path never waits on the file: lines that cannot be buffered are dropped and counted.
namespace mesh::dataplane::telemetry {

// What the operators read of one request (or TCP connection: no method, no headers).
struct AccessLogEntry {
  absl::Time start;
  absl::Duration duration;
  absl::string_view protocol;  // "HTTP/1.1", "HTTP/2"; empty for TCP
  // The request's and the response's fields the format names (pseudo-headers :method, :path,
  // :authority, :scheme included); null when none were kept.
  const HeaderMap* request = nullptr;
  const HeaderMap* response = nullptr;
  int response_code = 0;
  absl::string_view response_flags, response_code_details, connection_termination_details;
  absl::string_view upstream_transport_failure_reason;
  uint64_t bytes_received = 0, bytes_sent = 0;
  absl::string_view upstream_host, upstream_cluster, upstream_local_address;
  absl::string_view downstream_local_address, downstream_remote_address;
  absl::string_view requested_server_name, route_name;
};

// A parsed format. Unknown operators are refused when it is made, as Envoy refuses them.
class AccessLogFormat {
 public:
  // Envoy's default text format.
  static const char kEnvoyDefault[];
  static absl::StatusOr<AccessLogFormat> Text(absl::string_view format);
  // A JSON dictionary: each value is a format string; a value that is one numeric operator
  // alone (%RESPONSE_CODE%, %DURATION%, ...) is written as a number, an unset one as null.
  static absl::StatusOr<AccessLogFormat> Json(const google::protobuf::Struct& fields);

  // One line, with its newline for JSON (a text format carries its own).
  std::string Format(const AccessLogEntry& entry) const;
  // The request and response header names (lower case) the format reads, so a stream keeps
  // only those.
  const std::vector<std::string>& request_headers() const { return request_headers_; }
  const std::vector<std::string>& response_headers() const { return response_headers_; }

  // One literal or operator of a format.
  struct Piece {
    enum class Op {
      kLiteral,
      kStartTime,
      kRequestHeader,
      kResponseHeader,
      kProtocol,
      kResponseCode,
      kResponseFlags,
      kResponseCodeDetails,
      kConnectionTerminationDetails,
      kUpstreamTransportFailureReason,
      kBytesReceived,
      kBytesSent,
      kDuration,
      kUpstreamHost,
      kUpstreamCluster,
      kUpstreamLocalAddress,
      kDownstreamLocalAddress,
      kDownstreamRemoteAddress,
      kDownstreamRemoteAddressWithoutPort,
      kRequestedServerName,
      kRouteName,
    };
    Op op = Op::kLiteral;
    std::string text;              // a literal, or START_TIME's time format
    std::string header, fallback;  // REQ(header?fallback), RESP(...)
    size_t max_length = 0;         // ":N" after the operator; 0 for none

    bool numeric() const {
      return op == Op::kResponseCode || op == Op::kBytesReceived || op == Op::kBytesSent ||
             op == Op::kDuration;
    }
  };

 private:
  struct Field {
    std::string key;
    std::vector<Piece> pieces;
  };
  bool json_ = false;
  std::vector<Piece> pieces_;  // text
  std::vector<Field> fields_;  // JSON, in key order
  std::vector<std::string> request_headers_, response_headers_;
};

// Where lines go: a file (or /dev/stdout, /dev/stderr), shared by every access log that names
// it. Write never blocks on I/O: a thread writes what is buffered every 100 ms (sooner past
// 64 KiB); past `max_buffered` bytes waiting, lines are dropped and counted. Thread-safe.
class AccessLogSink {
 public:
  // The sink for `path`, opened (append, created 0644) on first use.
  static absl::StatusOr<std::shared_ptr<AccessLogSink>> Open(const std::string& path);
  ~AccessLogSink();
  void Write(std::string line);

  // Every sink's lines, for the admin stats.
  static uint64_t TotalWritten();
  static uint64_t TotalDropped();

  AccessLogSink(int fd, bool owned, size_t max_buffered);

 private:
  void Run();

  const int fd_;
  const bool owned_;
  const size_t max_buffered_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::string buffer_;
  bool stop_ = false;
  std::thread thread_;
};

// One configured access log: a format and where its lines go.
struct AccessLog {
  AccessLogFormat format;
  std::shared_ptr<AccessLogSink> sink;
  void Write(const AccessLogEntry& entry) const { sink->Write(format.Format(entry)); }

  // An Envoy AccessLog whose typed_config is a FileAccessLog (path, and a log_format of
  // text_format, text_format_source inline_string or json_format; Envoy's default format when
  // none). InvalidArgument names the problem under `where`.
  static absl::StatusOr<std::shared_ptr<const AccessLog>> FromProto(
      const envoy::config::accesslog::v3::AccessLog& log, const std::string& where);
};
using AccessLogPtr = std::shared_ptr<const AccessLog>;

}  // namespace mesh::dataplane::telemetry
