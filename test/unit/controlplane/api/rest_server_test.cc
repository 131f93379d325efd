#include "controlplane/api/rest_server.h"

#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "test/support/process.h"
#include "test/support/service_fixture.h"

namespace mesh::api {
namespace {

using nlohmann::json;

constexpr char kToken[] = "test-token";

const std::string kGateway = R"({"apiVersion":"networking.istio.io/v1alpha3","kind":"Gateway",
  "metadata":{"name":"gw"},"spec":{"servers":[{"port":{"number":80,"name":"http","protocol":"HTTP"},"hosts":["*"]}]}})";

struct Server {
  explicit Server(size_t max_body = 4 << 20, int max_watches = 16, RestOptions options = {}) {
    options.port = 0;
    options.admin_token = kToken;
    options.max_body_bytes = max_body;
    options.max_watches = max_watches;
    rest = std::make_unique<RestServer>(f.service.get(), options);
    auto p = rest->Start();
    REQUIRE(p.ok());
    port = *p;
  }
  httplib::Client Client(bool with_token = true) {
    httplib::Client c("127.0.0.1", port);
    if (with_token) c.set_bearer_token_auth(kToken);
    return c;
  }
  mesh::testing::ServiceFixture f;
  std::unique_ptr<RestServer> rest;
  int port = 0;
};

const char* kGwPath = "/apis/networking.istio.io/v1alpha3/namespaces/voting/gateways";

TEST_CASE("Health endpoints need no token, everything else answers 401 without the right one") {
  Server s;
  auto anon = s.Client(false);
  CHECK(anon.Get("/healthz")->status == 200);
  CHECK(anon.Get("/readyz")->status == 200);
  CHECK(anon.Get("/version")->status == 200);
  auto res = anon.Get(kGwPath);
  REQUIRE(res);
  CHECK(res->status == 401);
  CHECK(json::parse(res->body)["reason"] == "Unauthorized");
  httplib::Client wrong("127.0.0.1", s.port);
  wrong.set_bearer_token_auth("not-the-token");
  CHECK(wrong.Get(kGwPath)->status == 401);
  CHECK(wrong.Post("/apply", kGateway, "application/json")->status == 401);
  CHECK(s.f.store->Revision() == 0);
  CHECK(s.Client().Get(kGwPath)->status == 200);
}

TEST_CASE("POST creates (201), a second POST conflicts (409), GET reads it back") {
  Server s;
  auto c = s.Client();
  auto created = c.Post(kGwPath, kGateway, "application/json");
  REQUIRE(created);
  CHECK(created->status == 201);
  CHECK(json::parse(created->body)["metadata"]["resourceVersion"] == "1");
  auto again = c.Post(kGwPath, kGateway, "application/json");
  CHECK(again->status == 409);
  CHECK(json::parse(again->body)["reason"] == "Conflict");
  auto got = c.Get(std::string(kGwPath) + "/gw");
  REQUIRE(got->status == 200);
  CHECK(json::parse(got->body)["spec"]["servers"][0]["port"]["number"] == 80);
}

TEST_CASE("PUT creates or replaces, and a stale resourceVersion is a 409") {
  Server s;
  auto c = s.Client();
  std::string path = std::string(kGwPath) + "/gw";
  CHECK(c.Put(path, kGateway, "application/json")->status == 201);
  CHECK(c.Put(path, kGateway, "application/json")->status == 200);
  json stale = json::parse(kGateway);
  stale["metadata"]["resourceVersion"] = "1";
  stale["spec"]["servers"][0]["port"]["number"] = 81;
  auto res = c.Put(path, stale.dump(), "application/json");
  CHECK(res->status == 409);
  stale["metadata"]["resourceVersion"] = "2";
  CHECK(c.Put(path, stale.dump(), "application/json")->status == 200);
}

TEST_CASE("DELETE of a missing resource is 404, of a present one 200") {
  Server s;
  auto c = s.Client();
  std::string path = std::string(kGwPath) + "/gw";
  CHECK(c.Delete(path)->status == 404);
  REQUIRE(c.Post(kGwPath, kGateway, "application/json")->status == 201);
  CHECK(c.Delete(path)->status == 200);
  CHECK(c.Get(path)->status == 404);
}

TEST_CASE("Unknown kinds, versions and routes are 404") {
  Server s;
  auto c = s.Client();
  CHECK(c.Get("/apis/networking.istio.io/v1alpha3/namespaces/voting/sidecars")->status == 404);
  CHECK(c.Get("/apis/networking.istio.io/v9/namespaces/voting/gateways")->status == 404);
  CHECK(c.Get("/nothing/here")->status == 404);
}

