#include "controlplane/xds/node_metadata.h"

#include <catch2/catch.hpp>

namespace mesh::xds {
namespace {

envoy::config::core::v3::Node Node(std::map<std::string, std::string> meta,
                                   std::map<std::string, std::string> labels = {}) {
  envoy::config::core::v3::Node node;
  node.set_id("web-1");
  auto& fields = *node.mutable_metadata()->mutable_fields();
  for (const auto& [k, v] : meta) fields[k].set_string_value(v);
  if (!labels.empty()) {
    auto& l = *fields["LABELS"].mutable_struct_value()->mutable_fields();
    for (const auto& [k, v] : labels) l[k].set_string_value(v);
  }
  return node;
}

TEST_CASE("A sidecar's node metadata is read into its workload") {
  auto info = ParseNode(Node({{"ROLE", "sidecar"},
                              {"NAMESPACE", "voting"},
                              {"SERVICE_ACCOUNT", "voting-app"},
                              {"INSTANCE_IPS", "127.0.1.5,::1"},
                              {"INBOUND_PORTS", "8080=18081,9090=19090"},
                              {"APP_PORTS", "18081=9081"}},
                             {{"app", "voting-app"}, {"version", "1.0"}}));
  REQUIRE(info.ok());
  CHECK(info->registration_error.empty());
  CHECK(info->role == compiler::Role::kSidecar);
  registry::Workload w = info->ToWorkload();
  CHECK(w.name == "web-1");
  CHECK(w.ns == "voting");
  CHECK(w.service_account == "voting-app");
  CHECK(w.address == "127.0.1.5");
  CHECK(w.inbound_ports == std::map<uint32_t, uint32_t>{{8080, 18081}, {9090, 19090}});
  CHECK(w.labels.at("version") == "1.0");
  REQUIRE(info->inbound.size() == 2);
  CHECK(info->inbound[0].app_port == 9081);
  CHECK(info->inbound[1].app_port == 0);
}

TEST_CASE("Bad registration fields never make an endpoint, and say why") {
  auto reason = [](std::map<std::string, std::string> meta) {
    meta["ROLE"] = "sidecar";
    if (!meta.count("INSTANCE_IPS")) meta["INSTANCE_IPS"] = "127.0.0.1";
    auto info = ParseNode(Node(meta));
    REQUIRE(info.ok());
    if (!info->registration_error.empty()) {
      CHECK(info->inbound.empty());
      CHECK(info->ips.empty());
    }
    return info->registration_error;
  };
  CHECK(reason({{"INBOUND_PORTS", "8080=0"}}) ==
        "metadata.INBOUND_PORTS[0] \"8080=0\": ports must be between 1 and 65535");
  CHECK(reason({{"INBOUND_PORTS", "8080=70000"}}) ==
        "metadata.INBOUND_PORTS[0] \"8080=70000\": ports must be between 1 and 65535");
  CHECK(reason({{"INBOUND_PORTS", "8080=18080,8080=18081"}}) ==
        "metadata.INBOUND_PORTS[1] \"8080=18081\": port 8080 is listed twice");
  CHECK(reason({{"INBOUND_PORTS", "http=18080"}}) ==
        "metadata.INBOUND_PORTS[0] \"http=18080\": must be PORT=PORT");
  CHECK(reason({{"INBOUND_PORTS", "8080=-1"}}) ==
        "metadata.INBOUND_PORTS[0] \"8080=-1\": must be PORT=PORT");
  CHECK(reason({{"APP_PORTS", "18080=99999"}, {"INBOUND_PORTS", "8080=18080"}}) ==
        "metadata.APP_PORTS[0] \"18080=99999\": ports must be between 1 and 65535");
  CHECK(reason({{"INSTANCE_IPS", "pong.example"}, {"INBOUND_PORTS", "8080=18080"}}) ==
        "metadata.INSTANCE_IPS[0] \"pong.example\": not an IP address");
  CHECK(reason({{"INSTANCE_IPS", ""}, {"INBOUND_PORTS", "8080=18080"}}) ==
        "metadata.INSTANCE_IPS: required to be an endpoint");
  std::string many;
  for (int i = 1; i <= 65; ++i) many += std::to_string(i) + "=" + std::to_string(i) + ",";
  CHECK(reason({{"INBOUND_PORTS", many}}) == "metadata.INBOUND_PORTS: more than 64 entries");
  CHECK(reason({{"INBOUND_PORTS", "8080=18080"}}).empty());
}

TEST_CASE("Malformed identity metadata refuses the stream, naming every field") {
  auto error = [](envoy::config::core::v3::Node node) {
    auto info = ParseNode(node);
    REQUIRE_FALSE(info.ok());
    return std::string(info.status().message());
  };
  CHECK(error(Node({{"NAMESPACE", "Bad_NS"}, {"ROLE", "router"}})) ==
        "node web-1: metadata.ROLE: \"router\" is not gateway or sidecar; metadata.NAMESPACE: "
        "\"Bad_NS\" is not a DNS label");
  CHECK(error(Node({{"SERVICE_ACCOUNT", std::string(64, 'a')}})) ==
        "node web-1: metadata.SERVICE_ACCOUNT: \"" + std::string(64, 'a') +
            "\" is not a DNS label");
  CHECK(error(Node({}, {{"app", std::string(64, 'x')}})) ==
        "node web-1: metadata.LABELS.app: longer than 63 bytes");
  envoy::config::core::v3::Node no_id = Node({});
  no_id.clear_id();
  CHECK(error(no_id) == "node : id: required");
  envoy::config::core::v3::Node numeric = Node({});
  (*numeric.mutable_metadata()->mutable_fields())["NAMESPACE"].set_number_value(3);
  CHECK(error(numeric) == "node web-1: metadata.NAMESPACE: must be a string");
  // A proxyless gRPC client sends nothing and is a proxyless client in "default".
  auto bare = ParseNode(Node({}));
  REQUIRE(bare.ok());
  CHECK(bare->role == compiler::Role::kProxyless);
  CHECK(bare->ns == "default");
}

}  // namespace
}  // namespace mesh::xds
