// AuthorizationPolicy semantics, by table: policies compiled by the control plane into RBAC
// filters, then evaluated by meshproxy's RBAC engine against requests and connections.
#include "controlplane/compiler/authz.h"

#include <catch2/catch.hpp>

#include "dataplane/config/rbac_policy.h"
#include "dataplane/stream/header_map.h"
#include "test/support/config_fixture.h"

namespace mesh::compiler {
namespace {

using dataplane::RbacInput;
using dataplane::RbacPolicyPtr;

const std::string kFoo = "spiffe://cluster.local/ns/foo/sa/sleep";
const std::string kBar = "spiffe://cluster.local/ns/bar/sa/sleep";

// A request to the workload app=httpbin in namespace foo.
struct Request {
  std::string method = "GET", path = "/", host = "httpbin", principal = kFoo, ip = "10.1.2.3";
  uint32_t port = 8000;
  std::vector<std::pair<std::string, std::string>> headers;
  std::map<std::string, std::vector<std::string>> authn;
  bool tcp = false;
};

std::vector<RbacPolicyPtr> Filters(const AuthzFilters& f, bool tcp) {
  std::vector<RbacPolicyPtr> out;
  auto add = [&](const envoy::config::rbac::v3::RBAC& rules) {
    auto p = dataplane::RbacPolicy::FromProto(rules, "rules");
    INFO(p.status().message());
    REQUIRE(p.ok());
    out.push_back(*p);
  };
  if (tcp) {
    for (const auto& r : f.tcp) add(r.rules());
  } else {
    for (const auto& r : f.http) add(r.rules());
  }
  return out;
}

// Whether `policies` (YAML, applied in namespace foo) let `r` through.
bool Allowed(const std::string& policies, const Request& r) {
  auto config = testing::Config(policies);
  AuthzFilters filters = BuildAuthz(*config, "foo", {{"app", "httpbin"}});
  dataplane::HeaderMap headers;
  for (const auto& [k, v] : r.headers) headers.Add(k, v);
  RbacInput in;
  if (!r.tcp) {
    in.headers = &headers;
    in.method = r.method;
    in.path = r.path;
    in.url_path = dataplane::UrlPathOf(r.path);
    in.authority = r.host;
  }
  in.principal = r.principal;
  in.source_ip = in.remote_ip = r.ip;
  in.destination_port = r.port;
  in.authn = r.authn.empty() ? nullptr : &r.authn;
  return dataplane::RbacAllows(Filters(filters, r.tcp), in);
}

std::string Ap(const std::string& name, const std::string& spec, const std::string& ns = "foo") {
  return "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: " + name +
         ", namespace: " + ns + "}\nspec: " + spec + "\n---\n";
}

Request With(std::function<void(Request&)> f) {
  Request r;
  f(r);
  return r;
}

TEST_CASE("Authorization semantics: no policy allows, an empty ALLOW policy denies all") {
  const std::string no_policy =
      "apiVersion: v1\nkind: Service\nmetadata: {name: httpbin, namespace: foo}\nspec: {ports: "
      "[{name: http, port: 8000}]}\n";
  CHECK(Allowed(no_policy, Request{}));
  CHECK(BuildAuthz(*testing::Config(no_policy), "foo", {}).empty());
  CHECK_FALSE(Allowed(Ap("nothing", "{}"), Request{}));
  // An empty DENY or AUDIT policy matches nothing.
  CHECK(Allowed(Ap("d", "{action: DENY}"), Request{}));
  CHECK(Allowed(Ap("a", "{action: AUDIT}"), Request{}));
  // rules: [{}] matches everything.
  CHECK(Allowed(Ap("all", "{rules: [{}]}"), Request{}));
  CHECK_FALSE(Allowed(Ap("none", "{action: DENY, rules: [{}]}"), Request{}));
}

TEST_CASE("Authorization semantics: DENY before ALLOW, AUDIT never decides") {
  const std::string policies =
      Ap("allow-all", "{rules: [{}]}") +
      Ap("deny-admin", "{action: DENY, rules: [{to: [{operation: {paths: [\"/admin*\"]}}]}]}") +
      Ap("audit", "{action: AUDIT, rules: [{}]}");
  CHECK(Allowed(policies, With([](Request& r) { r.path = "/ping"; })));
  CHECK_FALSE(Allowed(policies, With([](Request& r) { r.path = "/admin/users"; })));
  // url_path ignores the query.
  CHECK(Allowed(policies, With([](Request& r) { r.path = "/ping?next=/admin"; })));
}

TEST_CASE("Authorization semantics: which policies apply to a workload") {
  const std::string other_selector =
      Ap("other", "{selector: {matchLabels: {app: other}}}");  // allows nothing, elsewhere
  CHECK(Allowed(other_selector, Request{}));
  CHECK_FALSE(Allowed(Ap("mine", "{selector: {matchLabels: {app: httpbin}}}"), Request{}));
  // The root namespace's policies apply mesh-wide; another namespace's do not.
  CHECK_FALSE(Allowed(Ap("mesh", "{}", "istio-system"), Request{}));
  CHECK(Allowed(Ap("theirs", "{}", "bar"), Request{}));
}

TEST_CASE("Authorization semantics: sources, operations and their not-forms") {
  const std::string from_foo =
      Ap("p",
         "{rules: [{from: [{source: {namespaces: [\"foo\"]}}], to: [{operation: {methods: "
         "[\"GET\"]}}]}]}");
  CHECK(Allowed(from_foo, Request{}));
  CHECK_FALSE(Allowed(from_foo, With([](Request& r) { r.method = "POST"; })));
  CHECK_FALSE(Allowed(from_foo, With([](Request& r) { r.principal = kBar; })));
  CHECK_FALSE(Allowed(from_foo, With([](Request& r) { r.principal = ""; })));  // plaintext

  const std::string principal =
      Ap("p", "{rules: [{from: [{source: {principals: [\"cluster.local/ns/bar/*\"]}}]}]}");
  CHECK(Allowed(principal, With([](Request& r) { r.principal = kBar; })));
  CHECK_FALSE(Allowed(principal, Request{}));

  const std::string not_forms =
      Ap("p",
         "{rules: [{from: [{source: {notNamespaces: [\"bar\"]}}], to: [{operation: "
         "{notPaths: [\"/private\", \"*.secret\"], notMethods: [\"DELETE\"]}}]}]}");
  CHECK(Allowed(not_forms, Request{}));
  CHECK_FALSE(Allowed(not_forms, With([](Request& r) { r.principal = kBar; })));
  CHECK_FALSE(Allowed(not_forms, With([](Request& r) { r.path = "/private"; })));
  CHECK_FALSE(Allowed(not_forms, With([](Request& r) { r.path = "/keys.secret"; })));
  CHECK_FALSE(Allowed(not_forms, With([](Request& r) { r.method = "DELETE"; })));

  const std::string blocks =
      Ap("p",
         "{rules: [{from: [{source: {ipBlocks: [\"10.1.0.0/16\"], notIpBlocks: "
         "[\"10.1.9.9\"]}}], to: [{operation: {hosts: [\"HTTPBIN\", \"*.example.com\"], "
         "ports: [\"8000\"]}}]}]}");
  CHECK(Allowed(blocks, Request{}));  // hosts match case-insensitively
  CHECK(Allowed(blocks, With([](Request& r) { r.host = "api.example.com"; })));
  CHECK_FALSE(Allowed(blocks, With([](Request& r) { r.host = "evil.com"; })));
  CHECK_FALSE(Allowed(blocks, With([](Request& r) { r.ip = "10.2.0.1"; })));
  CHECK_FALSE(Allowed(blocks, With([](Request& r) { r.ip = "10.1.9.9"; })));
  CHECK_FALSE(Allowed(blocks, With([](Request& r) { r.port = 9000; })));
}

TEST_CASE("Authorization semantics: when conditions on headers, identities and claims") {
  const std::string header =
      Ap("p",
         "{rules: [{when: [{key: \"request.headers[x-token]\", values: [\"v1*\"], "
         "notValues: [\"v1-revoked\"]}]}]}");
  CHECK(Allowed(header, With([](Request& r) { r.headers = {{"X-Token", "v1-abc"}}; })));
  CHECK_FALSE(Allowed(header, With([](Request& r) { r.headers = {{"x-token", "v1-revoked"}}; })));
  CHECK_FALSE(Allowed(header, Request{}));

  const std::string source =
      Ap("p",
         "{rules: [{when: [{key: source.namespace, values: [\"bar\"]}, {key: source.ip, "
         "values: [\"10.1.2.0/24\"]}]}]}");
  CHECK(Allowed(source, With([](Request& r) { r.principal = kBar; })));
  CHECK_FALSE(Allowed(source, Request{}));

  const std::string claims =
      Ap("p",
         "{rules: [{from: [{source: {requestPrincipals: [\"https://issuer/*\"]}}], when: "
         "[{key: \"request.auth.claims[groups]\", values: [\"admins\"]}]}]}");
  CHECK_FALSE(Allowed(claims, Request{}));  // no token
  CHECK(Allowed(claims, With([](Request& r) {
                  r.authn = {{"request.auth.principal", {"https://issuer/alice"}},
                             {"request.auth.claims.groups", {"dev", "admins"}}};
                })));
  CHECK_FALSE(Allowed(claims, With([](Request& r) {
                        r.authn = {{"request.auth.principal", {"https://issuer/bob"}},
                                   {"request.auth.claims.groups", {"dev"}}};
                      })));
}

TEST_CASE("Authorization semantics on TCP: HTTP-only rules never allow, and widen a DENY") {
  Request tcp;
  tcp.tcp = true;
  const std::string allow_http_only =
      Ap("p", "{rules: [{to: [{operation: {methods: [\"GET\"]}}]}]}");
  CHECK(Allowed(allow_http_only, Request{}));
  CHECK_FALSE(Allowed(allow_http_only, tcp));
  const std::string deny_http_only =
      Ap("p", "{action: DENY, rules: [{to: [{operation: {paths: [\"/admin\"]}}]}]}");
  CHECK(Allowed(deny_http_only, Request{}));
  CHECK_FALSE(Allowed(deny_http_only, tcp));
  const std::string by_namespace =
      Ap("p",
         "{rules: [{from: [{source: {namespaces: [\"foo\"]}}], to: [{operation: {ports: "
         "[\"8000\"]}}]}]}");
  CHECK(Allowed(by_namespace, tcp));
  CHECK_FALSE(Allowed(by_namespace, With([](Request& r) {
                        r.tcp = true;
                        r.principal = kBar;
                      })));
}

TEST_CASE("Authorization: a policy's ports name the workload's port, mapped to its listener") {
  auto config = testing::Config(Ap("p", "{rules: [{to: [{operation: {ports: [\"9080\"]}}]}]}"));
  AuthzFilters f = BuildAuthz(*config, "foo", {}, {{9080, 15006}});
  RbacInput in;
  in.destination_port = 15006;
  CHECK(dataplane::RbacAllows(Filters(f, true), in));
  in.destination_port = 9080;
  CHECK_FALSE(dataplane::RbacAllows(Filters(f, true), in));
}

TEST_CASE("RequestAuthentication: a jwt_authn provider per rule, keys inline or fetched") {
  auto config = testing::Config(R"(
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  jwtRules:
  - issuer: inline
    jwks: '{"keys": [{"kty": "EC", "kid": "a"}]}'
    audiences: [httpbin]
    fromHeaders: [{name: x-jwt, prefix: "Token "}]
    forwardOriginalToken: true
  - issuer: fetched
    jwksUri: https://issuer.example/jwks
  - issuer: unfetched
    jwksUri: https://down.example/jwks
)");
  MeshConfig mesh;
  mesh.fetched_jwks =
      std::make_shared<const std::map<std::string, std::string>>(std::map<std::string, std::string>{
          {"https://issuer.example/jwks", R"({"keys": [{"kty": "RSA", "kid": "b"}]})"}});
  AuthzFilters f = BuildAuthz(*config, "foo", {{"app", "httpbin"}}, {}, mesh);
  REQUIRE(f.jwt);
  const auto& providers = f.jwt->providers();
  REQUIRE(providers.size() == 3);
  const auto& inline_p = providers.at("origins-foo-jwt-0");
  CHECK(inline_p.issuer() == "inline");
  CHECK(inline_p.local_jwks().inline_string() == R"({"keys": [{"kty": "EC", "kid": "a"}]})");
  CHECK(inline_p.audiences(0) == "httpbin");
  CHECK(inline_p.from_headers(0).name() == "x-jwt");
  CHECK(inline_p.from_headers(0).value_prefix() == "Token ");
  CHECK(inline_p.forward());
  CHECK(providers.at("origins-foo-jwt-1").local_jwks().inline_string() ==
        R"({"keys": [{"kty": "RSA", "kid": "b"}]})");
  // Not fetched (yet): a key set no token verifies with, so tokens of that issuer get 401.
  CHECK(providers.at("origins-foo-jwt-2").local_jwks().inline_string() == kUnfetchedJwks);
  CHECK(f.jwks_uris ==
        std::set<std::string>{"https://issuer.example/jwks", "https://down.example/jwks"});
  // One rule for every request: any provider, or no token at all.
  REQUIRE(f.jwt->rules_size() == 1);
  const auto& any = f.jwt->rules(0).requires_().requires_any();
  REQUIRE(any.requirements_size() == 4);
  CHECK(any.requirements(3).has_allow_missing());

  // Another workload: no provider at all.
  CHECK_FALSE(BuildAuthz(*config, "foo", {{"app", "other"}}, {}, mesh).jwt);
}

}  // namespace
}  // namespace mesh::compiler