TEST_CASE("A body over the limit is refused with 413 and nothing is written") {
  Server s(1024);
  auto c = s.Client();
  std::string big = std::string(2048, '#') + "\n" + kGateway;
  auto res = c.Post("/apply", big, "application/yaml");
  REQUIRE(res);
  CHECK(res->status == 413);
  CHECK(s.f.store->Revision() == 0);
}

TEST_CASE("Invalid documents are a 400 listing each error as a cause") {
  Server s;
  auto c = s.Client();
  std::string bad =
      "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 0}, {port: 1}]}\n";
  auto res = c.Post("/apply?namespace=voting", bad, "application/yaml");
  REQUIRE(res->status == 400);
  json status = json::parse(res->body);
  CHECK(status["reason"] == "Invalid");
  CHECK(status["details"]["causes"].size() == 3);
}

TEST_CASE("Apply answers kubectl-style text when asked for text/plain") {
  Server s;
  auto c = s.Client();
  httplib::Headers h = {{"Accept", "text/plain"}};
  auto res = c.Post("/apply?namespace=voting", h, kGateway, "application/json");
  REQUIRE(res->status == 200);
  CHECK(res->body == "gateway.networking.istio.io/gw created\n");
  auto json_res = c.Post("/apply?namespace=voting", kGateway, "application/json");
  json answer = json::parse(json_res->body);
  CHECK(answer["items"][0]["action"] == "unchanged");
  CHECK(answer["items"][0]["resourceVersion"] == "1");
  auto del = c.Delete("/apply?namespace=voting", h, kGateway, "application/json");
  CHECK(del->body == "gateway.networking.istio.io/gw deleted\n");
}

TEST_CASE("Core Services are served under /api/v1") {
  Server s;
  auto c = s.Client();
  std::string svc =
      R"({"apiVersion":"v1","kind":"Service","metadata":{"name":"web"},"spec":{"ports":[{"port":80}]}})";
  CHECK(c.Post("/api/v1/namespaces/voting/services", svc, "application/json")->status == 201);
  CHECK(c.Get("/api/v1/namespaces/voting/services/web")->status == 200);
  CHECK(json::parse(c.Get("/api/v1/services")->body)["items"].size() == 1);
}

TEST_CASE("A watch streams newline-delimited events from a resourceVersion") {
  Server s;
  auto c = s.Client();
  REQUIRE(c.Post(kGwPath, kGateway, "application/json")->status == 201);
  json second = json::parse(kGateway);
  second["metadata"]["name"] = "gw2";
  REQUIRE(c.Post(kGwPath, second.dump(), "application/json")->status == 201);
  std::string body;
  auto res = c.Get(std::string(kGwPath) + "?watch=true&resourceVersion=1&timeoutSeconds=1",
                   [&](const char* data, size_t len) {
                     body.append(data, len);
                     return true;
                   });
  REQUIRE(res);
  CHECK(res->status == 200);
  std::vector<std::string> lines = absl::StrSplit(body, '\n', absl::SkipEmpty());
  REQUIRE(lines.size() == 1);
  json event = json::parse(lines[0]);
  CHECK(event["type"] == "ADDED");
  CHECK(event["object"]["metadata"]["name"] == "gw2");
}

TEST_CASE("Watches beyond the limit are refused with 429, and a slot frees when a watch ends") {
  Server s(4 << 20, 1);
  REQUIRE(s.Client().Post(kGwPath, kGateway, "application/json")->status == 201);
  std::atomic<bool> first_open{false};
  std::thread first([&] {
    auto c = s.Client();
    // With no resourceVersion the watch starts with an ADDED event, which tells us it is open.
    c.Get(std::string(kGwPath) + "?watch=true&timeoutSeconds=2", [&](const char*, size_t) {
      first_open = true;
      return true;
    });
  });
  REQUIRE(mesh::testing::WaitFor([&] { return first_open.load(); }, std::chrono::seconds(5)));
  auto second = s.Client().Get(std::string(kGwPath) + "?watch=true&timeoutSeconds=1");
  REQUIRE(second);
  CHECK(second->status == 429);
  first.join();
  auto after = s.Client().Get(std::string(kGwPath) + "?watch=true&timeoutSeconds=1");
  REQUIRE(after);
  CHECK(after->status == 200);
}

