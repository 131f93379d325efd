// mesh-demo-app: the small HTTP workload the examples and tests run behind meshproxy sidecars.
//
//   --mode pong              answers /, /ping and /version with its name and version; /echo
//                            shows the request as received; /call/HOST:PORT/PATH calls another
//                            service through the sidecar (--proxy) and returns its answer.
//   --mode voting-app        the voting app's front end: renders the results line the tutorial's
//                            curl loops grep for, from voting-analytics; POST / casts a vote.
//   Calls to other services carry the request id and trace headers of the request being served
//   (B3, W3C traceparent/tracestate, baggage), as Istio asks of apps.
//   Any mode: --fail-status N answers every request with N, --delay D (or ?delay_ms=N) waits
//   before answering, and /seen counts the requests served.
//   --mode tcp-echo          a TCP server: reads to the client's half-close, answers
//                            "NAME VERSION: <what it read>", closes.
//   --mode grpc              the meshpilot.testing.v1.Echo gRPC service over h2c, in all four
//                            RPC shapes; --grpc-fail N ends every call with status N.
//   --mode ws-echo           WebSocket echo: each message back as "NAME VERSION: <message>";
//                            plain HTTP requests get "NAME VERSION".
//   --mode voting-analytics  counts votes and renders them: "Cats: 2 | Dogs: 4" in 1.0, and
//                            "Cats: 2/6 (33%) | Dogs: 4/6 (67%)" from 1.1 on.
#include <arpa/inet.h>
#include <hiredis.h>
#include <httplib.h>
#include <mysql.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/flags.h"
#include "examples/app/grpc_echo.h"
#include "examples/app/ws_echo.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:9081", "where the app serves (IP:PORT)");
ABSL_FLAG(std::string, name, "mesh-demo-app", "service name it reports");
ABSL_FLAG(std::string, version, "1.0", "version it reports");
ABSL_FLAG(std::string, mode, "pong",
          "pong, voting-app, voting-analytics, tcp-echo, ws-echo or grpc");
ABSL_FLAG(std::string, proxy, "127.0.0.1:15001", "its sidecar's outbound listener (IP:PORT)");
ABSL_FLAG(std::string, storage, "memory",
          "where votes are kept: memory, redis or mysql (the latter two through the sidecar, at "
          "its IP and --storage-port)");
ABSL_FLAG(int, storage_port, 0,
          "the storage service's port (default 6379 for redis, 3306 for mysql)");
ABSL_FLAG(int, fail_status, 0,
          "answer every request but /seen with this status (a broken instance, for tests)");
ABSL_FLAG(absl::Duration, delay, absl::ZeroDuration(), "wait this long before every answer");
ABSL_FLAG(int, grpc_fail, 0, "--mode grpc: end every call with this gRPC status code instead");
ABSL_FLAG(std::string, analytics, "voting-analytics:8080",
          "voting-app: the analytics service, as a Host through the sidecar");

