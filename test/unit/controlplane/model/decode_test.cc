#include "controlplane/model/decode.h"

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "common/yaml_json.h"
#include "controlplane/model/names.h"
#include "test/support/voting_app.h"

namespace mesh::model {
namespace {

using nlohmann::json;

DecodedDocument DecodeYaml(const std::string& yaml, std::string_view ns = "default") {
  auto docs = ParseYamlDocuments(yaml);
  REQUIRE(docs.ok());
  REQUIRE(docs->size() == 1);
  return DecodeDocument((*docs)[0], absl::string_view(ns.data(), ns.size()), 1);
}

TEST_CASE("The tutorial's cookie-regex VirtualService decodes into typed routes") {
  DecodedDocument d = DecodeYaml(R"(
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: voting-app
spec:
  hosts: ["*"]
  gateways: [voting-app-gateway]
  http:
  - match:
    - uri:
        prefix: /
      headers:
        cookie:
          regex: "^(.*?; ?)?(featureflag=on)(;.*)?$"
    route:
    - destination:
        host: voting-app.voting.svc.cluster.local
        subset: v2-0
        port:
          number: 8080
  - route:
    - destination: {host: voting-app, subset: v1-0}
      weight: 80
    - destination: {host: voting-app, subset: v2-0}
      weight: 20
    timeout: 7s
    retries: {attempts: 3, perTryTimeout: 100ms, retryOn: "5xx,connect-failure"}
)",
                                 "voting");
  REQUIRE(d.outcome == DecodedDocument::Outcome::kObject);
  CHECK(d.object->meta.namespace_ == "voting");
  const auto& vs = std::get<VirtualService>(d.object->spec);
  REQUIRE(vs.http.size() == 2);
  const HTTPMatchRequest& m = vs.http[0].match[0];
  CHECK(*m.uri == StringMatch{StringMatch::Type::kPrefix, "/"});
  CHECK(m.headers.at("cookie").type == StringMatch::Type::kRegex);
  CHECK(vs.http[0].route[0].destination.port->number == 8080);
  CHECK(vs.http[1].route[1].weight == 20);
  CHECK(*vs.http[1].timeout == absl::Seconds(7));
  CHECK(vs.http[1].retries->attempts == 3);
  CHECK(*vs.http[1].retries->per_try_timeout == absl::Milliseconds(100));
}

TEST_CASE("DestinationRule traffic policies decode with subset overrides") {
  DecodedDocument d = DecodeYaml(R"(
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer: {consistentHash: {httpCookie: {name: user, ttl: 0s}}}
    connectionPool:
      tcp: {maxConnections: 100, connectTimeout: 30ms}
      http: {http1MaxPendingRequests: 10, maxRequestsPerConnection: 1, idleTimeout: 1s}
    outlierDetection: {consecutive5xxErrors: 5, interval: 1s, baseEjectionTime: 30s, maxEjectionPercent: 50}
    tls: {mode: ISTIO_MUTUAL}
    portLevelSettings:
    - port: {number: 9080}
      loadBalancer: {simple: LEAST_REQUEST}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy: {loadBalancer: {simple: RANDOM}}
)");
  REQUIRE(d.outcome == DecodedDocument::Outcome::kObject);
  const auto& dr = std::get<DestinationRule>(d.object->spec);
  const TrafficPolicy& tp = *dr.traffic_policy;
  CHECK(tp.load_balancer->consistent_hash->http_cookie->name == "user");
  CHECK(*tp.connection_pool->tcp->max_connections == 100);
  CHECK(*tp.connection_pool->tcp->connect_timeout == absl::Milliseconds(30));
  CHECK(*tp.connection_pool->http->http1_max_pending_requests == 10);
  CHECK(*tp.outlier_detection->consecutive_5xx_errors == 5);
  CHECK(*tp.outlier_detection->max_ejection_percent == 50);
  CHECK(tp.tls->mode == ClientTLSSettings::Mode::kIstioMutual);
  CHECK(tp.port_level_settings[0].port.number == 9080);
  CHECK(*tp.port_level_settings[0].load_balancer->simple ==
        LoadBalancerSettings::Simple::kLeastRequest);
  CHECK(*dr.subsets[0].traffic_policy->load_balancer->simple ==
        LoadBalancerSettings::Simple::kRandom);
}

TEST_CASE("The tutorial's Policy reads `mtls:` with a mode, and with no body, as STRICT") {
  DecodedDocument d = DecodeYaml(
      "apiVersion: authentication.istio.io/v1alpha1\nkind: Policy\nmetadata: {name: default}\n"
      "spec:\n  peers:\n  - mtls: \n      mode: STRICT\n");
  REQUIRE(d.outcome == DecodedDocument::Outcome::kObject);
  CHECK(std::get<Policy>(d.object->spec).peer_mtls == MtlsMode::kStrict);
  DecodedDocument bare = DecodeYaml(
      "apiVersion: authentication.istio.io/v1alpha1\nkind: Policy\nmetadata: {name: default}\n"
      "spec:\n  peers:\n  - mtls:\n");
  REQUIRE(bare.outcome == DecodedDocument::Outcome::kObject);
  CHECK(std::get<Policy>(bare.object->spec).peer_mtls == MtlsMode::kStrict);
}

TEST_CASE("Non-mesh kinds are skipped, and Istio kinds meshpilot does not enforce are refused") {
  DecodedDocument dep =
      DecodeYaml("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {}\n");
  CHECK(dep.outcome == DecodedDocument::Outcome::kSkipped);
  CHECK(dep.skip_reason == "apps/v1 Deployment is not a mesh resource");
  DecodedDocument secret =
      DecodeYaml("apiVersion: v1\nkind: Secret\nmetadata: {name: x}\ndata: {}\n");
  CHECK(secret.outcome == DecodedDocument::Outcome::kSkipped);
  const std::string filter =
      "apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata: {name: x}\nspec: "
      "{}\n";
  DecodedDocument refused = DecodeYaml(filter);
  CHECK(refused.outcome == DecodedDocument::Outcome::kInvalid);
  REQUIRE(refused.errors.size() == 1);
  CHECK(refused.errors[0].path == "kind");
  CHECK(absl::StartsWith(refused.errors[0].message,
                         "EnvoyFilter (networking.istio.io) is not enforced by meshpilot"));
  // With --allow-unenforced-kinds: skipped, with the reason.
  auto docs = ParseYamlDocuments(filter);
  REQUIRE(docs.ok());
  DecodedDocument skipped = DecodeDocument((*docs)[0], "default", 1, {true});
  CHECK(skipped.outcome == DecodedDocument::Outcome::kSkipped);
  CHECK(skipped.skip_reason == "EnvoyFilter is not served by meshpilot");
}

TEST_CASE("Every Istio and Kubernetes manifest of the voting-app tutorial decodes") {
  int decoded = 0;
  for (const char* sub : {"istio", "kubernetes"}) {
    for (const auto& entry :
         std::filesystem::directory_iterator(std::string(MESH_MANIFESTS_DIR) + "/" + sub)) {
      auto docs = ParseYamlDocuments(mesh::testing::ReadText(entry.path().string()));
      REQUIRE(docs.ok());
      for (const json& doc : *docs) {
        DecodedDocument d = DecodeDocument(doc, "voting", 1);
        INFO(entry.path().string() << ": " << d.display);
        for (const auto& e : d.errors) INFO(FormatError(d.display, e));
        CHECK(d.outcome != DecodedDocument::Outcome::kInvalid);
        if (d.outcome == DecodedDocument::Outcome::kObject) ++decoded;
      }
    }
  }
  CHECK(decoded > 30);
}

TEST_CASE("ExpandDocuments flattens arrays and Lists") {
  std::vector<json> docs = {json::array({{{"kind", "A"}}, {{"kind", "B"}}}),
                            {{"kind", "List"}, {"items", {{{"kind", "C"}}}}},
                            {{"kind", "D"}}};
  std::vector<json> out = ExpandDocuments(docs);
  REQUIRE(out.size() == 4);
  CHECK(out[2]["kind"] == "C");
  CHECK(out[3]["kind"] == "D");
}

}  // namespace
}  // namespace mesh::model

