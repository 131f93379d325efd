// meshctl: the operator CLI for meshpilot's REST API.
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/yaml_json.h"
#include "controlplane/cli/client.h"
#include "controlplane/cli/printer.h"
#include "controlplane/model/kinds.h"
#include "nlohmann/json.hpp"

#ifndef MESHPILOT_VERSION
#define MESHPILOT_VERSION "dev"
#endif

namespace {

using nlohmann::json;

constexpr char kUsage[] = R"(meshctl: operate meshpilot over its REST API.

Usage:
  meshctl apply  -f FILE|DIR|- [-f ...] [-n NAMESPACE]
  meshctl delete -f FILE|DIR|- [-f ...] [-n NAMESPACE]
  meshctl get KIND [NAME] [-n NAMESPACE | -A] [-o yaml|json|wide]
  meshctl analyze [-n NAMESPACE | -A]
  meshctl proxy-status
  meshctl tls-check [SERVICE] [--proxy ID]
                     mutual TLS per service port: server and client modes, the deciding
                     policy and rule, OK or CONFLICT; with --proxy, the client side is what
                     that connected proxy was sent
  meshctl token create -n NAMESPACE --service-account SA [--ttl 24h]
                     a join token for a proxy of that identity (shown once)
  meshctl version

Kinds: gateway (gw), virtualservice (vs), destinationrule (dr), serviceentry (se),
workloadentry (we), policy, peerauthentication (pa), service (svc).

Connection (flag, else environment, else default):
  --server ADDR      MESHPILOT_ADDR   127.0.0.1:15080
  --token TOKEN      MESHPILOT_TOKEN  contents of --token-file
  --token-file PATH                   <data-dir>/admin.token
  --data-dir DIR     MESHPILOT_DATA_DIR  ./meshpilot-data
)";

struct Options {
  std::string command;
  std::vector<std::string> args;
  std::vector<std::string> files;
  std::string ns;
  bool all_namespaces = false;
  std::string output;
  std::string service_account, ttl, proxy;
  std::string server, token, token_file, data_dir;
};

int Usage(const std::string& error) {
  if (!error.empty()) std::cerr << "meshctl: " << error << "\n\n";
  std::cerr << kUsage;
  return 2;
}

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

// Parses flags anywhere on the line; returns an error message or "".
std::string Parse(int argc, char** argv, Options* o) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    std::string value;
    auto take = [&](const char* name) -> bool {
      std::string flag = name;
      if (a == flag) {
        if (i + 1 >= argc) return false;
        value = argv[++i];
        return true;
      }
      if (absl::StartsWith(a, flag + "=")) {
        value = a.substr(flag.size() + 1);
        return true;
      }
      return false;
    };
    if (take("-f") || take("--filename"))
      o->files.push_back(value);
    else if (take("-n") || take("--namespace"))
      o->ns = value;
    else if (take("-o") || take("--output"))
      o->output = value;
    else if (take("--service-account"))
      o->service_account = value;
    else if (take("--ttl"))
      o->ttl = value;
    else if (take("--proxy"))
      o->proxy = value;
    else if (take("--server") || take("-s"))
      o->server = value;
    else if (take("--token"))
      o->token = value;
    else if (take("--token-file"))
      o->token_file = value;
    else if (take("--data-dir"))
      o->data_dir = value;
    else if (a == "-A" || a == "--all-namespaces")
      o->all_namespaces = true;
    else if (a == "-h" || a == "--help")
      o->command = "help";
    else if (absl::StartsWith(a, "-") && a != "-")
      return absl::StrCat("unknown flag ", a);
    else if (o->command.empty())
      o->command = a;
    else
      o->args.push_back(a);
  }
  return "";
}

absl::StatusOr<std::string> ReadInputs(const std::vector<std::string>& paths) {
  std::string all;
  auto add = [&](const std::string& text) {
    if (!all.empty()) all += "\n---\n";
    all += text;
  };
  for (const std::string& p : paths) {
    if (p == "-") {
      std::stringstream ss;
      ss << std::cin.rdbuf();
      add(ss.str());
      continue;
    }
    std::error_code ec;
    std::vector<std::filesystem::path> files;
    if (std::filesystem::is_directory(p, ec)) {
      for (const auto& e : std::filesystem::directory_iterator(p, ec)) {
        std::string ext = e.path().extension().string();
        if (e.is_regular_file() && (ext == ".yaml" || ext == ".yml" || ext == ".json"))
          files.push_back(e.path());
      }
      std::sort(files.begin(), files.end());
    } else if (std::filesystem::exists(p, ec)) {
      files.push_back(p);
    } else {
      return absl::NotFoundError(absl::StrCat("the path \"", p, "\" does not exist"));
    }
    for (const auto& f : files) {
      std::ifstream in(f);
      std::stringstream ss;
      ss << in.rdbuf();
      if (!in.good() && !in.eof())
        return absl::UnavailableError(absl::StrCat("cannot read ", f.string()));
      add(ss.str());
    }
  }
  return all;
}