TEST_CASE("/metrics is Prometheus text and counts refused requests") {
  Server s;
  auto anon = s.Client(false);
  anon.Get(kGwPath);
  auto res = s.Client().Get("/metrics");
  REQUIRE(res->status == 200);
  CHECK(absl::StrContains(res->body, "meshpilot_rest_unauthorized_total 1\n"));
}

}  // namespace
}  // namespace mesh::api

namespace mesh::api {
namespace {

// A raw connection to 127.0.0.1:port; -1 if it could not connect.
int Connect(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

TEST_CASE("Two hundred slow clients do not delay anyone else's request") {
  Server s;
  REQUIRE(s.Client().Post("/apply?namespace=voting", kGateway, "application/json")->status == 200);
  std::vector<int> slow;
  for (int i = 0; i < 200; ++i) {
    int fd = Connect(s.port);
    REQUIRE(fd >= 0);
    std::string start = "GET /healthz HTTP/1.1\r\nHost: x\r\n";
    REQUIRE(::send(fd, start.data(), start.size(), MSG_NOSIGNAL) == ssize_t(start.size()));
    slow.push_back(fd);
  }
  // The slow ones trickle a byte now and then; authenticated requests keep being answered fast.
  std::vector<double> ms;
  auto client = s.Client();
  client.set_keep_alive(true);
  for (int round = 0; round < 30; ++round) {
    for (int fd : slow) ::send(fd, "X", 1, MSG_NOSIGNAL);
    auto start = std::chrono::steady_clock::now();
    auto res = round % 2 ? s.Client().Get(kGwPath) : client.Get(kGwPath);
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
                     .count());
    REQUIRE(res);
    CHECK(res->status == 200);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::sort(ms.begin(), ms.end());
  INFO("median " << ms[ms.size() / 2] << " ms, max " << ms.back() << " ms");
  CHECK(ms.back() < 100);
  CHECK(s.rest->open_connections() >= 200);
  for (int fd : slow) ::close(fd);
}

TEST_CASE("A watch whose client never reads is cut off with a 410 event, not buffered forever") {
  RestOptions options;
  options.max_watch_bytes = 256 << 10;
  Server s(4 << 20, 16, options);
  int fd = Connect(s.port);
  REQUIRE(fd >= 0);
  std::string watch = absl::StrCat("GET ", kGwPath, "?watch=true HTTP/1.1\r\nHost: x\r\n",
                                   "Authorization: Bearer ", kToken, "\r\n\r\n");
  REQUIRE(::send(fd, watch.data(), watch.size(), MSG_NOSIGNAL) == ssize_t(watch.size()));
  // 12 MiB of events, far more than the kernel's socket buffers and the watch's 256 KiB.
  const std::string pad(96 << 10, 'a');
  auto client = s.Client();
  for (int i = 0; i < 128; ++i) {
    json gw = json::parse(kGateway);
    gw["metadata"]["annotations"] = {{"pad", pad + std::to_string(i)}};
    REQUIRE(client.Post("/apply?namespace=voting", gw.dump(), "application/json")->status == 200);
  }
  // Now read it all: events, the 410, and the end of the stream.
  std::string got;
  char buf[65536];
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) got.append(buf, n);
  ::close(fd);
  CHECK(absl::StrContains(got, R"("reason":"Expired")"));
  CHECK(absl::StrContains(got, R"("type":"ERROR")"));
  CHECK(got.size() < (12u << 20));
  CHECK(absl::EndsWith(got, "0\r\n\r\n"));  // the chunked stream ended properly
}

TEST_CASE("Any content type carries a YAML body up to the body limit, and PATCH is 405") {
  Server s;
  std::string yaml =
      "apiVersion: v1\nkind: Service\nmetadata:\n  name: big\n  annotations:\n"
      "    pad: " +
      std::string(20000, 'p') + "\nspec: {ports: [{port: 80}]}\n";
  auto res = s.Client().Post("/apply?namespace=voting", yaml, "application/x-www-form-urlencoded");
  REQUIRE(res);
  CHECK(res->status == 200);
  auto patch = s.Client().Patch(std::string(kGwPath) + "/gw", "{}", "application/merge-patch+json");
  REQUIRE(patch);
  CHECK(patch->status == 405);
  CHECK(json::parse(patch->body)["reason"] == "MethodNotAllowed");
}

}  // namespace
}  // namespace mesh::api
