#include "controlplane/model/names.h"

#include <catch2/catch.hpp>

namespace mesh::model {
namespace {

TEST_CASE("Host checks accept DNS names, short names and leading wildcards") {
  CHECK(CheckHost("reviews", false).empty());
  CHECK(CheckHost("reviews.default.svc.cluster.local", false).empty());
  CHECK(CheckHost("*.example.com", false).empty());
  CHECK(CheckHost("*", true).empty());
  CHECK(CheckHost("*", false) == "\"*\" is not allowed here");
  CHECK(!CheckHost("a..b", false).empty());
  CHECK(!CheckHost("foo.*.com", false).empty());
  CHECK(!CheckHost("-bad", false).empty());
  CHECK(!CheckHost("under_score", false).empty());
}

TEST_CASE("Label keys and values follow Kubernetes' syntax") {
  CHECK(CheckLabelKey("app").empty());
  CHECK(CheckLabelKey("istio.io/rev").empty());
  CHECK(!CheckLabelKey("-app").empty());
  CHECK(!CheckLabelKey("Bad_Prefix/app").empty());
  CHECK(CheckLabelValue("1.0").empty());
  CHECK(CheckLabelValue("").empty());
  CHECK(!CheckLabelValue("1.0 beta").empty());
  CHECK(!CheckLabelValue(std::string(64, 'a')).empty());
}

TEST_CASE("DNS-1123 labels and subdomains") {
  CHECK(CheckDns1123Label("v1-0").empty());
  CHECK(!CheckDns1123Label("V1").empty());
  CHECK(CheckDns1123Subdomain("voting-app.v2").empty());
  CHECK(!CheckDns1123Subdomain("voting_app").empty());
}

TEST_CASE("IP and CIDR checks") {
  CHECK(CheckIpOrCidr("10.0.0.1").empty());
  CHECK(CheckIpOrCidr("10.0.0.0/8").empty());
  CHECK(CheckIpOrCidr("::1").empty());
  CHECK(!CheckIpOrCidr("10.0.0.0/33").empty());
  CHECK(!CheckIpOrCidr("host.example").empty());
}

TEST_CASE("Short hosts resolve into the namespace, FQDNs and wildcards stay") {
  CHECK(ResolveHost("reviews", "bookinfo") == "reviews.bookinfo.svc.cluster.local");
  CHECK(ResolveHost("reviews.other.svc.cluster.local", "bookinfo") ==
        "reviews.other.svc.cluster.local");
  CHECK(ResolveHost("*", "bookinfo") == "*");
}

TEST_CASE("Host patterns match names the way Istio's wildcards do") {
  CHECK(HostMatches("*", "anything.example"));
  CHECK(HostMatches("*.example.com", "api.example.com"));
  CHECK(!HostMatches("*.example.com", "example.com"));
  CHECK(HostMatches("*.example.com", "*.api.example.com"));
  CHECK(HostMatches("a.b", "a.b"));
  CHECK(!HostMatches("a.b", "a.c"));
}

}  // namespace
}  // namespace mesh::model
