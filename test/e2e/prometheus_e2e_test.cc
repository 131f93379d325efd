// Istio's metrics read back through a real Prometheus server (Debian's), which finds every
// proxy and meshpilot itself through meshpilot's HTTP service discovery.
#include <httplib.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "test/support/mesh.h"

namespace mesh::testing {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

const std::string kPong = std::string(MESH_SOURCE_DIR) + "/examples/pong-canary/";

// A Prometheus server of the test's own: scrapes every second what meshpilot's /debug/
// prometheus_sd lists (with the admin token), keeps its data in the mesh's directory.
class Prometheus {
 public:
  explicit Prometheus(Mesh& mesh) : port_(FreePort()) {
    const std::string dir = mesh.dir() / "prometheus";
    std::filesystem::create_directories(dir);
    {
      std::ofstream token(dir + "/token");
      token << mesh.pilot().token();
    }
    std::ofstream(dir + "/prometheus.yml")
        << absl::StrCat(R"(
global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
- job_name: meshpilot-sd
  http_sd_configs:
  - url: http://)",
                        mesh.pilot().address(), R"(/debug/prometheus_sd
    refresh_interval: 1s
    authorization: {type: Bearer, credentials_file: )",
                        dir, R"(/token}
)");
    process_ = std::make_unique<Process>(
        std::vector<std::string>{"prometheus", "--config.file=" + dir + "/prometheus.yml",
                                 "--storage.tsdb.path=" + dir + "/data",
                                 absl::StrCat("--web.listen-address=127.0.0.1:", port_)},
        dir + "/prometheus.log");
  }

  bool Ready() {
    httplib::Client c("127.0.0.1", port_);
    auto r = c.Get("/-/ready");
    return r && r->status == 200;
  }

  // An instant query's result vector (empty on any error, with the error in `last_error`).
  json Query(const std::string& promql) {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(10s);
    auto r = c.Get("/api/v1/query?" + httplib::detail::params_to_query_str({{"query", promql}}));
    if (!r) {
      last_error = "no answer";
      return json::array();
    }
    json body = json::parse(r->body, nullptr, false);
    if (r->status != 200 || !body.is_object() || body.value("status", "") != "success") {
      last_error = r->body;
      return json::array();
    }
    last_error.clear();
    return body["data"]["result"];
  }

  // The values of `label` on the series `selector` matches.
  std::vector<std::string> LabelValues(const std::string& label, const std::string& selector) {
    httplib::Client c("127.0.0.1", port_);
    auto r = c.Get("/api/v1/label/" + label + "/values?" +
                   httplib::detail::params_to_query_str({{"match[]", selector}}));
    std::vector<std::string> out;
    if (!r) return out;
    json body = json::parse(r->body, nullptr, false);
    if (!body.is_object() || !body["data"].is_array()) return out;
    for (const json& v : body["data"]) out.push_back(v.get<std::string>());
    return out;
  }

  // Active targets' `proxy` label values, with their health.
  std::map<std::string, std::string> Targets() {
    httplib::Client c("127.0.0.1", port_);
    auto r = c.Get("/api/v1/targets?state=active");
    std::map<std::string, std::string> out;
    if (!r) return out;
    last_targets = r->body;
    json body = json::parse(r->body, nullptr, false);
    if (!body.is_object()) return out;
    for (const json& t : body["data"]["activeTargets"])
      out[t["labels"].value("proxy", "")] = t.value("health", "");
    return out;
  }

  std::string Log() const { return process_->Log(); }
  std::string last_error;
  std::string last_targets;

