#pragma once

#include <map>
#include <string>

#include "absl/status/statusor.h"

namespace mesh::cli {

struct HttpAnswer {
  int status = 0;
  std::string body;
  std::string content_type;
};

// A small client for meshpilot's REST API: one server address and bearer token.
class ApiClient {
 public:
  // `address` is host:port or http://host:port.
  ApiClient(std::string address, std::string token);

  // Sends a request; Unavailable when the server cannot be reached. Any HTTP status is an
  // answer, not an error.
  absl::StatusOr<HttpAnswer> Send(const std::string& method, const std::string& path,
                                  const std::string& body = "",
                                  const std::string& content_type = "",
                                  const std::string& accept = "application/json");

  const std::string& address() const { return address_; }

 private:
  std::string address_;
  std::string token_;
};

// Turns an error answer (a Kubernetes Status object) into its message.
std::string ErrorMessage(const HttpAnswer& answer);

}  // namespace mesh::cli