std::string ResolveToken(const Options& o) {
  if (!o.token.empty()) return o.token;
  if (std::string t = Env("MESHPILOT_TOKEN"); !t.empty()) return t;
  std::string path = o.token_file;
  if (path.empty()) {
    std::string dir = !o.data_dir.empty() ? o.data_dir : Env("MESHPILOT_DATA_DIR");
    path = (dir.empty() ? std::string("./meshpilot-data") : dir) + "/admin.token";
  }
  std::ifstream in(path);
  std::string token;
  std::getline(in, token);
  return std::string(absl::StripAsciiWhitespace(token));
}

// Prints an answer's error and returns the exit code for it.
int Fail(const absl::StatusOr<mesh::cli::HttpAnswer>& answer) {
  if (!answer.ok()) {
    std::cerr << "Error: " << answer.status().message() << "\n";
    return 1;
  }
  std::cerr << "Error from server (" << answer->status << "): " << mesh::cli::ErrorMessage(*answer)
            << "\n";
  return 1;
}

int ApplyOrDelete(mesh::cli::ApiClient& client, const Options& o, bool remove) {
  if (o.files.empty()) return Usage("-f is required");
  absl::StatusOr<std::string> body = ReadInputs(o.files);
  if (!body.ok()) {
    std::cerr << "Error: " << body.status().message() << "\n";
    return 1;
  }
  std::string path = "/apply";
  if (!o.ns.empty()) path += "?namespace=" + o.ns;
  auto answer =
      client.Send(remove ? "DELETE" : "POST", path, *body, "application/yaml", "text/plain");
  if (!answer.ok() || answer->status != 200) return Fail(answer);
  std::cout << answer->body;
  return 0;
}

std::string CollectionPath(const mesh::model::KindInfo& kind, const std::string& ns) {
  std::string base = kind.group.empty()
                         ? absl::StrCat("/api/", kind.versions.front())
                         : absl::StrCat("/apis/", kind.group, "/", kind.versions.front());
  if (ns.empty()) return absl::StrCat(base, "/", kind.plural);
  return absl::StrCat(base, "/namespaces/", ns, "/", kind.plural);
}

int Get(mesh::cli::ApiClient& client, const Options& o) {
  if (o.args.empty()) return Usage("get needs a KIND");
  const mesh::model::KindInfo* kind = mesh::model::FindByAlias(o.args[0]);
  if (!kind) {
    std::cerr << "Error: the server does not have a resource type \"" << o.args[0] << "\"\n";
    return 1;
  }
  if (o.output != "" && o.output != "yaml" && o.output != "json" && o.output != "wide") {
    return Usage("-o must be yaml, json or wide");
  }
  std::string ns = o.all_namespaces ? "" : (o.ns.empty() ? "default" : o.ns);
  bool one = o.args.size() > 1;
  if (one && ns.empty())
    return Usage("a resource cannot be retrieved by name across all namespaces");
  std::string path = CollectionPath(*kind, ns) + (one ? "/" + o.args[1] : "");
  auto answer = client.Send("GET", path);
  if (!answer.ok() || answer->status != 200) return Fail(answer);
  json doc = json::parse(answer->body, nullptr, false);
  if (doc.is_discarded()) {
    std::cerr << "Error: the server answered with something that is not JSON\n";
    return 1;
  }
  if (o.output == "json") {
    std::cout << doc.dump(2) << "\n";
    return 0;
  }
  if (o.output == "yaml") {
    std::cout << mesh::JsonToYaml(doc);
    return 0;
  }
  std::vector<json> items;
  if (one)
    items.push_back(doc);
  else
    for (const json& i : doc["items"]) items.push_back(i);
  if (items.empty()) {
    std::cerr << (ns.empty() ? std::string("No resources found\n")
                             : absl::StrCat("No resources found in ", ns, " namespace.\n"));
    return 0;
  }
  std::cout << mesh::cli::FormatTable(*kind, items, o.all_namespaces, o.output == "wide",
                                      absl::Now());
  return 0;
}