namespace mesh::model {
namespace {

TEST_CASE("A list whose kind is not a string is one document, never an exception") {
  // Found by fuzz_rest_decode: `kind: null` threw out of ExpandDocuments (a 500 on /apply).
  std::vector<nlohmann::json> docs = {
      nlohmann::json::parse(R"({"kind": null, "items": [1, 2]})"),
      nlohmann::json::parse(R"({"kind": 7})"),
      nlohmann::json::parse(R"({"kind": "List", "items": [{"a": 1}, {"b": 2}]})")};
  std::vector<nlohmann::json> out = ExpandDocuments(docs);
  CHECK(out.size() == 4);
}

}  // namespace
}  // namespace mesh::model

namespace mesh::model {
namespace {

DecodedDocument DecodeAbort(const std::string& abort) {
  auto docs = ParseYamlDocuments(
      "apiVersion: networking.istio.io/v1beta1\nkind: VirtualService\nmetadata: {name: rpc}\n"
      "spec:\n  hosts: [rpc]\n  http:\n  - route: [{destination: {host: rpc}}]\n"
      "    fault: {abort: " +
      abort + "}\n");
  REQUIRE(docs.ok());
  return DecodeDocument((*docs)[0], "default", 1);
}

TEST_CASE("A gRPC fault abort decodes Istio's status names, and refuses what it cannot compile") {
  DecodedDocument named = DecodeAbort("{grpcStatus: UNAVAILABLE, percentage: {value: 50}}");
  REQUIRE(named.outcome == DecodedDocument::Outcome::kObject);
  const auto& abort = *std::get<VirtualService>(named.object->spec).http[0].fault->abort;
  CHECK(abort.grpc_status == 14u);
  CHECK(abort.http_status == 0);
  CHECK(abort.percentage == 50);

  DecodedDocument numbered = DecodeAbort("{grpcStatus: \"4\"}");
  REQUIRE(numbered.outcome == DecodedDocument::Outcome::kObject);
  CHECK(std::get<VirtualService>(numbered.object->spec).http[0].fault->abort->grpc_status == 4u);

  DecodedDocument unknown = DecodeAbort("{grpcStatus: Unavailable}");
  REQUIRE(unknown.outcome == DecodedDocument::Outcome::kInvalid);
  CHECK(unknown.errors[0].path == "spec.http[0].fault.abort.grpcStatus");
  CHECK(unknown.errors[0].message ==
        "must be a gRPC status code name such as UNAVAILABLE (or its number, 0-16)");
  DecodedDocument both = DecodeAbort("{httpStatus: 503, grpcStatus: UNAVAILABLE}");
  REQUIRE(both.outcome == DecodedDocument::Outcome::kInvalid);
  CHECK(both.errors[0].message == "only one of httpStatus, grpcStatus and http2Error");
  DecodedDocument h2 = DecodeAbort("{http2Error: REFUSED_STREAM}");
  REQUIRE(h2.outcome == DecodedDocument::Outcome::kInvalid);
  CHECK(h2.errors[0].path == "spec.http[0].fault.abort.http2Error");
}

}  // namespace
}  // namespace mesh::model

