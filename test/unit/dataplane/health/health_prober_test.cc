#include "dataplane/health/health_prober.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>

namespace mesh::dataplane {
namespace {

// A listening socket on a free loopback port, closed on destruction.
struct Listener {
  Listener() {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(fd, 8) == 0);
    socklen_t len = sizeof addr;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    port = ntohs(addr.sin_port);
  }
  ~Listener() { Close(); }
  void Close() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
  int fd = -1;
  uint32_t port = 0;
};

TEST_CASE("Health needs the identity and every app port, and only changes are reported") {
  Listener a, b;
  std::atomic<bool> identity{false};
  std::vector<std::string> reports;
  HealthProber::Options options;
  options.app_ports = {a.port, b.port};
  options.has_identity = [&] { return identity.load(); };
  options.connect_timeout = absl::Milliseconds(200);
  HealthProber prober(options, [&](bool healthy, const std::string& reason) {
    reports.push_back(healthy ? "healthy" : reason);
  });
  CHECK(prober.CheckOnce() == "no workload certificate yet");
  CHECK(prober.CheckOnce() == "no workload certificate yet");  // no second report
  identity = true;
  CHECK(prober.CheckOnce().empty());
  b.Close();
  CHECK(prober.CheckOnce() == "app port " + std::to_string(b.port) + " refuses connections");
  CHECK(reports ==
        std::vector<std::string>{"no workload certificate yet", "healthy",
                                 "app port " + std::to_string(b.port) + " refuses connections"});
}

TEST_CASE("A proxy without an identity to wait for is healthy once its ports accept") {
  Listener a;
  int reports = 0;
  HealthProber prober({{a.port}}, [&](bool healthy, const std::string&) { reports += healthy; });
  CHECK(prober.CheckOnce().empty());
  CHECK(reports == 1);
  CHECK(AcceptsConnections(a.port, absl::Milliseconds(200)));
  a.Close();
  CHECK_FALSE(AcceptsConnections(a.port, absl::Milliseconds(200)));
}

}  // namespace
}  // namespace mesh::dataplane