 private:
  int port_;
  std::unique_ptr<Process> process_;
};

// By destination_version, the share of each in `result` (a vector of {metric, value}).
std::map<std::string, double> Shares(const json& result) {
  std::map<std::string, double> by_version;
  double total = 0;
  for (const json& s : result) {
    double v = std::stod(s["value"][1].get<std::string>());
    by_version[s["metric"].value("destination_version", "")] += v;
    total += v;
  }
  for (auto& [version, v] : by_version) v = total > 0 ? v / total : 0;
  return by_version;
}

TEST_CASE("Prometheus finds every proxy through meshpilot and sees the 80/20 canary split") {
  Mesh mesh;
  mesh.ApplyFile(kPong + "pong.yaml");
  Mesh::Proxy& gateway = mesh.Gateway();
  mesh.Workload("pong-v1", "default", "app=pong,version=v1", 8080,
                {"--name", "pong", "--version", "v1"});
  mesh.Workload("pong-v2", "default", "app=pong,version=v2", 8080,
                {"--name", "pong", "--version", "v2"});
  mesh.ApplyFile(kPong + "canary-80-20.yaml");
  REQUIRE(mesh.WaitReady(30s));
  INFO(mesh.Logs());
  REQUIRE(WaitFor(
      [&] {
        return HttpGet(gateway.port, "/", {{"end-user", "jason"}}).body == "pong v2\n";
      },
      15s));
  Prometheus prometheus(mesh);
  REQUIRE(WaitFor([&] { return prometheus.Ready(); }, 30s));
  INFO(prometheus.Log());
  // Every proxy and meshpilot, found and scraped.
  std::map<std::string, std::string> targets;
  bool all_up = WaitFor(
      [&] {
        targets = prometheus.Targets();
        return targets.size() == 4 && targets["ingressgateway"] == "up" &&
               targets["pong-v1"] == "up" && targets["pong-v2"] == "up" &&
               targets["meshpilot"] == "up";
      },
      30s);
  if (!all_up) FAIL("targets: " << prometheus.last_targets);

  // Traffic for a few scrapes: 1,500 requests over a keep-alive connection. Every series exists
  // (and has been scraped) before it starts: rate() counts only what grew between samples, so a
  // series born during the traffic would lose its first requests.
  httplib::Client client("127.0.0.1", gateway.port);
  client.set_keep_alive(true);
  for (int i = 0; i < 50; ++i) client.Get("/");
  std::this_thread::sleep_for(2500ms);
  int ok = 0;
  for (int i = 0; i < 1500; ++i) {
    auto r = client.Get("/");
    ok += r && r->status == 200;
    if (i % 300 == 299) std::this_thread::sleep_for(500ms);
  }
  REQUIRE(ok == 1500);
  const std::string service = "destination_service=\"pong.default.svc.cluster.local\"";
  auto split = [&](const std::string& reporter) {
    return prometheus.Query(absl::StrCat("sum(rate(istio_requests_total{reporter=\"", reporter,
                                         "\",", service, "}[30s])) by (destination_version)"));
  };
  // Both sides' series reach Prometheus once it has scraped after the traffic.
  REQUIRE(WaitFor(
      [&] {
        std::map<std::string, double> s = Shares(split("source"));
        std::map<std::string, double> d = Shares(split("destination"));
        return s.size() == 2 && d.size() == 2;
      },
      20s));
  std::this_thread::sleep_for(2s);  // a last scrape with every request counted
  std::map<std::string, double> source = Shares(split("source"));
  std::map<std::string, double> destination = Shares(split("destination"));
  INFO(prometheus.last_error);
  INFO("source: " << split("source").dump() << "\ndestination: " << split("destination").dump());
  INFO("source v1 " << source["v1"] << ", destination v1 " << destination["v1"]);
  CHECK(std::abs(source["v1"] - 0.8) <= 0.05);
  CHECK(std::abs(destination["v1"] - 0.8) <= 0.05);
  CHECK(std::abs(source["v1"] - destination["v1"]) <= 0.02);

  // meshpilot is scraped too, labelled as istiod.
  json pilot = prometheus.Query("sum(pilot_xds{app=\"istiod\"})");
  REQUIRE(pilot.size() == 1);
  CHECK(std::stod(pilot[0]["value"][1].get<std::string>()) == 3);  // three proxies connected
}

// Every query of a dashboard, with its variables: name -> label_values(SELECTOR, LABEL).
struct Dashboard {
  std::string title;
  std::vector<std::pair<std::string, std::string>> variables;  // in order
  std::vector<std::pair<std::string, std::string>> queries;    // panel title, expr
};

Dashboard ReadDashboard(const std::string& path) {
  std::ifstream in(path);
  json d = json::parse(in, nullptr, false);
  REQUIRE(d.is_object());
  Dashboard out;
  out.title = d.value("title", path);
  for (const json& v : d["templating"]["list"]) {
    if (v.value("type", "") == "query") out.variables.emplace_back(v["name"], v["definition"]);
  }
  for (const json& p : d["panels"]) {
    for (const json& t : p["targets"]) out.queries.emplace_back(p["title"], t["expr"]);
  }
  return out;
}

std::string Substitute(std::string text, const std::map<std::string, std::string>& values) {
  for (const auto& [name, value] : values) {
    for (size_t at; (at = text.find("$" + name)) != std::string::npos;)
      text.replace(at, name.size() + 1, value);
  }
  return text;
}

// Every choice of the dashboard's variables, as Grafana offers them (label_values queries, each
// after the ones before it).
std::vector<std::map<std::string, std::string>> Choices(Prometheus& prometheus,
                                                        const Dashboard& d) {
  std::vector<std::map<std::string, std::string>> out = {{}};
  for (const auto& [name, definition] : d.variables) {
    // label_values(SELECTOR, LABEL)
    const size_t open = definition.find('('), comma = definition.rfind(',');
    REQUIRE((absl::StartsWith(definition, "label_values(") && comma != std::string::npos));
    const std::string selector = definition.substr(open + 1, comma - open - 1);
    std::string label = definition.substr(comma + 1, definition.size() - comma - 2);
    label.erase(0, label.find_first_not_of(' '));
    std::vector<std::map<std::string, std::string>> next;
    for (const auto& chosen : out) {
      for (const std::string& value : prometheus.LabelValues(label, Substitute(selector, chosen))) {
        auto with = chosen;
        with[name] = value;
        next.push_back(std::move(with));
      }
    }
    out = std::move(next);
  }
  return out;
}

TEST_CASE("Every panel of the shipped dashboards answers with data while the voting app runs") {
  Mesh mesh;
  mesh.ApplyVotingApp(1);
  // Somewhere for 5xx answers to come from: a host on the gateway whose service has no endpoint.
  mesh.Apply(R"(
apiVersion: v1
kind: Service
metadata: {name: broken}
spec: {selector: {app: nobody}, ports: [{name: http, port: 8080}]}
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata: {name: broken}
spec:
  hosts: [broken.example]
  gateways: [voting-app-gateway]
  http: [{route: [{destination: {host: broken}}]}]
)",
             "voting");
  Mesh::Proxy& gw = mesh.Gateway();
  const int redis = mesh.Redis();
  mesh.Sidecar("voting-storage-1-0", "voting", "app=voting-storage,version=1.0", 6379, redis);
  for (const std::string app : {"voting-app", "voting-analytics"}) {
    mesh.Workload(app + "-1-0", "voting", "app=" + app + ",version=1.0", 8080,
                  {"--mode", app, "--name", app, "--version", "1.0", "--storage", "redis"});
  }
  REQUIRE(mesh.WaitReady(30s));
  INFO(mesh.Logs().substr(0, 6000));
  REQUIRE(WaitFor([&] { return HttpGet(gw.port, "/").status == 200; }, 15s));
  Prometheus prometheus(mesh);
  REQUIRE(WaitFor([&] { return prometheus.Ready(); }, 30s));
  REQUIRE(WaitFor([&] { return prometheus.Targets().size() == 5; }, 30s));

