#include "dataplane/authn/jwt.h"

#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>

#include <catch2/catch.hpp>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "dataplane/authn/jwt_authn.h"
#include "dataplane/stream/header_map.h"
#include "envoy/extensions/filters/http/jwt_authn/v3/config.pb.h"
#include "nlohmann/json.hpp"
#include "test/support/jwt_signer.h"

namespace mesh::dataplane {
namespace {

using nlohmann::json;

const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);

using testing::B64;
using testing::TestKey;

json Claims() {
  return {{"iss", "https://issuer.example"},
          {"sub", "alice"},
          {"aud", json::array({"books", "orders"})},
          {"exp", 1'800'000'600},
          {"nbf", 1'799'999'000},
          {"groups", json::array({"dev", "admins"})},
          {"org", {{"team", "storage"}}}};
}

const JwtRule kRule{"https://issuer.example", {"orders"}};

std::string Error(const absl::StatusOr<VerifiedJwt>& v) {
  return v.ok() ? "ok" : std::string(v.status().message());
}

TEST_CASE("JWT: RS256 and ES256 tokens verify, and their claims become authn facts") {
  auto rsa = TestKey::Rsa("r1");
  auto ec = TestKey::Ec("e1");
  auto jwks = Jwks::Parse(json{{"keys", {rsa->jwk, ec->jwk}}}.dump());
  REQUIRE(jwks.ok());
  CHECK((*jwks)->size() == 2);
  for (const TestKey* key : {rsa.get(), ec.get()}) {
    INFO(key->alg);
    auto v = JwtVerifier::Verify(key->Sign(Claims()), kRule, **jwks, kNow);
    REQUIRE(Error(v) == "ok");
    CHECK(v->facts.at("request.auth.principal") ==
          std::vector<std::string>{"https://issuer.example/alice"});
    CHECK(v->facts.at("request.auth.audiences") == std::vector<std::string>{"books", "orders"});
    CHECK(v->facts.at("request.auth.claims.groups") == std::vector<std::string>{"dev", "admins"});
    CHECK(v->facts.at("request.auth.claims.org.team") == std::vector<std::string>{"storage"});
    CHECK(json::parse(v->payload_json)["sub"] == "alice");
  }
}

TEST_CASE("JWT: expired, not yet valid, wrong issuer or audience, bad signature are refused") {
  auto rsa = TestKey::Rsa("r1");
  auto jwks = Jwks::Parse(json{{"keys", {rsa->jwk}}}.dump());
  REQUIRE(jwks.ok());
  auto verify = [&](const std::string& token, const JwtRule& rule = kRule) {
    return Error(JwtVerifier::Verify(token, rule, **jwks, kNow));
  };
  json expired = Claims();
  expired["exp"] = 1'800'000'000 - 61;  // beyond the 60 s skew
  CHECK(verify(rsa->Sign(expired)) == "Jwt is expired");
  expired["exp"] = 1'800'000'000 - 59;  // within it
  CHECK(verify(rsa->Sign(expired)) == "ok");
  json early = Claims();
  early["nbf"] = 1'800'000'100;
  CHECK(verify(rsa->Sign(early)) == "Jwt not yet valid");
  CHECK(verify(rsa->Sign(Claims()), {"https://other.example", {}}) ==
        "Jwt issuer is not configured");
  CHECK(verify(rsa->Sign(Claims()), {"https://issuer.example", {"payments"}}) ==
        "Audiences in Jwt are not allowed");
  CHECK(verify(rsa->Sign(Claims()), {"https://issuer.example", {}}) == "ok");  // any audience

  std::string token = rsa->Sign(Claims());
  std::string tampered = token;
  tampered[tampered.size() - 5] = tampered[tampered.size() - 5] == 'A' ? 'B' : 'A';
  CHECK(verify(tampered) == "Jwt verification fails");
  // Another key with the same kid (a forged token) does not verify either.
  auto forger = TestKey::Rsa("r1");
  CHECK(verify(forger->Sign(Claims())) == "Jwt verification fails");
}

TEST_CASE("JWT: alg none, malformed parts, huge tokens and unknown keys are refused") {
  auto rsa = TestKey::Rsa("r1");
  auto jwks = Jwks::Parse(json{{"keys", {rsa->jwk}}}.dump());
  REQUIRE(jwks.ok());
  auto verify = [&](const std::string& token) {
    return Error(JwtVerifier::Verify(token, kRule, **jwks, kNow));
  };
  const std::string payload = B64(Claims().dump());
  CHECK(verify(B64(R"({"alg":"none"})") + "." + payload + ".") ==
        "Jwt header [alg] none is not supported");
  CHECK(verify(B64(R"({"alg":"HS256"})") + "." + payload + ".c2ln") ==
        "Jwt header [alg] HS256 is not supported");
  CHECK(verify("abc.def") == "Jwt is not in the form of Header.Payload.Signature");
  CHECK(verify(B64("{not json") + "." + payload + ".c2ln") == "Jwt header is an invalid JSON");
  CHECK(verify(B64(R"({"alg":"RS256"})") + "." + B64("[1]") + ".c2ln") ==
        "Jwt payload is an invalid JSON");
  CHECK(verify(std::string(JwtVerifier::kMaxTokenBytes + 1, 'a')) == "Jwt is too large");
  CHECK(verify(rsa->Sign(Claims(), {{"kid", "r2"}})) ==
        "Jwks doesn't have key to match kid or alg from Jwt");
  auto ec = TestKey::Ec("r1");
  CHECK(verify(ec->Sign(Claims())) == "Jwks doesn't have key to match kid or alg from Jwt");
}

TEST_CASE("JWKS: a set with no usable key, or that is not JSON, is refused") {
  CHECK(!Jwks::Parse("not json").ok());
  CHECK(!Jwks::Parse(R"({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]})").ok());
  CHECK(!Jwks::Parse(R"({"keys": [{"kty": "RSA", "n": "!!", "e": "AQAB"}]})").ok());
  auto one = TestKey::Ec("e1");
  auto single = Jwks::Parse(one->jwk.dump());  // a bare JWK
  REQUIRE(single.ok());
  CHECK((*single)->size() == 1);
}

// A jwt_authn filter as the control plane writes it for one RequestAuthentication rule: a
// token, if present, must verify; a request without one passes.
std::shared_ptr<const JwtAuthn> IstioFilter(const TestKey& key, bool forward = false,
                                            const std::string& payload_header = "") {
  namespace pb = envoy::extensions::filters::http::jwt_authn::v3;
  pb::JwtAuthentication config;
  pb::JwtProvider& p = (*config.mutable_providers())["origins-0"];
  p.set_issuer("https://issuer.example");
  p.add_audiences("orders");
  p.mutable_local_jwks()->set_inline_string(json{{"keys", {key.jwk}}}.dump());
  p.set_forward(forward);
  p.set_forward_payload_header(payload_header);
  pb::RequirementRule* rule = config.add_rules();
  rule->mutable_match()->set_prefix("/");
  auto* any = rule->mutable_requires_()->mutable_requires_any();
  any->add_requirements()->set_provider_name("origins-0");
  any->add_requirements()->mutable_allow_missing();
  auto filter = JwtAuthn::FromProto(config, "jwt");
  INFO(filter.status().message());
  REQUIRE(filter.ok());
  return *filter;
}

TEST_CASE("jwt_authn: no token passes, a valid one yields facts, an invalid one is refused") {
  auto rsa = TestKey::Rsa("r1");
  auto filter = IstioFilter(*rsa);
  HeaderMap none;
  JwtAuthn::Outcome missing = filter->Authenticate(none, "/", kNow);
  CHECK(missing.allowed);
  CHECK(missing.facts.empty());

  HeaderMap good;
  good.Add("Authorization", "Bearer " + rsa->Sign(Claims()));
  JwtAuthn::Outcome ok = filter->Authenticate(good, "/books", kNow);
  CHECK(ok.allowed);
  CHECK(ok.facts.at("request.auth.principal") ==
        std::vector<std::string>{"https://issuer.example/alice"});
  CHECK(good.Get("authorization") == nullptr);  // not forwarded by default

  json expired = Claims();
  expired["exp"] = 1'700'000'000;
  HeaderMap bad;
  bad.Add("authorization", "Bearer " + rsa->Sign(expired));
  JwtAuthn::Outcome refused = filter->Authenticate(bad, "/", kNow);
  CHECK_FALSE(refused.allowed);
  CHECK(refused.error == "Jwt is expired");

  // From the default query parameter too, and garbage there is refused.
  HeaderMap plain;
  CHECK(filter->Authenticate(plain, "/x?access_token=" + rsa->Sign(Claims()), kNow).allowed);
  CHECK(filter->Authenticate(plain, "/x?access_token=abc", kNow).error ==
        "Jwt is not in the form of Header.Payload.Signature");
}

TEST_CASE("jwt_authn: forwardOriginalToken keeps the header, and the payload can be output") {
  auto rsa = TestKey::Rsa("r1");
  auto filter = IstioFilter(*rsa, true, "x-jwt-payload");
  HeaderMap headers;
  const std::string token = rsa->Sign(Claims());
  headers.Add("authorization", "Bearer " + token);
  REQUIRE(filter->Authenticate(headers, "/", kNow).allowed);
  REQUIRE(headers.Get("authorization"));
  CHECK(*headers.Get("authorization") == "Bearer " + token);
  REQUIRE(headers.Get("x-jwt-payload"));
  std::string payload;
  REQUIRE(absl::WebSafeBase64Unescape(*headers.Get("x-jwt-payload"), &payload));
  CHECK(json::parse(payload)["sub"] == "alice");
}

TEST_CASE("jwt_authn: a provider whose keys cannot verify, or an unknown provider, is NACKed") {
  namespace pb = envoy::extensions::filters::http::jwt_authn::v3;
  pb::JwtAuthentication config;
  (*config.mutable_providers())["p"].mutable_local_jwks()->set_inline_string(
      R"({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]})");
  auto bad_keys = JwtAuthn::FromProto(config, "jwt");
  REQUIRE(!bad_keys.ok());
  CHECK(absl::StrContains(bad_keys.status().message(),
                          "jwt.providers[p].local_jwks.inline_string: jwks: no usable key"));
  config.clear_providers();
  auto* rule = config.add_rules();
  rule->mutable_match()->set_prefix("/");
  rule->mutable_requires_()->set_provider_name("nobody");
  auto unknown = JwtAuthn::FromProto(config, "jwt");
  REQUIRE(!unknown.ok());
  CHECK(absl::StrContains(unknown.status().message(), "no provider \"nobody\""));
}

}  // namespace
}  // namespace mesh::dataplane
