#include "test/support/mesh.h"

#include <arpa/inet.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "test/support/voting_app.h"

namespace mesh::testing {

std::string Reply::Header(const std::string& name) const {
  auto it = headers.find(name);
  return it == headers.end() ? "" : it->second;
}

Reply HttpGet(int port, const std::string& path, const httplib::Headers& headers,
              const std::string& host) {
  httplib::Client c(host, port);
  c.set_connection_timeout(2, 0);
  c.set_read_timeout(10, 0);
  auto res = c.Get(path.c_str(), headers);
  Reply r;
  if (!res) return r;
  r.status = res->status;
  r.body = res->body;
  r.headers = res->headers;
  return r;
}

std::string RawTcp(const std::string& ip, int port, const std::string& data, bool half_close,
                   std::chrono::milliseconds timeout) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  ::inet_pton(AF_INET, ip.c_str(), &addr.sin_addr);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return "<connect failed>";
  }
  ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
  if (half_close) ::shutdown(fd, SHUT_WR);
  std::string out;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  char buf[4096];
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, n);
  }
  ::close(fd);
  return out;
}

const char kStrictMtlsYaml[] = R"(---
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: mesh-mtls, namespace: istio-system}
spec: {host: "*.svc.cluster.local", trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}}
)";

Mesh::Mesh(std::vector<std::string> meshpilot_flags) {
  pilot_ = std::make_unique<MeshpilotProcess>(MESHPILOT_BIN, dir_ / "meshpilot",
                                              std::move(meshpilot_flags));
  if (!pilot_->Start()) throw std::runtime_error("meshpilot did not start:\n" + pilot_->Log());
  // Sidecars get addresses 127.A.B.N, A and B random, so that meshes of tests running at the
  // same time never share an address (their per-port outbound listeners use service ports).
  std::random_device rd;
  ip_prefix_ = absl::StrCat("127.", 10 + rd() % 240, ".", rd() % 250, ".");
}

Mesh::~Mesh() {
  proxies_.clear();
  processes_.clear();  // each Process kills its child
}

std::string Mesh::NextIp() {
  return absl::StrCat(ip_prefix_, next_ip_++);
}

void Mesh::Apply(const std::string& yaml, const std::string& ns) {
  httplib::Client c = pilot_->Client();
  auto res = c.Post(("/apply?namespace=" + ns).c_str(), yaml, "application/yaml");
  if (!res || res->status != 200) {
    throw std::runtime_error("apply refused: " + (res ? res->body : std::string("no answer")));
  }
}

void Mesh::ApplyFile(const std::string& path, const std::string& ns) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  Apply(text.str(), ns);
}

void Mesh::ApplyVotingApp(size_t through) {
  for (size_t step = 1; step <= through; ++step) {
    for (const std::string& file : VotingAppSteps()[step - 1])
      ApplyFile(std::string(MESH_MANIFESTS_DIR) + "/" + file, "voting");
  }
}

std::string Mesh::Proxy::Admin(const std::string& path) const {
  return HttpGet(admin_port, path).body;
}

bool Mesh::Proxy::Ready() const {
  return HttpGet(admin_port, "/ready").status == 200;
}

Mesh::Proxy& Mesh::RawProxy(const std::string& name, std::vector<std::string> flags) {
  auto p = std::make_unique<Proxy>();
  p->name = name;
  p->admin_port = FreePort();
  // A proxy with an identity talks to meshpilot's TLS port, as it would in production.
  const bool tls = std::find(flags.begin(), flags.end(), "--token-file") != flags.end();
  std::vector<std::string> xds;
  for (const MeshpilotProcess* cp : control_planes) {
    xds.push_back(absl::StrCat("127.0.0.1:", tls ? cp->xds_tls_port() : cp->xds_port()));
  }
  if (xds.empty())
    xds.push_back(absl::StrCat("127.0.0.1:", tls ? pilot_->xds_tls_port() : pilot_->xds_port()));
  std::vector<std::string> argv = {MESHPROXY_BIN,
                                   "--xds",
                                   absl::StrJoin(xds, ","),
                                   "--admin",
                                   absl::StrCat("127.0.0.1:", p->admin_port),
                                   "--id",
                                   name,
                                   "--concurrency",
                                   "2"};
  if (tls) argv.insert(argv.end(), {"--xds-root-cert", pilot_->root_cert_path()});
  argv.insert(argv.end(), flags.begin(), flags.end());
  processes_.push_back(std::make_unique<Process>(argv, dir_ / (name + ".log")));
  p->process = processes_.back().get();
  proxies_.push_back(std::move(p));
  return *proxies_.back();
}

std::string Mesh::TokenFile(const std::string& name, const std::string& ns,
                            const std::string& service_account) {
  httplib::Client c = pilot_->Client();
  auto res = c.Post(
      "/tokens",
      absl::StrCat(R"({"namespace":")", ns, R"(","serviceAccount":")", service_account, R"("})"),
      "application/json");
  if (!res || res->status != 200)
    throw std::runtime_error("token refused: " + (res ? res->body : std::string("no answer")));
  std::string body = res->body;
  size_t at = body.find("\"token\":\"") + 9;
  std::string path = dir_ / (name + ".token");
  std::ofstream(path) << body.substr(at, body.find('"', at) - at) << "\n";
  return path;
}

