#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/time/time.h"

// Plain structs for the Istio and Kubernetes resources meshpilot serves. They hold decoded,
// validated specs (see decode.h); field names follow the Istio API in snake_case. Optional
// fields that Istio leaves unset are std::optional or empty. Nothing here knows JSON or xDS.
namespace mesh::model {

using Labels = std::map<std::string, std::string>;

struct StringMatch {
  // kPresent: the header or parameter only has to be there (an empty match `{}`).
  enum class Type { kExact, kPrefix, kRegex, kPresent };
  Type type = Type::kExact;
  std::string value;
  bool operator==(const StringMatch&) const = default;
};

struct PortSelector {
  uint32_t number = 0;
  bool operator==(const PortSelector&) const = default;
};

struct Destination {
  std::string host;  // as written; resolve with ResolveHost
  std::string subset;
  std::optional<PortSelector> port;
  bool operator==(const Destination&) const = default;
};

struct HeaderOperations {
  std::map<std::string, std::string> set;
  std::map<std::string, std::string> add;
  std::vector<std::string> remove;
  bool operator==(const HeaderOperations&) const = default;
};

struct Headers {
  HeaderOperations request;
  HeaderOperations response;
  bool operator==(const Headers&) const = default;
};

struct HTTPMatchRequest {
  std::string name;
  std::optional<StringMatch> uri, scheme, method, authority;
  std::map<std::string, StringMatch> headers;
  std::map<std::string, StringMatch> without_headers;
  std::map<std::string, StringMatch> query_params;
  uint32_t port = 0;
  Labels source_labels;
  std::vector<std::string> gateways;
  std::string source_namespace;
  bool ignore_uri_case = false;
  bool operator==(const HTTPMatchRequest&) const = default;
};

struct HTTPRouteDestination {
  Destination destination;
  int32_t weight = 0;
  Headers headers;
  bool operator==(const HTTPRouteDestination&) const = default;
};

struct HTTPRedirect {
  std::string uri, authority, scheme;
  uint32_t port = 0;
  uint32_t redirect_code = 301;
  bool operator==(const HTTPRedirect&) const = default;
};

struct HTTPRewrite {
  std::string uri, authority;
  bool operator==(const HTTPRewrite&) const = default;
};

struct HTTPRetry {
  int32_t attempts = 0;
  std::optional<absl::Duration> per_try_timeout;
  std::string retry_on;
  bool operator==(const HTTPRetry&) const = default;
};

struct HTTPFaultInjection {
  struct Delay {
    absl::Duration fixed_delay;
    double percentage = 100;  // 0..100
    bool operator==(const Delay&) const = default;
  };
  struct Abort {
    int32_t http_status = 0;              // one of http_status and grpc_status is set
    std::optional<uint32_t> grpc_status;  // the code of Istio's grpcStatus name ("UNAVAILABLE")
    double percentage = 100;
    bool operator==(const Abort&) const = default;
  };
  std::optional<Delay> delay;
  std::optional<Abort> abort;
  bool operator==(const HTTPFaultInjection&) const = default;
};

struct CorsPolicy {
  std::vector<StringMatch> allow_origins;
  std::vector<std::string> allow_methods, allow_headers, expose_headers;
  std::optional<absl::Duration> max_age;
  std::optional<bool> allow_credentials;
  bool operator==(const CorsPolicy&) const = default;
};

struct HTTPRoute {
  std::string name;
  std::vector<HTTPMatchRequest> match;
  std::vector<HTTPRouteDestination> route;
  std::optional<HTTPRedirect> redirect;
  std::optional<HTTPRewrite> rewrite;
  std::optional<absl::Duration> timeout;
  std::optional<HTTPRetry> retries;
  std::optional<HTTPFaultInjection> fault;
  std::optional<Destination> mirror;
  std::optional<double> mirror_percentage;
  std::optional<CorsPolicy> cors_policy;
  Headers headers;
  bool operator==(const HTTPRoute&) const = default;
};

struct L4MatchAttributes {
  std::vector<std::string> destination_subnets;
  uint32_t port = 0;
  Labels source_labels;
  std::vector<std::string> gateways;
  std::string source_namespace;
  bool operator==(const L4MatchAttributes&) const = default;
};

struct RouteDestination {
  Destination destination;
  int32_t weight = 0;
  bool operator==(const RouteDestination&) const = default;
};

struct TCPRoute {
  std::vector<L4MatchAttributes> match;
  std::vector<RouteDestination> route;
  bool operator==(const TCPRoute&) const = default;
};

struct TLSMatchAttributes {
  std::vector<std::string> sni_hosts;
  std::vector<std::string> destination_subnets;
  uint32_t port = 0;
  Labels source_labels;
  std::vector<std::string> gateways;
  std::string source_namespace;
  bool operator==(const TLSMatchAttributes&) const = default;
};

struct TLSRoute {
  std::vector<TLSMatchAttributes> match;
  std::vector<RouteDestination> route;
  bool operator==(const TLSRoute&) const = default;
};

struct VirtualService {
  std::vector<std::string> hosts;
  std::vector<std::string> gateways;
  std::vector<HTTPRoute> http;
  std::vector<TCPRoute> tcp;
  std::vector<TLSRoute> tls;
  std::vector<std::string> export_to;
  bool operator==(const VirtualService&) const = default;
};

struct LoadBalancerSettings {
  enum class Simple { kUnspecified, kRoundRobin, kLeastConn, kRandom, kPassthrough, kLeastRequest };
  struct ConsistentHash {
    std::string http_header_name;
    struct Cookie {
      std::string name, path;
      std::optional<absl::Duration> ttl;
      bool operator==(const Cookie&) const = default;
    };
    std::optional<Cookie> http_cookie;
    bool use_source_ip = false;
    std::string http_query_parameter_name;
    uint64_t minimum_ring_size = 0;
    bool operator==(const ConsistentHash&) const = default;
  };
  std::optional<Simple> simple;
  std::optional<ConsistentHash> consistent_hash;
  bool operator==(const LoadBalancerSettings&) const = default;
};

struct ConnectionPoolSettings {
  struct Tcp {
    std::optional<int32_t> max_connections;
    std::optional<absl::Duration> connect_timeout;
    std::optional<absl::Duration> max_connection_duration;
    std::optional<absl::Duration> idle_timeout;  // TCP connections without traffic; default 1 h
    bool operator==(const Tcp&) const = default;
  };
  struct Http {
    std::optional<int32_t> http1_max_pending_requests, http2_max_requests,
        max_requests_per_connection, max_retries, max_concurrent_streams;
    std::optional<absl::Duration> idle_timeout;
    std::string h2_upgrade_policy;
    bool use_client_protocol = false;
    bool operator==(const Http&) const = default;
  };
  std::optional<Tcp> tcp;
  std::optional<Http> http;
  bool operator==(const ConnectionPoolSettings&) const = default;
};

struct OutlierDetection {
  std::optional<uint32_t> consecutive_5xx_errors, consecutive_gateway_errors,
      consecutive_local_origin_failures;
  bool split_external_local_origin_errors = false;
  std::optional<absl::Duration> interval, base_ejection_time;
  std::optional<int32_t> max_ejection_percent, min_health_percent;
  bool operator==(const OutlierDetection&) const = default;
};

struct ClientTLSSettings {
  enum class Mode { kDisable, kSimple, kMutual, kIstioMutual };
  Mode mode = Mode::kDisable;
  std::string client_certificate, private_key, ca_certificates, credential_name, sni;
  std::vector<std::string> subject_alt_names;
  bool insecure_skip_verify = false;
  bool operator==(const ClientTLSSettings&) const = default;
};

struct TrafficPolicy {
  struct PortTrafficPolicy {
    PortSelector port;
    std::optional<LoadBalancerSettings> load_balancer;
    std::optional<ConnectionPoolSettings> connection_pool;
    std::optional<OutlierDetection> outlier_detection;
    std::optional<ClientTLSSettings> tls;
    bool operator==(const PortTrafficPolicy&) const = default;
  };
  std::optional<LoadBalancerSettings> load_balancer;
  std::optional<ConnectionPoolSettings> connection_pool;
  std::optional<OutlierDetection> outlier_detection;
  std::optional<ClientTLSSettings> tls;
  std::vector<PortTrafficPolicy> port_level_settings;
  bool operator==(const TrafficPolicy&) const = default;
};

struct Subset {
  std::string name;
  Labels labels;
  std::optional<TrafficPolicy> traffic_policy;
  bool operator==(const Subset&) const = default;
};

struct DestinationRule {
  std::string host;
  std::optional<TrafficPolicy> traffic_policy;
  std::vector<Subset> subsets;
  std::vector<std::string> export_to;
  Labels workload_selector;
  bool operator==(const DestinationRule&) const = default;
};

struct ServerTLSSettings {
  enum class Mode {
    kPassthrough,
    kSimple,
    kMutual,
    kAutoPassthrough,
    kIstioMutual,
    kOptionalMutual
  };
  bool https_redirect = false;
  Mode mode = Mode::kPassthrough;
  std::string server_certificate, private_key, ca_certificates, credential_name;
  std::vector<std::string> subject_alt_names, cipher_suites;
  std::string min_protocol_version, max_protocol_version;
  bool operator==(const ServerTLSSettings&) const = default;
};

struct ServicePort {
  uint32_t number = 0;
  std::string protocol;  // upper case: HTTP, HTTPS, GRPC, HTTP2, MONGO, TCP, TLS
  std::string name;
  uint32_t target_port = 0;
  bool operator==(const ServicePort&) const = default;
};

struct Server {
  ServicePort port;
  std::string bind;
  std::vector<std::string> hosts;  // "[namespace/]host"
  std::optional<ServerTLSSettings> tls;
  std::string name;
  bool operator==(const Server&) const = default;
};

struct Gateway {
  std::vector<Server> servers;
  Labels selector;
  bool operator==(const Gateway&) const = default;
};

struct WorkloadEntry {
  std::string address;
  std::map<std::string, uint32_t> ports;
  Labels labels;
  std::string network, locality, service_account;
  uint32_t weight = 0;
  bool operator==(const WorkloadEntry&) const = default;
};

struct ServiceEntry {
  enum class Location { kMeshExternal, kMeshInternal };
  enum class Resolution { kNone, kStatic, kDns, kDnsRoundRobin };
  std::vector<std::string> hosts;
  std::vector<std::string> addresses;
  std::vector<ServicePort> ports;
  Location location = Location::kMeshExternal;
  Resolution resolution = Resolution::kNone;
  std::vector<WorkloadEntry> endpoints;
  std::optional<Labels> workload_selector;
  std::vector<std::string> export_to, subject_alt_names;
  bool operator==(const ServiceEntry&) const = default;
};

enum class MtlsMode { kUnset, kDisable, kPermissive, kStrict };

// authentication.istio.io/v1alpha1 Policy (the tutorial's voting-policy.yaml).
struct Policy {
  struct Target {
    std::string name;
    std::vector<PortSelector> ports;
    std::vector<std::string> port_names;
    bool operator==(const Target&) const = default;
  };
  std::vector<Target> targets;
  // Mode of the first `peers[].mtls`; kUnset when no peer method is mTLS.
  MtlsMode peer_mtls = MtlsMode::kUnset;
  bool peer_is_optional = false;
  bool operator==(const Policy&) const = default;
};

struct PeerAuthentication {
  std::optional<Labels> selector;
  MtlsMode mtls = MtlsMode::kUnset;
  std::map<uint32_t, MtlsMode> port_level_mtls;
  bool operator==(const PeerAuthentication&) const = default;
};

// security.istio.io AuthorizationPolicy (v1, v1beta1). Values keep Istio's string forms: "*",
// "prefix*" and "*suffix" patterns, CIDRs, port numbers as strings.
struct AuthorizationPolicy {
  enum class Action { kAllow, kDeny, kAudit };
  struct Source {
    std::vector<std::string> principals, not_principals, request_principals, not_request_principals,
        namespaces, not_namespaces, ip_blocks, not_ip_blocks, remote_ip_blocks,
        not_remote_ip_blocks;
    bool operator==(const Source&) const = default;
  };
  struct Operation {
    std::vector<std::string> hosts, not_hosts, ports, not_ports, methods, not_methods, paths,
        not_paths;
    bool operator==(const Operation&) const = default;
  };
  struct Condition {
    std::string key;  // "request.headers[x-token]", "source.ip", ...
    std::vector<std::string> values, not_values;
    bool operator==(const Condition&) const = default;
  };
  // Matches when one `from`, one `to` and every `when` match (an absent list matches anything).
  struct Rule {
    std::vector<Source> from;
    std::vector<Operation> to;
    std::vector<Condition> when;
    bool operator==(const Rule&) const = default;
  };
  std::optional<Labels> selector;
  Action action = Action::kAllow;
  // No rules: an ALLOW policy allows nothing; a DENY or AUDIT policy matches nothing.
  std::vector<Rule> rules;
  bool operator==(const AuthorizationPolicy&) const = default;
};

// security.istio.io RequestAuthentication (v1, v1beta1): which JWTs a workload accepts.
struct RequestAuthentication {
  struct JwtRule {
    struct Header {
      std::string name, prefix;
      bool operator==(const Header&) const = default;
    };
    std::string issuer;
    std::vector<std::string> audiences;
    std::string jwks;      // inline JWKS (JSON)
    std::string jwks_uri;  // or where meshpilot fetches it
    std::vector<Header> from_headers;
    std::vector<std::string> from_params;
    bool forward_original_token = false;
    std::string output_payload_to_header;
    bool operator==(const JwtRule&) const = default;
  };
  std::optional<Labels> selector;
  std::vector<JwtRule> jwt_rules;
  bool operator==(const RequestAuthentication&) const = default;
};

// core/v1 Service: the parts a mesh needs.
struct Service {
  struct Port {
    std::string name;
    uint32_t port = 0;
    uint32_t target_port = 0;      // 0 when unset or named
    std::string target_port_name;  // when targetPort is a name
    std::string protocol = "TCP";
    std::string app_protocol;
    bool operator==(const Port&) const = default;
  };
  std::vector<Port> ports;
  Labels selector;
  std::string type = "ClusterIP";
  std::string cluster_ip, external_name;
  bool operator==(const Service&) const = default;
};

// telemetry.istio.io Telemetry (v1, v1alpha1): the parts meshpilot enforces, access logging
// and tracing.
struct Telemetry {
  enum class Mode { kClientAndServer, kClient, kServer };
  struct AccessLogging {
    std::vector<std::string> providers;  // "envoy" (the only provider meshpilot has)
    bool disabled = false;
    Mode mode = Mode::kClientAndServer;
    bool operator==(const AccessLogging&) const = default;
  };
  // A tag added to every span: a literal, an environment variable of the proxy, or a request
  // header (with a default when it is absent).
  struct CustomTag {
    enum class Kind { kLiteral, kEnvironment, kHeader };
    Kind kind = Kind::kLiteral;
    std::string value;  // the literal, or the variable's or header's name
    std::string default_value;
    bool operator==(const CustomTag&) const = default;
  };
  struct Tracing {
    std::vector<std::string> providers;  // meshConfig extension providers (or "meshpilot")
    std::optional<double> random_sampling_percentage;
    std::optional<bool> disable_span_reporting;
    Mode mode = Mode::kClientAndServer;
    std::map<std::string, CustomTag> custom_tags;
    bool operator==(const Tracing&) const = default;
  };
  std::optional<Labels> selector;
  std::vector<AccessLogging> access_logging;
  std::vector<Tracing> tracing;
  bool operator==(const Telemetry&) const = default;
};

using Spec = std::variant<Gateway, VirtualService, DestinationRule, ServiceEntry, WorkloadEntry,
                          Policy, PeerAuthentication, Service, AuthorizationPolicy,
                          RequestAuthentication, Telemetry>;

}  // namespace mesh::model