namespace {

httplib::Server* g_server = nullptr;

bool SplitHostPort(const std::string& s, std::string* host, int* port) {
  size_t colon = s.rfind(':');
  if (colon == std::string::npos) return false;
  *host = s.substr(0, colon);
  return absl::SimpleAtoi(s.substr(colon + 1), port) && *port > 0 && *port < 65536;
}

// Calls `service` ("host:port") at `path` through the sidecar, with the service as Host.
httplib::Result CallThroughSidecar(const std::string& method, const std::string& service,
                                   const std::string& path, const std::string& body = "",
                                   const httplib::Headers& extra = {}) {
  std::string host;
  int port = 0;
  SplitHostPort(absl::GetFlag(FLAGS_proxy), &host, &port);
  httplib::Client client(host, port);
  client.set_connection_timeout(2);
  client.set_read_timeout(10);
  httplib::Headers headers = extra;
  headers.emplace("Host", service);
  if (method == "POST") {
    return client.Post(path.c_str(), headers, body, "application/x-www-form-urlencoded");
  }
  return client.Get(path.c_str(), headers);
}

// The headers a well-behaved app copies from the request it serves onto the calls it makes, so
// the mesh's traces span every hop (Istio's list: the request id, B3, W3C trace context and
// baggage, OpenTracing and Cloud Trace contexts), plus what this app's routing tests use.
httplib::Headers Propagated(const httplib::Request& req) {
  static const char* const kNames[] = {"x-request-id",
                                       "x-b3-traceid",
                                       "x-b3-spanid",
                                       "x-b3-parentspanid",
                                       "x-b3-sampled",
                                       "x-b3-flags",
                                       "b3",
                                       "traceparent",
                                       "tracestate",
                                       "baggage",
                                       "x-ot-span-context",
                                       "x-cloud-trace-context",
                                       "grpc-trace-bin",
                                       "end-user",
                                       "cookie"};
  httplib::Headers out;
  for (const char* name : kNames) {
    if (req.has_header(name)) out.emplace(name, req.get_header_value(name));
  }
  return out;
}

void Stamp(httplib::Response& res) {
  res.set_header("x-app-name", absl::GetFlag(FLAGS_name));
  res.set_header("x-app-version", absl::GetFlag(FLAGS_version));
}

void ServePong(httplib::Server& server) {
  const std::string who =
      absl::StrCat(absl::GetFlag(FLAGS_name), " ", absl::GetFlag(FLAGS_version));
  server.Get("/", [who](const httplib::Request&, httplib::Response& res) {
    res.set_content(who + "\n", "text/plain");
  });
  server.Get("/ping", [who](const httplib::Request&, httplib::Response& res) {
    res.set_content("pong from " + who + "\n", "text/plain");
  });
  server.Get("/version", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(absl::GetFlag(FLAGS_version) + "\n", "text/plain");
  });
  auto echo = [who](const httplib::Request& req, httplib::Response& res) {
    std::string out = absl::StrCat("app: ", who, "\nmethod: ", req.method, "\npath: ", req.target,
                                   "\nbody-bytes: ", req.body.size(), "\n");
    for (const auto& [k, v] : req.headers) absl::StrAppend(&out, "header: ", k, ": ", v, "\n");
    res.set_content(out, "text/plain");
  };
  server.Get(R"(/echo.*)", echo);
  // /bytes/N: N bytes of body (large responses through the mesh).
  server.Get(R"(/bytes/(\d+))", [](const httplib::Request& req, httplib::Response& res) {
    size_t n = 0;
    if (!absl::SimpleAtoi(std::string(req.matches[1]), &n) || n > (256u << 20)) {
      res.status = 400;
      return;
    }
    res.set_content(std::string(n, 'x'), "application/octet-stream");
  });
  server.Post(R"(/echo.*)", echo);
  // /call/HOST:PORT/PATH: the request another service would make, through the sidecar.
  server.Get(R"(/call/([^/]+)(/.*)?)", [](const httplib::Request& req, httplib::Response& res) {
    std::string service = req.matches[1];
    std::string path = req.matches[2].length() ? std::string(req.matches[2]) : "/";
    httplib::Result r = CallThroughSidecar("GET", service, path, "", Propagated(req));
    if (!r) {
      res.status = 502;
      res.set_content(
          absl::StrCat("call to ", service, " failed: ", httplib::to_string(r.error()), "\n"),
          "text/plain");
      return;
    }
    res.status = r->status;
    res.set_content(r->body, "text/plain");
  });
}

// Vote counts: in memory, or in the voting app's storage reached through the sidecar's
// per-port outbound TCP listener (its IP, the storage service's port): Redis for 1.0, MySQL
// (MariaDB) for 2.0, as in the tutorial. A connection per operation, so a storage or mesh restart
// costs one failed request at most.
class VoteStore {
 public:
  virtual ~VoteStore() = default;
  virtual absl::Status Add(const std::string& choice) = 0;
  virtual absl::StatusOr<std::map<std::string, int64_t>> Read() = 0;
};

class MemoryVotes : public VoteStore {
 public:
  absl::Status Add(const std::string& choice) override {
    std::lock_guard lock(mu_);
    ++votes_[choice];
    return absl::OkStatus();
  }
  absl::StatusOr<std::map<std::string, int64_t>> Read() override {
    std::lock_guard lock(mu_);
    return votes_;
  }

 private:
  std::mutex mu_;
  std::map<std::string, int64_t> votes_ = {{"Cats", 0}, {"Dogs", 0}};
};