namespace mesh::model {
namespace {

// Every error of one AuthorizationPolicy spec, as "path: message".
std::vector<std::string> PolicyErrors(const std::string& spec) {
  DecodedDocument d = DecodeYaml(
      "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\nspec: " +
      spec + "\n");
  std::vector<std::string> out;
  for (const auto& e : d.errors) out.push_back(e.path + ": " + e.message);
  return out;
}

TEST_CASE("An AuthorizationPolicy decodes, and what Istio refuses is refused with its path") {
  DecodedDocument d = DecodeYaml(R"(
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: {name: httpbin, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  action: DENY
  rules:
  - from: [{source: {principals: ["cluster.local/ns/default/sa/sleep"], notIpBlocks: ["10.0.0.0/8"]}}]
    to: [{operation: {methods: ["GET"], paths: ["/info*", "*.html"], ports: ["8000"]}}]
    when: [{key: "request.headers[version]", values: ["v1", "v2"]}]
)");
  REQUIRE(d.outcome == DecodedDocument::Outcome::kObject);
  const auto& ap = std::get<AuthorizationPolicy>(d.object->spec);
  CHECK(ap.action == AuthorizationPolicy::Action::kDeny);
  REQUIRE(ap.rules.size() == 1);
  CHECK(ap.rules[0].from[0].not_ip_blocks == std::vector<std::string>{"10.0.0.0/8"});
  CHECK(ap.rules[0].to[0].paths == std::vector<std::string>{"/info*", "*.html"});
  CHECK(ap.rules[0].when[0].key == "request.headers[version]");

  CHECK(PolicyErrors("{rules: [{from: [{source: {ipBlocks: [\"10.0.0.300\"]}}]}]}") ==
        std::vector<std::string>{"spec.rules[0].from[0].source.ipBlocks[0]: " +
                                 CheckIpOrCidr("10.0.0.300")});
  CHECK(PolicyErrors("{rules: [{from: [{source: {principals: [\"a*b\"]}}]}]}") ==
        std::vector<std::string>{"spec.rules[0].from[0].source.principals[0]: \"a*b\": a * may "
                                 "only stand at the start or the end"});
  CHECK(PolicyErrors("{rules: [{to: [{operation: {ports: [\"http\"]}}]}]}") ==
        std::vector<std::string>{"spec.rules[0].to[0].operation.ports[0]: \"http\": must be a "
                                 "port number between 1 and 65535"});
  CHECK(PolicyErrors("{rules: [{to: [{operation: {paths: [\"/a/{*}/b\"]}}]}]}").size() == 1);
  CHECK(PolicyErrors("{rules: [{when: [{key: request.size, values: [\"1\"]}]}]}") ==
        std::vector<std::string>{"spec.rules[0].when[0].key: \"request.size\": not a supported "
                                 "attribute"});
  CHECK(PolicyErrors("{rules: [{when: [{key: source.ip}]}]}") ==
        std::vector<std::string>{"spec.rules[0].when[0]: values or notValues is required"});
  CHECK(PolicyErrors("{rules: [{from: [{source: {}}]}]}") ==
        std::vector<std::string>{"spec.rules[0].from[0].source: must not be empty"});
  CHECK(PolicyErrors("{rules: [{to: [{operation: {verbs: [\"GET\"]}}]}]}") ==
        std::vector<std::string>{"spec.rules[0].to[0].operation: must not be empty",
                                 "spec.rules[0].to[0].operation.verbs: unknown field"});
  std::vector<std::string> custom = PolicyErrors("{action: CUSTOM, provider: {name: ext}}");
  REQUIRE(custom.size() == 1);
  CHECK(absl::StartsWith(custom[0], "spec.action: CUSTOM delegates to an external authorizer"));
}

}  // namespace
}  // namespace mesh::model

namespace mesh::model {
namespace {

std::vector<std::string> AuthnErrors(const std::string& spec) {
  DecodedDocument d = DecodeYaml(
      "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: r}\nspec: " +
      spec + "\n");
  std::vector<std::string> out;
  for (const auto& e : d.errors) out.push_back(e.path + ": " + e.message);
  return out;
}

TEST_CASE("A RequestAuthentication decodes, and bad JWT rules are refused with their path") {
  DecodedDocument d = DecodeYaml(R"(
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  jwtRules:
  - issuer: https://issuer.example
    audiences: [orders]
    jwks: '{"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]}'
    fromHeaders: [{name: x-jwt, prefix: "Token "}]
    fromParams: [token]
    forwardOriginalToken: true
    outputPayloadToHeader: x-jwt-payload
)");
  REQUIRE(d.outcome == DecodedDocument::Outcome::kObject);
  const auto& ra = std::get<RequestAuthentication>(d.object->spec);
  REQUIRE(ra.jwt_rules.size() == 1);
  CHECK(ra.jwt_rules[0].from_headers[0].prefix == "Token ");
  CHECK(ra.jwt_rules[0].forward_original_token);

  CHECK(AuthnErrors("{jwtRules: [{jwks: '{\"keys\": [{\"kty\": \"RSA\"}]}'}]}") ==
        std::vector<std::string>{"spec.jwtRules[0].issuer: is required"});
  CHECK(AuthnErrors("{jwtRules: [{issuer: a, jwks: 'nope'}]}") ==
        std::vector<std::string>{
            "spec.jwtRules[0].jwks: must be a JSON Web Key Set (a JSON object)"});
  CHECK(AuthnErrors("{jwtRules: [{issuer: a}]}").size() == 1);  // no keys at all
  CHECK(AuthnErrors("{jwtRules: [{issuer: a, jwksUri: 'https://x.example:8443/jwks'}]}").empty());
  CHECK(AuthnErrors("{jwtRules: [{issuer: a, jwksUri: 'http://[::1]:80/k'}]}").empty());
  CHECK(AuthnErrors("{jwtRules: [{issuer: a, jwksUri: 'ftp://x/jwks'}]}") ==
        std::vector<std::string>{
            "spec.jwtRules[0].jwksUri: \"ftp://x/jwks\" must be an http:// or https:// URL"});
  CHECK(AuthnErrors("{jwtRules: [{issuer: a, jwksUri: 'https:///jwks'}]}") ==
        std::vector<std::string>{"spec.jwtRules[0].jwksUri: \"https:///jwks\" has no host"});
  CHECK(AuthnErrors("{jwtRules: [{issuer: a, jwksUri: 'https://x:99999/'}]}") ==
        std::vector<std::string>{"spec.jwtRules[0].jwksUri: \"https://x:99999/\" has a port "
                                 "that is not a number from 1 to 65535"});
  CHECK(AuthnErrors("{jwtRules: [{issuer: a, jwksUri: 'https://x/k', jwks: '{\"keys\": "
                    "[{\"kty\": \"EC\"}]}'}]}") ==
        std::vector<std::string>{"spec.jwtRules[0].jwks: jwks and jwksUri are exclusive"});
  CHECK(AuthnErrors("{jwtRules: [{issuer: a, jwks: '{\"keys\": [{\"kty\": \"EC\"}]}', "
                    "outputPayloadToHeader: 'bad header'}]}") ==
        std::vector<std::string>{"spec.jwtRules[0].outputPayloadToHeader: \"bad header\" is not a "
                                 "valid HTTP header name"});
}

}  // namespace
std::vector<std::string> TelemetryErrors(const std::string& spec) {
  auto docs = ParseYamlDocuments(
      "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: t}\nspec: " + spec +
      "\n");
  REQUIRE(docs.ok());
  DecodeOptions options;
  options.tracing_providers = {{"meshpilot", "jaeger"}};
  DecodedDocument d = DecodeDocument((*docs)[0], "default", 1, options);
  std::vector<std::string> out;
  for (const auto& e : d.errors) out.push_back(e.path + ": " + e.message);
  return out;
}

TEST_CASE("Telemetry: access logging is decoded, and what meshpilot cannot enforce is refused") {
  DecodedDocument d = DecodeYaml(R"(
apiVersion: telemetry.istio.io/v1alpha1
kind: Telemetry
metadata: {name: logs, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  accessLogging:
  - providers: [{name: envoy}]
    match: {mode: SERVER}
  - disabled: true
    match: {mode: CLIENT}
  metrics: [{providers: [{name: prometheus}]}]
)");
  REQUIRE(d.outcome == DecodedDocument::Outcome::kObject);
  const auto& t = std::get<Telemetry>(d.object->spec);
  REQUIRE(t.access_logging.size() == 2);
  CHECK(t.access_logging[0].providers == std::vector<std::string>{"envoy"});
  CHECK(t.access_logging[0].mode == Telemetry::Mode::kServer);
  CHECK(t.access_logging[1].disabled);
  CHECK(t.access_logging[1].mode == Telemetry::Mode::kClient);

  CHECK(TelemetryErrors("{accessLogging: [{providers: [{name: otel}]}]}") ==
        std::vector<std::string>{
            "spec.accessLogging[0].providers[0].name: unknown provider \"otel\": meshpilot's "
            "access log provider is \"envoy\" (the file of --access-log-file, /dev/stdout by "
            "default)"});
  CHECK(TelemetryErrors("{accessLogging: [{filter: {expression: 'response.code >= 400'}}]}") ==
        std::vector<std::string>{"spec.accessLogging[0].filter.expression: CEL filters are not "
                                 "supported: every request is logged"});
  CHECK(TelemetryErrors("{accessLogging: [{match: {mode: BOTH}}]}").size() == 1);
  CHECK(TelemetryErrors("{metrics: [{overrides: [{disabled: true}]}]}").size() == 1);
  CHECK(TelemetryErrors("{accessLogging: [{}], unknownField: 1}") ==
        std::vector<std::string>{"spec.unknownField: unknown field"});
}

TEST_CASE("Telemetry: tracing is decoded, and a bad entry refused with its field path") {
  DecodedDocument d = DecodeYaml(R"(
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: tracing, namespace: foo}
spec:
  tracing:
  - providers: [{name: jaeger}]
    randomSamplingPercentage: 12.5
    match: {mode: CLIENT}
    customTags:
      team: {literal: {value: blue}}
      cluster: {environment: {name: CLUSTER, defaultValue: none}}
      user: {header: {name: end-user}}
  - disableSpanReporting: true
    match: {mode: SERVER}
)");
  REQUIRE(d.outcome == DecodedDocument::Outcome::kObject);
  const auto& t = std::get<Telemetry>(d.object->spec);
  REQUIRE(t.tracing.size() == 2);
  CHECK(t.tracing[0].providers == std::vector<std::string>{"jaeger"});
  CHECK(t.tracing[0].random_sampling_percentage == 12.5);
  CHECK(t.tracing[0].mode == Telemetry::Mode::kClient);
  REQUIRE(t.tracing[0].custom_tags.size() == 3);
  CHECK(t.tracing[0].custom_tags.at("team").value == "blue");
  CHECK(t.tracing[0].custom_tags.at("cluster").kind == Telemetry::CustomTag::Kind::kEnvironment);
  CHECK(t.tracing[0].custom_tags.at("cluster").default_value == "none");
  CHECK(t.tracing[0].custom_tags.at("user").kind == Telemetry::CustomTag::Kind::kHeader);
  CHECK(t.tracing[1].disable_span_reporting == true);
  CHECK_FALSE(t.tracing[1].random_sampling_percentage);

  CHECK(TelemetryErrors("{tracing: [{providers: [{name: zipkin}]}]}") ==
        std::vector<std::string>{
            "spec.tracing[0].providers[0].name: unknown tracing provider \"zipkin\": meshpilot "
            "knows jaeger, meshpilot (add one with meshpilot's --trace-provider NAME=URL)"});
  CHECK(TelemetryErrors("{tracing: [{randomSamplingPercentage: 101}]}") ==
        std::vector<std::string>{
            "spec.tracing[0].randomSamplingPercentage: must be between 0 and 100"});
  CHECK(
      TelemetryErrors("{tracing: [{customTags: {a: {literal: {value: x}, header: {name: h}}}}]}") ==
      std::vector<std::string>{
          "spec.tracing[0].customTags.a: exactly one of literal, environment or header is "
          "required"});
  CHECK(TelemetryErrors("{tracing: [{customTags: {a: {}}}]}").size() == 1);
  CHECK(TelemetryErrors("{tracing: [{providers: [{name: meshpilot}, {name: jaeger}]}]}").size() ==
        1);
  CHECK(TelemetryErrors("{tracing: [{sampling: 3}]}") ==
        std::vector<std::string>{"spec.tracing[0].sampling: unknown field"});
  // Stored config read back decodes whatever provider it names (the flags may have changed).
  CHECK(DecodeYaml("apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: t}\n"
                   "spec: {tracing: [{providers: [{name: gone}]}]}\n")
            .outcome == DecodedDocument::Outcome::kObject);
}

}  // namespace mesh::model
