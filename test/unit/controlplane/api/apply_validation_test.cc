// Table test: invalid documents of every kind are refused with every error named by document and
// field path, and the store is left exactly as it was.
#include <catch2/catch.hpp>

#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "controlplane/api/resource_service.h"
#include "test/support/service_fixture.h"

namespace mesh::api {
namespace {

struct Case {
  const char* what;
  std::string yaml;
  std::vector<std::string> errors;  // exact lines of the 400 answer
};

std::string VS(const std::string& spec) {
  return "apiVersion: networking.istio.io/v1alpha3\nkind: VirtualService\nmetadata: {name: "
         "t}\nspec:\n" +
         spec;
}
std::string DR(const std::string& spec) {
  return "apiVersion: networking.istio.io/v1alpha3\nkind: DestinationRule\nmetadata: {name: "
         "t}\nspec:\n" +
         spec;
}
std::string GW(const std::string& spec) {
  return "apiVersion: networking.istio.io/v1beta1\nkind: Gateway\nmetadata: {name: t}\nspec:\n" +
         spec;
}
std::string SE(const std::string& spec) {
  return "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: t}\nspec:\n" +
         spec;
}
std::string WE(const std::string& spec) {
  return "apiVersion: networking.istio.io/v1beta1\nkind: WorkloadEntry\nmetadata: {name: "
         "t}\nspec:\n" +
         spec;
}
std::string POL(const std::string& spec) {
  return "apiVersion: authentication.istio.io/v1alpha1\nkind: Policy\nmetadata: {name: "
         "t}\nspec:\n" +
         spec;
}
std::string PA(const std::string& spec) {
  return "apiVersion: security.istio.io/v1beta1\nkind: PeerAuthentication\nmetadata: {name: "
         "t}\nspec:\n" +
         spec;
}
std::string SVC(const std::string& spec) {
  return "apiVersion: v1\nkind: Service\nmetadata: {name: t}\nspec:\n" + spec;
}

const std::string kRoute =
    "  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews}\n";

std::vector<Case> Cases() {
  const std::string vs = "VirtualService default/t: ";
  const std::string dr = "DestinationRule default/t: ";
  const std::string gw = "Gateway default/t: ";
  const std::string se = "ServiceEntry default/t: ";
  const std::string we = "WorkloadEntry default/t: ";
  const std::string pol = "Policy default/t: ";
  const std::string pa = "PeerAuthentication default/t: ";
  const std::string svc = "Service default/t: ";
  return {
      {"weight above 100",
       VS("  hosts: [r]\n  http:\n  - route:\n    - {destination: {host: r}, weight: 150}\n"),
       {vs + "spec.http[0].route[0].weight: must be between 0 and 100"}},
      {"weights not summing to 100",
       VS("  hosts: [r]\n  http:\n  - route:\n    - {destination: {host: r, subset: a}, weight: "
          "80}\n"
          "    - {destination: {host: r, subset: b}, weight: 10}\n"),
       {vs + "spec.http[0].route: weights must sum to 100, not 90"}},
      {"invalid uri regex",
       VS("  hosts: [r]\n  http:\n  - match: [{uri: {regex: \"(\"}}]\n    route: [{destination: "
          "{host: r}}]\n"),
       {vs + "spec.http[0].match[0].uri.regex: invalid regex \"(\": missing ): ("}},
      {"invalid cookie regex",
       VS("  hosts: [r]\n  http:\n  - match: [{headers: {cookie: {regex: "
          "\"^(featureflag=on\"}}}]\n    route: [{destination: {host: r}}]\n"),
       {vs + "spec.http[0].match[0].headers.cookie.regex: invalid regex \"^(featureflag=on\": "
             "missing ): ^(featureflag=on"}},
      {"two kinds in one StringMatch",
       VS("  hosts: [r]\n  http:\n  - match: [{uri: {exact: /a, prefix: /b}}]\n    route: "
          "[{destination: {host: r}}]\n"),
       {vs + "spec.http[0].match[0].uri: exactly one of exact, prefix or regex must be set"}},
      {"misspelt field",
       VS("  hosts: [r]\n  http:\n  - rout: [{destination: {host: r}}]\n"),
       {vs + "spec.http[0].route: is required (or redirect)",
        vs + "spec.http[0].rout: unknown field"}},
      {"no hosts",
       VS("  http:\n  - route: [{destination: {host: r}}]\n"),
       {vs + "spec.hosts: at least one host is required"}},
      {"star host bound to the mesh",
       VS("  hosts: [\"*\"]\n  http:\n  - route: [{destination: {host: r}}]\n"),
       {vs + "spec.hosts[0]: \"*\" is only allowed for a VirtualService bound to gateways, not to "
             "the mesh"}},
      {"duration without unit",
       VS(kRoute + "    timeout: 7\n"),
       {vs + "spec.http[0].timeout: must be a string"}},
      {"malformed duration",
       VS(kRoute + "    timeout: 7 seconds\n"),
       {vs + "spec.http[0].timeout: invalid duration \"7 seconds\": want a number and a unit, e.g. "
             "7s or 100ms"}},
      {"negative retry attempts",
       VS(kRoute + "    retries: {attempts: -1}\n"),
       {vs + "spec.http[0].retries.attempts: must be between 0 and 1000"}},
      {"unknown retryOn",
       VS(kRoute + "    retries: {attempts: 2, retryOn: \"5xx,bogus\"}\n"),
       {vs + "spec.http[0].retries.retryOn: unknown retry condition \"bogus\": want a status code "
             "or one of 5xx, "
             "gateway-error, reset, connect-failure, retriable-4xx, refused-stream, "
             "retriable-status-codes, ..."}},
      {"fault percentage above 100",
       VS(kRoute + "    fault: {abort: {httpStatus: 500, percentage: {value: 150}}}\n"),
       {vs + "spec.http[0].fault.abort.percentage.value: must be between 0 and 100"}},
      {"fault status out of range",
       VS(kRoute + "    fault: {abort: {httpStatus: 99}}\n"),
       {vs + "spec.http[0].fault.abort.httpStatus: must be between 200 and 599"}},
      {"fault delay without a delay",
       VS(kRoute + "    fault: {delay: {percentage: {value: 10}}}\n"),
       {vs + "spec.http[0].fault.delay.fixedDelay: is required"}},
      {"destination port out of range",
       VS("  hosts: [r]\n  http:\n  - route: [{destination: {host: r, port: {number: 70000}}}]\n"),
       {vs + "spec.http[0].route[0].destination.port.number: must be between 1 and 65535"}},
      {"destination without host",
       VS("  hosts: [r]\n  http:\n  - route: [{destination: {subset: v1}}]\n"),
       {vs + "spec.http[0].route[0].destination.host: is required"}},
      {"redirect and route together",
       VS("  hosts: [r]\n  http:\n  - redirect: {uri: /x}\n    route: [{destination: {host: "
          "r}}]\n"),
       {vs + "spec.http[0]: route and redirect are mutually exclusive"}},
      {"tcp route without destinations",
       VS("  hosts: [r]\n  tcp:\n  - match: [{port: 6379}]\n"),
       {vs + "spec.tcp[0].route: is required"}},
      {"upper-case header name",
       VS("  hosts: [r]\n  http:\n  - match: [{headers: {End-User: {exact: jason}}}]\n    route: "
          "[{destination: {host: r}}]\n"),
       {vs + "spec.http[0].match[0].headers.End-User: header names must be lower case"}},
      {"invalid sourceLabels value",
       VS("  hosts: [r]\n  http:\n  - match: [{sourceLabels: {version: \"1.0 beta\"}}]\n    route: "
          "[{destination: {host: r}}]\n"),
       {vs + "spec.http[0].match[0].sourceLabels.version: label value \"1.0 beta\" is invalid: at "
             "most 63 letters, "
             "digits, '-', '_' or '.', starting and ending with a letter or digit"}},
      {"mirror percentage above 100",
       VS(kRoute + "    mirror: {host: m}\n    mirrorPercentage: {value: 101}\n"),
       {vs + "spec.http[0].mirrorPercentage.value: must be between 0 and 100"}},
      {"no routes at all",
       VS("  hosts: [r]\n"),
       {vs + "spec: at least one of http, tcp or tls is required"}},
      {"hosts of the wrong type",
       VS("  hosts: r\n  http:\n  - route: [{destination: {host: r}}]\n"),
       {vs + "spec.hosts: must be a list", vs + "spec.hosts: at least one host is required"}},

      {"destination rule without host",
       DR("  subsets: [{name: v1}]\n"),
       {dr + "spec.host: is required"}},
      {"subset name not a DNS label",
       DR("  host: r\n  subsets: [{name: V1}]\n"),
       {dr + "spec.subsets[0].name: \"V1\" must be a DNS-1123 label: at most 63 lower-case "
             "letters, digits or '-', "
             "starting and ending with a letter or digit"}},
      {"duplicate subsets",
       DR("  host: r\n  subsets: [{name: v1}, {name: v1}]\n"),
       {dr + "spec.subsets[1].name: duplicate subset \"v1\""}},
      {"unknown TLS mode",
       DR("  host: r\n  trafficPolicy: {tls: {mode: ISTIO}}\n"),
       {dr + "spec.trafficPolicy.tls.mode: must be one of DISABLE, SIMPLE, MUTUAL, ISTIO_MUTUAL"}},
      {"unknown load balancer",
       DR("  host: r\n  trafficPolicy: {loadBalancer: {simple: FASTEST}}\n"),
       {dr + "spec.trafficPolicy.loadBalancer.simple: must be one of UNSPECIFIED, ROUND_ROBIN, "
             "LEAST_CONN, RANDOM, "
             "PASSTHROUGH, LEAST_REQUEST"}},
      {"two consistent-hash keys",
       DR("  host: r\n  trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x, "
          "useSourceIp: true}}}\n"),
       {dr + "spec.trafficPolicy.loadBalancer.consistentHash: exactly one of httpHeaderName, "
             "httpCookie, useSourceIp "
             "or httpQueryParameterName must be set"}},
      {"ejection percent above 100",
       DR("  host: r\n  trafficPolicy: {outlierDetection: {maxEjectionPercent: 150}}\n"),
       {dr + "spec.trafficPolicy.outlierDetection.maxEjectionPercent: must be between 0 and 100"}},
      {"connect timeout without unit",
       DR("  host: r\n  trafficPolicy: {connectionPool: {tcp: {connectTimeout: \"10\"}}}\n"),
       {dr + "spec.trafficPolicy.connectionPool.tcp.connectTimeout: invalid duration \"10\": want "
             "a number and a "
             "unit, e.g. 7s or 100ms"}},
      {"MUTUAL without certificates",
       DR("  host: r\n  trafficPolicy: {tls: {mode: MUTUAL}}\n"),
       {dr + "spec.trafficPolicy.tls.clientCertificate: is required for MUTUAL mode",
        dr + "spec.trafficPolicy.tls.privateKey: is required for MUTUAL mode"}},
      {"port-level setting without port",
       DR("  host: r\n  trafficPolicy: {portLevelSettings: [{loadBalancer: {simple: RANDOM}}]}\n"),
       {dr + "spec.trafficPolicy.portLevelSettings[0].port: is required"}},
      {"negative max connections",
       DR("  host: r\n  trafficPolicy: {connectionPool: {tcp: {maxConnections: -5}}}\n"),
       {dr +
        "spec.trafficPolicy.connectionPool.tcp.maxConnections: must be between 0 and 2147483647"}},

      {"gateway without servers",
       GW("  selector: {istio: ingressgateway}\n"),
       {gw + "spec.servers: at least one server is required"}},
      {"gateway port zero",
       GW("  servers: [{port: {number: 0, name: http, protocol: HTTP}, hosts: [\"*\"]}]\n"),
       {gw + "spec.servers[0].port.number: must be between 1 and 65535"}},
      {"gateway protocol unknown",
       GW("  servers: [{port: {number: 80, name: http, protocol: HTTP3}, hosts: [\"*\"]}]\n"),
       {gw + "spec.servers[0].port.protocol: must be one of HTTP, HTTPS, GRPC, GRPC-WEB, HTTP2, "
             "MONGO, TCP, TLS, UDP"}},
      {"HTTPS server without TLS",
       GW("  servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: [\"*\"]}]\n"),
       {gw + "spec.servers[0].tls: is required for protocol HTTPS"}},
      {"invalid selector label key",
       GW("  selector: {\"-istio\": ingressgateway}\n  servers: [{port: {number: 80, name: http, "
          "protocol: HTTP}, hosts: [\"*\"]}]\n"),
       {gw + "spec.selector.-istio: label key \"-istio\" is invalid: at most 63 letters, digits, "
             "'-', '_' or '.', "
             "starting and ending with a letter or digit, with an optional DNS subdomain prefix "
             "and '/'"}},
      {"server without hosts",
       GW("  servers: [{port: {number: 80, name: http, protocol: HTTP}}]\n"),
       {gw + "spec.servers[0].hosts: at least one host is required"}},
      {"SIMPLE TLS without a certificate",
       GW("  servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: [\"*\"], tls: "
          "{mode: SIMPLE}}]\n"),
       {gw + "spec.servers[0].tls.serverCertificate: is required for SIMPLE and MUTUAL modes "
             "unless credentialName is set",
        gw + "spec.servers[0].tls.privateKey: is required for SIMPLE and MUTUAL modes unless "
             "credentialName is set"}},

      {"service entry without ports",
       SE("  hosts: [api.example.com]\n  resolution: DNS\n"),
       {se + "spec.ports: at least one port is required"}},
      {"service entry resolution unknown",
       SE("  hosts: [api.example.com]\n  ports: [{number: 443, name: https, protocol: TLS}]\n  "
          "resolution: MAGIC\n"),
       {se + "spec.resolution: must be one of NONE, STATIC, DNS, DNS_ROUND_ROBIN"}},
      {"STATIC endpoint that is a host name",
       SE("  hosts: [db.internal]\n  ports: [{number: 5432, name: pg, protocol: TCP}]\n  "
          "resolution: STATIC\n"
          "  endpoints: [{address: db.example.com}]\n"),
       {se + "spec.endpoints[0].address: must be an IP address when resolution is STATIC"}},
      {"service entry port without name",
       SE("  hosts: [api.example.com]\n  ports: [{number: 443, protocol: TLS}]\n"),
       {se + "spec.ports[0].name: is required"}},

      {"workload entry without address",
       WE("  labels: {app: a}\n"),
       {we + "spec.address: is required"}},
      {"workload entry port out of range",
       WE("  address: 10.0.0.1\n  ports: {http: 0}\n"),
       {we + "spec.ports.http: must be between 1 and 65535"}},

      {"policy mTLS mode unknown",
       POL("  peers:\n  - mtls: {mode: STRICTER}\n"),
       {pol + "spec.peers[0].mtls.mode: must be one of STRICT, PERMISSIVE"}},
      {"policy target without name",
       POL("  targets: [{ports: [{number: 8080}]}]\n  peers: [{mtls: {}}]\n"),
       {pol + "spec.targets[0].name: is required"}},

      {"peer authentication mode unknown",
       PA("  mtls: {mode: ON}\n"),
       {pa + "spec.mtls.mode: must be one of UNSET, DISABLE, PERMISSIVE, STRICT"}},
      {"port-level mTLS without selector",
       PA("  portLevelMtls: {\"8080\": {mode: DISABLE}}\n"),
       {pa + "spec.portLevelMtls: requires a workload selector"}},
      {"port-level mTLS on a non-port",
       PA("  selector: {matchLabels: {app: a}}\n  portLevelMtls: {http: {mode: DISABLE}}\n"),
       {pa + "spec.portLevelMtls.http: port must be a number between 1 and 65535"}},

      {"service port out of range",
       SVC("  ports: [{port: 70000}]\n"),
       {svc + "spec.ports[0].port: must be between 1 and 65535"}},
      {"service ports without names",
       SVC("  ports: [{port: 6379}, {port: 3306}]\n"),
       {svc + "spec.ports[0].name: is required when a service has more than one port",
        svc + "spec.ports[1].name: is required when a service has more than one port"}},
      {"service type unknown",
       SVC("  type: Magic\n  ports: [{port: 80}]\n"),
       {svc + "spec.type: must be one of ClusterIP, NodePort, LoadBalancer, ExternalName"}},

      {"metadata name with upper case and underscore",
       "apiVersion: networking.istio.io/v1alpha3\nkind: Gateway\nmetadata: {name: "
       "Voting_App}\nspec:\n"
       "  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: [\"*\"]}]\n",
       {"Gateway default/Voting_App: metadata.name: \"Voting_App\" must be a DNS-1123 subdomain: "
        "lower-case letters, "
        "digits, '-' and '.', at most 253 characters"}},
      {"invalid metadata label",
       "apiVersion: v1\nkind: Service\nmetadata: {name: t, labels: {app: \"-x\"}}\nspec: {ports: "
       "[{port: 80}]}\n",
       {svc + "metadata.labels.app: label value \"-x\" is invalid: at most 63 letters, digits, "
              "'-', '_' or '.', "
              "starting and ending with a letter or digit"}},
      {"no metadata",
       "apiVersion: v1\nkind: Service\nspec: {ports: [{port: 80}]}\n",
       {"Service (document 1): metadata: is required"}},
      {"no spec",
       "apiVersion: networking.istio.io/v1alpha3\nkind: DestinationRule\nmetadata: {name: t}\n",
       {dr + "spec: is required"}},
      {"unknown Istio kind",
       "apiVersion: networking.istio.io/v1alpha3\nkind: VirtualServce\nmetadata: {name: t}\nspec: "
       "{}\n",
       {"VirtualServce default/t: kind: unknown kind VirtualServce in networking.istio.io"}},
      {"unserved version",
       "apiVersion: networking.istio.io/v2\nkind: VirtualService\nmetadata: {name: t}\nspec: {}\n",
       {vs + "apiVersion: networking.istio.io/v2 is not served for VirtualService; use version "
             "v1alpha3, v1beta1, v1"}},
      {"no apiVersion",
       "kind: Service\nmetadata: {name: t}\nspec: {ports: [{port: 80}]}\n",
       {svc + "apiVersion: is required"}},
      {"a document that is not an object",
       "- just\n- a list\n",
       {"document 1: must be an object with apiVersion, kind, metadata and spec",
        "document 2: must be an object with apiVersion, kind, metadata and spec"}},
  };
}

TEST_CASE("Invalid documents are refused with every error and the store does not change") {
  mesh::testing::ServiceFixture f;
  // Something already stored, which every refused batch must leave alone.
  REQUIRE(f.service
              ->Apply("apiVersion: v1\nkind: Service\nmetadata: {name: keep}\nspec: {ports: "
                      "[{port: 80}]}\n",
                      BodyFormat::kYaml, "default")
              .ok());
  const int64_t revision = f.store->Revision();
  const auto before = f.store->List("/");
  std::vector<Case> cases = Cases();
  REQUIRE(cases.size() >= 40);
  for (const Case& c : cases) {
    INFO(c.what);
    // A valid document in the same batch must not be written either.
    std::string body =
        "apiVersion: v1\nkind: Service\nmetadata: {name: innocent}\nspec: {ports: [{port: "
        "80}]}\n---\n" +
        c.yaml;
    auto result = f.service->Apply(body, BodyFormat::kYaml, "default");
    REQUIRE(!result.ok());
    CHECK(absl::IsInvalidArgument(result.status()));
    std::vector<std::string> lines = absl::StrSplit(result.status().message(), '\n');
    // The document index of the invalid one is 2 in this batch.
    std::vector<std::string> expected;
    for (std::string e : c.errors) {
      for (auto [from, to] :
           {std::pair{"(document 1)", "(document 2)"}, std::pair{"document 2:", "document 3:"},
            std::pair{"document 1:", "document 2:"}}) {
        if (size_t p = e.find(from); p != std::string::npos) {
          e.replace(p, std::string(from).size(), to);
          break;
        }
      }
      expected.push_back(e);
    }
    CHECK(lines == expected);
    CHECK(f.store->Revision() == revision);
  }
  CHECK(f.store->List("/")->kvs == before->kvs);
}

TEST_CASE("A batch with several invalid documents lists the errors of each") {
  mesh::testing::ServiceFixture f;
  std::string body =
      VS("  hosts: [r]\n  http:\n  - route: [{destination: {host: r}, weight: 101}]\n") + "---\n" +
      "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 0}]}\n";
  auto result = f.service->Apply(body, BodyFormat::kYaml, "voting");
  REQUIRE(!result.ok());
  CHECK(result.status().message() ==
        "VirtualService voting/t: spec.http[0].route[0].weight: must be between 0 and 100\n"
        "Service voting/s: spec.ports[0].port: must be between 1 and 65535");
  CHECK(f.store->Revision() == 0);
}

TEST_CASE("The same resource twice in one batch is refused") {
  mesh::testing::ServiceFixture f;
  std::string svc =
      "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 80}]}\n";
  auto result = f.service->Apply(svc + "---\n" + svc, BodyFormat::kYaml, "default");
  REQUIRE(!result.ok());
  CHECK(result.status().message() == "Service default/s: appears more than once in this request");
}

}  // namespace
}  // namespace mesh::api