class RedisVotes : public VoteStore {
 public:
  RedisVotes(std::string host, int port) : host_(std::move(host)), port_(port) {}
  absl::Status Add(const std::string& choice) override {
    return Run([&](redisContext* c) -> absl::Status {
      auto* reply = static_cast<redisReply*>(redisCommand(c, "INCR votes:%s", choice.c_str()));
      absl::Status s = reply && reply->type == REDIS_REPLY_INTEGER
                           ? absl::OkStatus()
                           : absl::UnavailableError("redis INCR failed");
      if (reply) freeReplyObject(reply);
      return s;
    });
  }
  absl::StatusOr<std::map<std::string, int64_t>> Read() override {
    std::map<std::string, int64_t> out = {{"Cats", 0}, {"Dogs", 0}};
    absl::Status s = Run([&](redisContext* c) -> absl::Status {
      auto* reply = static_cast<redisReply*>(redisCommand(c, "MGET votes:Cats votes:Dogs"));
      if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
        if (reply) freeReplyObject(reply);
        return absl::UnavailableError("redis MGET failed");
      }
      int64_t n = 0;
      if (reply->element[0]->type == REDIS_REPLY_STRING &&
          absl::SimpleAtoi(reply->element[0]->str, &n))
        out["Cats"] = n;
      if (reply->element[1]->type == REDIS_REPLY_STRING &&
          absl::SimpleAtoi(reply->element[1]->str, &n))
        out["Dogs"] = n;
      freeReplyObject(reply);
      return absl::OkStatus();
    });
    if (!s.ok()) return s;
    return out;
  }

 private:
  template <class F>
  absl::Status Run(F f) {
    timeval timeout{2, 0};
    redisContext* c = redisConnectWithTimeout(host_.c_str(), port_, timeout);
    if (!c || c->err) {
      absl::Status s = absl::UnavailableError(
          absl::StrCat("redis at ", host_, ":", port_, ": ", c ? c->errstr : "no memory"));
      if (c) redisFree(c);
      return s;
    }
    redisSetTimeout(c, timeout);
    absl::Status s = f(c);
    redisFree(c);
    return s;
  }
  const std::string host_;
  const int port_;
};

class MysqlVotes : public VoteStore {
 public:
  MysqlVotes(std::string host, int port) : host_(std::move(host)), port_(port) {}
  absl::Status Add(const std::string& choice) override {
    return Run({"INSERT INTO azurevote.votes (choice, count) VALUES ('" + choice +
                "', 1) ON DUPLICATE KEY UPDATE count = count + 1"},
               nullptr);
  }
  absl::StatusOr<std::map<std::string, int64_t>> Read() override {
    std::map<std::string, int64_t> out = {{"Cats", 0}, {"Dogs", 0}};
    absl::Status s = Run({"SELECT choice, count FROM azurevote.votes"}, &out);
    if (!s.ok()) return s;
    return out;
  }

 private:
  absl::Status Run(const std::vector<std::string>& statements,
                   std::map<std::string, int64_t>* rows) {
    MYSQL* db = mysql_init(nullptr);
    unsigned int timeout = 2;
    mysql_options(db, MYSQL_OPT_CONNECT_TIMEOUT, &timeout);
    mysql_options(db, MYSQL_OPT_READ_TIMEOUT, &timeout);
    absl::Status s;
    if (!mysql_real_connect(db, host_.c_str(), "root", "", nullptr, port_, nullptr, 0)) {
      s = absl::UnavailableError(
          absl::StrCat("mysql at ", host_, ":", port_, ": ", mysql_error(db)));
    }
    std::vector<std::string> all = {
        "CREATE DATABASE IF NOT EXISTS azurevote",
        "CREATE TABLE IF NOT EXISTS azurevote.votes (choice VARCHAR(16) PRIMARY KEY, "
        "count BIGINT NOT NULL)"};
    all.insert(all.end(), statements.begin(), statements.end());
    for (size_t i = 0; s.ok() && i < all.size(); ++i) {
      if (mysql_query(db, all[i].c_str()) != 0) {
        s = absl::UnavailableError(absl::StrCat("mysql: ", mysql_error(db)));
        break;
      }
      MYSQL_RES* result = mysql_store_result(db);
      if (!result) continue;
      MYSQL_ROW row;
      while (rows && (row = mysql_fetch_row(result))) {
        int64_t n = 0;
        if (row[0] && row[1] && absl::SimpleAtoi(row[1], &n)) (*rows)[row[0]] = n;
      }
      mysql_free_result(result);
    }
    mysql_close(db);
    return s;
  }
  const std::string host_;
  const int port_;
};

// The store --storage names: memory, redis or mysql, at the sidecar's IP and --storage-port.
std::unique_ptr<VoteStore> MakeVoteStore() {
  const std::string kind = absl::GetFlag(FLAGS_storage);
  std::string host;
  int proxy_port = 0;
  SplitHostPort(absl::GetFlag(FLAGS_proxy), &host, &proxy_port);
  int port = absl::GetFlag(FLAGS_storage_port);
  if (kind == "redis") return std::make_unique<RedisVotes>(host, port ? port : 6379);
  if (kind == "mysql") return std::make_unique<MysqlVotes>(host, port ? port : 3306);
  return std::make_unique<MemoryVotes>();
}

VoteStore& Votes() {
  static std::unique_ptr<VoteStore> store = MakeVoteStore();
  return *store;
}

