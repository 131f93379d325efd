#include "controlplane/cli/client.h"

#include <httplib.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace mesh::cli {

ApiClient::ApiClient(std::string address, std::string token)
    : address_(std::move(address)), token_(std::move(token)) {
  if (!absl::StartsWith(address_, "http://") && !absl::StartsWith(address_, "https://")) {
    address_ = "http://" + address_;
  }
}

absl::StatusOr<HttpAnswer> ApiClient::Send(const std::string& method, const std::string& path,
                                           const std::string& body, const std::string& content_type,
                                           const std::string& accept) {
  httplib::Client client(address_);
  client.set_connection_timeout(5, 0);
  client.set_read_timeout(60, 0);
  client.set_write_timeout(60, 0);
  client.set_tcp_nodelay(true);
  httplib::Headers headers = {{"Accept", accept}};
  if (!token_.empty()) headers.emplace("Authorization", "Bearer " + token_);
  if (method != "GET" && method != "POST" && method != "PUT" && method != "DELETE") {
    return absl::InvalidArgumentError(absl::StrCat("unsupported method ", method));
  }
  httplib::Result result = method == "GET"    ? client.Get(path, headers)
                           : method == "POST" ? client.Post(path, headers, body, content_type)
                           : method == "PUT"  ? client.Put(path, headers, body, content_type)
                                              : client.Delete(path, headers, body, content_type);
  if (!result) {
    return absl::UnavailableError(absl::StrCat("cannot reach meshpilot at ", address_, ": ",
                                               httplib::to_string(result.error())));
  }
  return HttpAnswer{result->status, result->body, result->get_header_value("Content-Type")};
}

std::string ErrorMessage(const HttpAnswer& answer) {
  nlohmann::json status = nlohmann::json::parse(answer.body, nullptr, false);
  if (status.is_object() && status.contains("message") && status["message"].is_string()) {
    return status["message"].get<std::string>();
  }
  std::string body = answer.body;
  if (absl::StartsWith(body, "Error: ")) body = body.substr(7);
  while (!body.empty() && body.back() == '\n') body.pop_back();
  return body.empty() ? absl::StrCat("HTTP ", answer.status) : body;
}

}  // namespace mesh::cli