  // Load for a few scrapes: page views, votes, a missing page (404) and the broken host (503).
  httplib::Client client("127.0.0.1", gw.port);
  client.set_keep_alive(true);
  const auto until = std::chrono::steady_clock::now() + 4s;
  while (std::chrono::steady_clock::now() < until) {
    client.Get("/");
    client.Post("/", "vote=Dogs", "application/x-www-form-urlencoded");
    client.Get("/no-such-page");
    client.Get("/", {{"Host", "broken.example"}});
  }
  std::this_thread::sleep_for(2s);  // scraped after the load

  int checked = 0;
  for (const char* file : {"istio-mesh-dashboard", "istio-service-dashboard",
                           "istio-workload-dashboard", "pilot-dashboard"}) {
    Dashboard d = ReadDashboard(std::string(MESH_SOURCE_DIR) +
                                "/examples/observability/dashboards/" + file + ".json");
    const auto choices = Choices(prometheus, d);
    INFO(d.title);
    REQUIRE(!choices.empty());
    for (const auto& [title, expr] : d.queries) {
      bool answered = false;
      std::string tried;
      for (const auto& chosen : choices) {
        const std::string query = Substitute(expr, chosen);
        json result = prometheus.Query(query);
        REQUIRE(prometheus.last_error.empty());  // every query is valid PromQL
        if (!result.empty()) {
          answered = true;
          break;
        }
        tried += query + "\n";
      }
      INFO(title << ": no series for any choice of variables:\n" << tried);
      CHECK(answered);
      ++checked;
    }
  }
  CHECK(checked >= 30);
}

}  // namespace
}  // namespace mesh::testing