bool ValidChoice(const std::string& choice) {
  return choice == "Cats" || choice == "Dogs";
}

// voting-analytics: votes (when the front end has no storage of its own), and the results line
// in the form of its version.
void ServeAnalytics(httplib::Server& server) {
  server.Post("/vote", [](const httplib::Request& req, httplib::Response& res) {
    std::string choice = req.get_param_value("vote");
    absl::Status s = ValidChoice(choice) ? Votes().Add(choice)
                                         : absl::InvalidArgumentError("vote must be Cats or Dogs");
    res.status = s.ok() ? 200 : absl::IsInvalidArgument(s) ? 400 : 503;
    res.set_content(s.ok() ? "ok\n" : std::string(s.message()) + "\n", "text/plain");
  });
  server.Get("/results", [](const httplib::Request&, httplib::Response& res) {
    absl::StatusOr<std::map<std::string, int64_t>> votes = Votes().Read();
    if (!votes.ok()) {
      res.status = 503;
      res.set_content(std::string(votes.status().message()), "text/plain");
      return;
    }
    int64_t cats = (*votes)["Cats"], dogs = (*votes)["Dogs"], total = cats + dogs;
    std::string line;
    if (absl::GetFlag(FLAGS_version) == "1.0") {
      line = absl::StrCat("Cats: ", cats, " | Dogs: ", dogs);
    } else {
      auto pct = [&](int64_t n) { return total ? (n * 100 + total / 2) / total : 0; };
      line = absl::StrCat("Cats: ", cats, "/", total, " (", pct(cats), "%) | Dogs: ", dogs, "/",
                          total, " (", pct(dogs), "%)");
    }
    res.set_content(line, "text/plain");
  });
}

// voting-app: the page, its results line from analytics, and votes passed on to analytics.
void ServeVotingApp(httplib::Server& server) {
  auto page = [](const httplib::Request& req, httplib::Response& res) {
    httplib::Result r =
        CallThroughSidecar("GET", absl::GetFlag(FLAGS_analytics), "/results", "", Propagated(req));
    std::string results = r && r->status == 200 ? r->body : "results unavailable";
    std::string analytics = r ? absl::StrCat(r->get_header_value("x-app-name"), " ",
                                             r->get_header_value("x-app-version"))
                              : "none";
    res.set_content(
        absl::StrCat("<html>\n<head><title>Azure Voting App</title></head>\n<body>\n",
                     "<div id=\"version\">", absl::GetFlag(FLAGS_name), " ",
                     absl::GetFlag(FLAGS_version), "</div>\n",
                     "<form method=\"POST\"><button name=\"vote\" value=\"Cats\">Cats</button>"
                     "<button name=\"vote\" value=\"Dogs\">Dogs</button></form>\n",
                     "<div id=\"results\"> ", results, " </div>\n", "<div id=\"analytics\">",
                     analytics, "</div>\n</body>\n</html>\n"),
        "text/html");
  };
  server.Get("/", page);
  server.Post("/", [page](const httplib::Request& req, httplib::Response& res) {
    std::string choice = req.get_param_value("vote");
    if (!ValidChoice(choice)) {
      res.status = 400;
      res.set_content("vote must be Cats or Dogs\n", "text/plain");
      return;
    }
    if (absl::GetFlag(FLAGS_storage) != "memory") {
      // As in the tutorial, the front end writes the vote to its storage itself.
      if (absl::Status s = Votes().Add(choice); !s.ok()) {
        res.status = 503;
        res.set_content(std::string(s.message()) + "\n", "text/plain");
        return;
      }
    } else {
      httplib::Result r = CallThroughSidecar("POST", absl::GetFlag(FLAGS_analytics), "/vote",
                                             absl::StrCat("vote=", choice), Propagated(req));
      if (!r || r->status != 200) {
        res.status = r ? r->status : 502;
        res.set_content(r ? r->body : "analytics unreachable\n", "text/plain");
        return;
      }
    }
    page(req, res);
  });
}

