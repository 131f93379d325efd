#include "test/support/meshpilot.h"

#include <signal.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

namespace mesh::testing {

MeshpilotProcess::MeshpilotProcess(std::string binary, std::string data_dir,
                                   std::vector<std::string> extra_flags)
    : binary_(std::move(binary)),
      data_dir_(std::move(data_dir)),
      extra_flags_(std::move(extra_flags)) {}

bool MeshpilotProcess::Start() {
  port_ = FreePort();
  xds_port_ = FreePort();
  xds_tls_port_ = FreePort();
  monitoring_port_ = FreePort();
  return Restart();
}

bool MeshpilotProcess::Restart() {
  if (process_ && process_->running()) process_->Stop(SIGKILL);
  std::vector<std::string> argv = {binary_,
                                   "--rest",
                                   "127.0.0.1:" + std::to_string(port_),
                                   "--xds",
                                   "127.0.0.1:" + std::to_string(xds_port_),
                                   "--xds-tls",
                                   "127.0.0.1:" + std::to_string(xds_tls_port_),
                                   "--monitoring",
                                   "127.0.0.1:" + std::to_string(monitoring_port_),
                                   "--data-dir",
                                   data_dir_};
  argv.insert(argv.end(), extra_flags_.begin(), extra_flags_.end());
  std::filesystem::create_directories(data_dir_);
  process_ = std::make_unique<Process>(argv, data_dir_ + "/meshpilot.log");
  // Up when /healthz answers; given up on at once if the process exits.
  bool exited = false;
  bool up = WaitFor(
      [&] {
        if (!process_->running()) return exited = true;
        httplib::Client c("127.0.0.1", port_);
        c.set_connection_timeout(0, 200000);
        auto res = c.Get("/healthz");
        return res && res->status == 200;
      },
      std::chrono::seconds(10));
  if (!up || exited) return false;
  std::ifstream in(data_dir_ + "/admin.token");
  std::getline(in, token_);
  return !token_.empty();
}

httplib::Client MeshpilotProcess::Client() const {
  httplib::Client c("127.0.0.1", port_);
  c.set_bearer_token_auth(token_);
  c.set_connection_timeout(2, 0);
  c.set_read_timeout(10, 0);
  c.set_tcp_nodelay(true);
  return c;
}

std::map<std::string, std::string> MeshpilotProcess::Registrations() const {
  std::map<std::string, std::string> out;
  auto res = Client().Get("/debug/syncz");
  if (!res || res->status != 200) return out;
  nlohmann::json proxies = nlohmann::json::parse(res->body, nullptr, false);
  if (!proxies.is_array()) return out;
  for (const nlohmann::json& p : proxies) out[p.value("id", "")] = p.value("registration", "");
  return out;
}

}  // namespace mesh::testing