Mesh::Proxy& Mesh::Gateway(const std::string& name, std::vector<std::string> extra_flags) {
  int port = FreePort();
  std::vector<std::string> flags = {"--role",       "gateway",
                                    "--namespace",  "istio-system",
                                    "--labels",     "istio=ingressgateway",
                                    "--port-map",   absl::StrCat("80=", port),
                                    "--token-file", TokenFile(name, "istio-system")};
  flags.insert(flags.end(), extra_flags.begin(), extra_flags.end());
  Proxy& p = RawProxy(name, flags);
  p.port = port;
  p.ip = "127.0.0.1";
  return p;
}

Mesh::Proxy& Mesh::Sidecar(const std::string& name, const std::string& ns,
                           const std::string& labels, int service_port, int app_port,
                           const std::string& service_account) {
  std::string ip = NextIp();
  int inbound_port = FreePort();
  std::string outbound = absl::StrCat(ip, ":15001");
  Proxy& p = RawProxy(
      name,
      {"--role", "sidecar", "--namespace", ns, "--labels", labels, "--address", ip, "--outbound",
       outbound, "--inbound", absl::StrCat(service_port, "=", inbound_port, ":", app_port),
       "--service-account", service_account, "--token-file", TokenFile(name, ns, service_account)});
  p.ip = ip;
  p.port = app_port;
  p.inbound_port = inbound_port;
  p.outbound = outbound;
  return p;
}

Mesh::Proxy& Mesh::Workload(const std::string& name, const std::string& ns,
                            const std::string& labels, int service_port,
                            std::vector<std::string> app_flags) {
  // The sidecar's address is decided first: the app sends its outbound traffic there.
  std::string ip = absl::StrCat(ip_prefix_, next_ip_);
  int app_port = FreePort();
  std::vector<std::string> app = {MESH_DEMO_APP_BIN, "--listen",
                                  absl::StrCat("127.0.0.1:", app_port), "--proxy",
                                  absl::StrCat(ip, ":15001")};
  app.insert(app.end(), app_flags.begin(), app_flags.end());
  processes_.push_back(std::make_unique<Process>(app, dir_ / (name + "-app.log")));
  Process* app_process = processes_.back().get();
  Proxy& p = Sidecar(name, ns, labels, service_port, app_port);
  p.app = app_process;
  return p;
}

int Mesh::Redis() {
  int port = FreePort();
  std::string dir = dir_ / absl::StrCat("redis-", port);
  std::filesystem::create_directories(dir);
  processes_.push_back(std::make_unique<Process>(
      std::vector<std::string>{"redis-server", "--port", std::to_string(port), "--bind",
                               "127.0.0.1", "--dir", dir, "--save", "", "--appendonly", "no"},
      dir + ".log"));
  Process* p = processes_.back().get();
  if (!WaitFor([&] { return absl::StrContains(p->Log(), "Ready to accept connections"); },
               std::chrono::seconds(10)))
    throw std::runtime_error("redis-server did not start:\n" + p->Log());
  return port;
}

int Mesh::MariaDb() {
  int port = FreePort();
  std::string dir = dir_ / absl::StrCat("mariadb-", port);
  std::filesystem::create_directories(dir);
  std::string user = RunCommand({"id", "-un"}).out;
  user = std::string(absl::StripAsciiWhitespace(user));
  CommandResult install =
      RunCommand({"mariadb-install-db", "--no-defaults", "--datadir=" + dir + "/data",
                  "--user=" + user, "--auth-root-authentication-method=normal", "--skip-test-db"});
  if (install.exit_code != 0) throw std::runtime_error("mariadb-install-db: " + install.out);
  const char* daemon =
      std::filesystem::exists("/usr/sbin/mariadbd") ? "/usr/sbin/mariadbd" : "mariadbd";
  processes_.push_back(std::make_unique<Process>(
      std::vector<std::string>{daemon, "--no-defaults", "--datadir=" + dir + "/data",
                               "--user=" + user, absl::StrCat("--port=", port),
                               "--bind-address=127.0.0.1", "--socket=" + dir + "/mysqld.sock",
                               "--pid-file=" + dir + "/mysqld.pid", "--skip-log-bin",
                               "--innodb-buffer-pool-size=16M"},
      dir + ".log"));
  Process* p = processes_.back().get();
  if (!WaitFor([&] { return absl::StrContains(p->Log(), "ready for connections"); },
               std::chrono::seconds(30)))
    throw std::runtime_error("mariadbd did not start:\n" + p->Log());
  return port;
}

int Mesh::App(const std::string& name, std::vector<std::string> app_flags) {
  int port = FreePort();
  std::vector<std::string> argv = {MESH_DEMO_APP_BIN, "--listen", absl::StrCat("127.0.0.1:", port),
                                   "--name", name};
  argv.insert(argv.end(), app_flags.begin(), app_flags.end());
  processes_.push_back(std::make_unique<Process>(argv, dir_ / (name + "-app.log")));
  Process* p = processes_.back().get();
  if (!WaitFor([&] { return absl::StrContains(p->Log(), "mesh-demo-app: ready"); },
               std::chrono::seconds(10)))
    throw std::runtime_error("mesh-demo-app " + name + " did not start");
  return port;
}

bool Mesh::WaitReady(std::chrono::milliseconds timeout) {
  return WaitFor(
      [&] {
        for (const auto& p : proxies_) {
          if (!p->Ready()) return false;
          if (p->app && HttpGet(p->port, "/ping").status != 200) return false;
        }
        return true;
      },
      timeout);
}

std::string Mesh::Logs() const {
  std::string out = "--- meshpilot\n" + pilot_->Log();
  for (const auto& p : processes_) absl::StrAppend(&out, "--- process\n", p->Log());
  return out;
}

}  // namespace mesh::testing