int Analyze(mesh::cli::ApiClient& client, const Options& o) {
  std::string path = "/analyze";
  if (!o.all_namespaces && !o.ns.empty()) path += "?namespace=" + o.ns;
  auto answer = client.Send("GET", path, "", "", "text/plain");
  if (!answer.ok() || answer->status != 200) return Fail(answer);
  std::cout << answer->body;
  return 0;
}

int ProxyStatus(mesh::cli::ApiClient& client) {
  auto answer = client.Send("GET", "/debug/syncz");
  if (!answer.ok() || answer->status != 200) return Fail(answer);
  json syncz = json::parse(answer->body, nullptr, false);
  if (!syncz.is_array()) {
    std::cerr << "Error: the server answered with something that is not a list of proxies\n";
    return 1;
  }
  if (syncz.empty()) {
    std::cout << "No proxies connected.\n";
    return 0;
  }
  std::cout << mesh::cli::FormatProxyStatus(syncz);
  // Key sets that could not be fetched (an older meshpilot has no /debug/jwksz: nothing to say).
  auto jwksz = client.Send("GET", "/debug/jwksz");
  if (jwksz.ok() && jwksz->status == 200) {
    std::cout << mesh::cli::FormatJwksWarnings(syncz, json::parse(jwksz->body, nullptr, false),
                                               absl::Now());
  }
  return 0;
}

int TlsCheck(mesh::cli::ApiClient& client, const Options& o) {
  if (o.args.size() > 1) return Usage("tls-check takes at most one SERVICE");
  std::vector<std::string> query;
  if (!o.args.empty()) query.push_back("host=" + o.args[0]);
  if (!o.proxy.empty()) query.push_back("proxy=" + o.proxy);
  std::string path = "/debug/tls_check";
  if (!query.empty()) path += "?" + absl::StrJoin(query, "&");
  auto answer = client.Send("GET", path);
  if (!answer.ok() || answer->status != 200) return Fail(answer);
  json rows = json::parse(answer->body, nullptr, false);
  if (!rows.is_array()) {
    std::cerr << "Error: the server answered with something that is not a list\n";
    return 1;
  }
  if (rows.empty()) {
    std::cout << "No services match.\n";
    return 0;
  }
  std::cout << mesh::cli::FormatTlsCheck(rows);
  return 0;
}

int TokenCreate(mesh::cli::ApiClient& client, const Options& o) {
  if (o.args.size() != 1 || o.args[0] != "create") return Usage("token takes create");
  if (o.ns.empty() || o.service_account.empty())
    return Usage("token create needs -n NAMESPACE and --service-account SA");
  json body = {{"namespace", o.ns}, {"serviceAccount", o.service_account}};
  if (!o.ttl.empty()) body["ttl"] = o.ttl;
  auto answer = client.Send("POST", "/tokens", body.dump(), "application/json");
  if (!answer.ok() || answer->status != 200) return Fail(answer);
  json out = json::parse(answer->body, nullptr, false);
  if (!out.is_object() || !out["token"].is_string()) {
    std::cerr << "Error: the server answered without a token\n";
    return 1;
  }
  std::cout << out["token"].get<std::string>() << "\n";
  return 0;
}

int Version(mesh::cli::ApiClient& client) {
  std::cout << "client version: " << MESHPILOT_VERSION << "\n";
  auto answer = client.Send("GET", "/version");
  if (!answer.ok() || answer->status != 200) return Fail(answer);
  json v = json::parse(answer->body, nullptr, false);
  std::cout << "server version: " << (v.is_object() ? v.value("version", "?") : "?") << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (std::string err = Parse(argc, argv, &o); !err.empty()) return Usage(err);
  if (o.command.empty() || o.command == "help") {
    std::cout << kUsage;
    return o.command.empty() ? 2 : 0;
  }
  std::string server = !o.server.empty() ? o.server : Env("MESHPILOT_ADDR");
  if (server.empty()) server = "127.0.0.1:15080";
  mesh::cli::ApiClient client(server, ResolveToken(o));
  if (o.command == "apply") return ApplyOrDelete(client, o, false);
  if (o.command == "delete") return ApplyOrDelete(client, o, true);
  if (o.command == "get") return Get(client, o);
  if (o.command == "analyze") return Analyze(client, o);
  if (o.command == "version") return Version(client);
  if (o.command == "proxy-status") return ProxyStatus(client);
  if (o.command == "token") return TokenCreate(client, o);
  if (o.command == "tls-check") return TlsCheck(client, o);
  return Usage(absl::StrCat("unknown command \"", o.command, "\""));
}
