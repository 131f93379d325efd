#pragma once

#include <httplib.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "test/support/process.h"

namespace mesh::testing {

// A real meshpilot process on a free loopback port, with its data in `data_dir`.
class MeshpilotProcess {
 public:
  MeshpilotProcess(std::string binary, std::string data_dir,
                   std::vector<std::string> extra_flags = {});

  // Starts it and waits until /healthz answers and the token file exists. Returns false (with
  // the log available) if it did not come up within a few seconds.
  bool Start();
  // Starts it again on the same ports and data dir (after Kill or Terminate).
  bool Restart();
  // SIGKILL, as a crash would.
  void Kill() { process_->Stop(SIGKILL); }
  int Terminate() { return process_->Stop(SIGTERM); }

  int port() const { return port_; }
  int xds_port() const { return xds_port_; }
  // ADS over TLS (--xds-tls); proxies verify it against root_cert_path().
  int xds_tls_port() const { return xds_tls_port_; }
  // /metrics without a token (--monitoring).
  int monitoring_port() const { return monitoring_port_; }
  std::string root_cert_path() const { return data_dir_ + "/ca/root-cert.pem"; }
  pid_t pid() const { return process_ ? process_->pid() : -1; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  const std::string& token() const { return token_; }
  const std::string& data_dir() const { return data_dir_; }
  std::string Log() const { return process_ ? process_->Log() : ""; }
  httplib::Client Client() const;
  // Per connected proxy (node id), its registration as /debug/syncz states it ("registered",
  // "not registered: ..."; empty for proxies that do not register). Empty if meshpilot is down.
  std::map<std::string, std::string> Registrations() const;

 private:
  std::string binary_, data_dir_;
  std::vector<std::string> extra_flags_;
  int port_ = 0;
  int xds_port_ = 0;
  int xds_tls_port_ = 0;
  int monitoring_port_ = 0;
  std::string token_;
  std::unique_ptr<Process> process_;
};

}  // namespace mesh::testing
