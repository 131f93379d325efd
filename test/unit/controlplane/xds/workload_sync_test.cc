#include "controlplane/xds/workload_sync.h"

#include <catch2/catch.hpp>

namespace mesh::xds {
namespace {

TEST_CASE("A published workload is read back only when it could be an endpoint, never throwing") {
  auto w = DecodeWorkload(
      R"({"name":"web-1","since":5,"healthy":true,"namespace":"default","address":"127.0.1.5",)"
      R"("labels":{"app":"web"},"serviceAccount":"web","inboundPorts":{"8080":18080}})");
  REQUIRE(w);
  CHECK(w->name == "web-1");
  CHECK(w->healthy);
  CHECK(w->inbound_ports == std::map<uint32_t, uint32_t>{{8080, 18080}});
  for (const char* bad : {
           R"({"address":"127.0.0.1","inboundPorts":{"8080":0}})",
           R"({"address":"127.0.0.1","inboundPorts":{"8080":70000}})",
           R"({"address":"127.0.0.1","inboundPorts":{"http":8080}})",
           R"({"address":"127.0.0.1","inboundPorts":{"8080":"8080"}})",
           R"({"address":"web.example","inboundPorts":{"8080":8080}})",
           R"({"address":""})",
           R"([1,2])",
           "not json",
       }) {
    INFO(bad);
    CHECK_FALSE(DecodeWorkload(bad));
  }
  // Fields of the wrong type are ignored, not thrown on.
  auto odd = DecodeWorkload(R"({"address":"::1","since":"yesterday","healthy":"yes","name":7})");
  REQUIRE(odd);
  CHECK(odd->since_unix_ms == 0);
  CHECK_FALSE(odd->healthy);
  CHECK(odd->name.empty());
}

}  // namespace
}  // namespace mesh::xds