// tcp-echo: reads a connection to its end (the client's half-close), then answers
// "NAME VERSION: <everything read>" and closes. A proxy that loses the half-close leaves the
// client waiting; one that loses bytes shows in the answer.
int ServeTcpEcho(const std::string& host, int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1 ||
      ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 64) != 0) {
    std::fprintf(stderr, "mesh-demo-app: cannot listen on %s:%d\n", host.c_str(), port);
    return 1;
  }
  std::fprintf(stderr, "mesh-demo-app: ready name=%s version=%s mode=tcp-echo listen=%s:%d\n",
               absl::GetFlag(FLAGS_name).c_str(), absl::GetFlag(FLAGS_version).c_str(),
               host.c_str(), port);
  const std::string prefix =
      absl::StrCat(absl::GetFlag(FLAGS_name), " ", absl::GetFlag(FLAGS_version), ": ");
  for (;;) {
    int c = ::accept(fd, nullptr, nullptr);
    if (c < 0) continue;
    std::thread([c, prefix] {
      std::string data;
      char buf[4096];
      ssize_t n;
      while ((n = ::recv(c, buf, sizeof buf, 0)) > 0) data.append(buf, n);
      std::string answer = prefix + data;
      ::send(c, answer.data(), answer.size(), MSG_NOSIGNAL);
      ::close(c);
    }).detach();
  }
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("mesh-demo-app: the examples' HTTP workload (see --mode).");
  mesh::flags::ParseCommandLine(argc, argv);
  std::string host;
  int port = 0;
  if (!SplitHostPort(absl::GetFlag(FLAGS_listen), &host, &port)) {
    std::fprintf(stderr, "mesh-demo-app: --listen %s: want IP:PORT\n",
                 absl::GetFlag(FLAGS_listen).c_str());
    return 2;
  }
  httplib::Server server;
  server.set_tcp_nodelay(true);
  // A keep-alive connection holds a worker until it closes: enough workers for a proxy's pool
  // of connections under load (cpp-httplib's default is 8).
  server.new_task_queue = [] { return new httplib::ThreadPool(128); };
  server.set_post_routing_handler(
      [](const httplib::Request&, httplib::Response& res) { Stamp(res); });
  // Every request but /seen is counted; /seen answers the count (mirroring and balancing tests).
  static std::atomic<int64_t> seen{0};
  server.Get("/seen", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(std::to_string(seen.load()) + "\n", "text/plain");
  });
  server.set_pre_routing_handler([](const httplib::Request& req, httplib::Response& res) {
    if (req.path == "/seen") return httplib::Server::HandlerResponse::Unhandled;
    ++seen;
    absl::Duration delay = absl::GetFlag(FLAGS_delay);
    if (req.has_param("delay_ms")) {
      int64_t ms = 0;
      if (absl::SimpleAtoi(req.get_param_value("delay_ms"), &ms)) delay = absl::Milliseconds(ms);
    }
    if (delay > absl::ZeroDuration()) absl::SleepFor(delay);
    if (int status = absl::GetFlag(FLAGS_fail_status); status > 0) {
      res.status = status;
      res.set_content(absl::StrCat(absl::GetFlag(FLAGS_name), " ", absl::GetFlag(FLAGS_version),
                                   " failing with ", status, "\n"),
                      "text/plain");
      Stamp(res);
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  const std::string mode = absl::GetFlag(FLAGS_mode);
  if (mode == "pong") {
    ServePong(server);
  } else if (mode == "voting-app") {
    ServeVotingApp(server);
    ServePong(server);
  } else if (mode == "voting-analytics") {
    ServeAnalytics(server);
    ServePong(server);
  } else if (mode == "tcp-echo") {
    return ServeTcpEcho(host, port);
  } else if (mode == "ws-echo") {
    return mesh::demo::ServeWebSocketEcho(absl::GetFlag(FLAGS_listen), absl::GetFlag(FLAGS_name),
                                          absl::GetFlag(FLAGS_version));
  } else if (mode == "grpc") {
    return mesh::demo::ServeGrpcEcho({absl::GetFlag(FLAGS_listen), absl::GetFlag(FLAGS_name),
                                      absl::GetFlag(FLAGS_version),
                                      absl::GetFlag(FLAGS_grpc_fail)});
  } else {
    std::fprintf(stderr,
                 "mesh-demo-app: --mode %s: want pong, voting-app, voting-analytics, tcp-echo, "
                 "ws-echo or grpc\n",
                 mode.c_str());
    return 2;
  }
  g_server = &server;
  std::signal(SIGTERM, [](int) { g_server->stop(); });
  std::signal(SIGINT, [](int) { g_server->stop(); });
  if (!server.bind_to_port(host.c_str(), port)) {
    std::fprintf(stderr, "mesh-demo-app: cannot listen on %s\n",
                 absl::GetFlag(FLAGS_listen).c_str());
    return 1;
  }
  std::fprintf(stderr, "mesh-demo-app: ready name=%s version=%s mode=%s listen=%s\n",
               absl::GetFlag(FLAGS_name).c_str(), absl::GetFlag(FLAGS_version).c_str(),
               mode.c_str(), absl::GetFlag(FLAGS_listen).c_str());
  server.listen_after_bind();
  return 0;
}
