#include "controlplane/model/decode.h"

#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "controlplane/model/decode_internal.h"
#include "controlplane/model/names.h"
#include "controlplane/model/reader.h"
#include "re2/re2.h"

namespace mesh::model {

using nlohmann::json;

// Adds `message` at `path` when it is not empty (the Check* convention).
void Check(FieldErrors* errors, const std::string& path, std::string message) {
  if (!message.empty()) errors->Add(path, std::move(message));
}

Labels ReadLabels(ObjectReader& r, absl::string_view key) {
  Labels labels = r.StringMap(key);
  for (const auto& [k, v] : labels) {
    std::string path = r.Path(key) + "." + k;
    Check(r.errors(), path, CheckLabelKey(k));
    Check(r.errors(), path, CheckLabelValue(v));
  }
  return labels;
}

namespace {

std::optional<StringMatch> ReadStringMatch(const json& value, const std::string& path,
                                           FieldErrors* errors, bool allow_presence) {
  ObjectReader r(&value, path, errors);
  if (!value.is_object()) return std::nullopt;
  std::optional<StringMatch> out;
  int set = 0;
  for (auto [key, type] : {std::pair{"exact", StringMatch::Type::kExact},
                           std::pair{"prefix", StringMatch::Type::kPrefix},
                           std::pair{"regex", StringMatch::Type::kRegex}}) {
    if (std::optional<std::string> s = r.String(key)) {
      ++set;
      out = StringMatch{type, *s};
      if (type == StringMatch::Type::kRegex) {
        RE2 re(*s, RE2::Quiet);
        if (!re.ok()) r.Error(key, absl::StrCat("invalid regex \"", *s, "\": ", re.error()));
      }
    }
  }
  if (set == 0 && allow_presence && value.empty())
    return StringMatch{StringMatch::Type::kPresent, ""};
  if (set != 1) {
    errors->Add(path, "exactly one of exact, prefix or regex must be set");
    return std::nullopt;
  }
  return out;
}

std::map<std::string, StringMatch> ReadStringMatchMap(ObjectReader& r, absl::string_view key,
                                                      bool header_names) {
  std::map<std::string, StringMatch> out;
  r.Map(key, [&](const std::string& name, const json& v, const std::string& path) {
    if (header_names && name != absl::AsciiStrToLower(name)) {
      r.errors()->Add(path, "header names must be lower case");
    }
    if (auto m = ReadStringMatch(v, path, r.errors(), true)) out[name] = *m;
  });
  return out;
}

std::optional<PortSelector> ReadPortSelector(ObjectReader& parent, absl::string_view key) {
  std::optional<PortSelector> out;
  parent.Object(key, [&](ObjectReader& r) {
    r.Required("number");
    if (auto n = r.Port("number")) out = PortSelector{*n};
  });
  return out;
}

Destination ReadDestination(ObjectReader& r) {
  Destination d;
  if (r.Required("host")) {
    if (auto h = r.String("host")) {
      d.host = *h;
      Check(r.errors(), r.Path("host"), CheckHost(*h, false));
    }
  }
  if (auto s = r.String("subset")) {
    d.subset = *s;
    Check(r.errors(), r.Path("subset"), CheckDns1123Label(*s));
  }
  d.port = ReadPortSelector(r, "port");
  return d;
}

Headers ReadHeaders(ObjectReader& parent, absl::string_view key) {
  Headers h;
  parent.Object(key, [&](ObjectReader& r) {
    for (const auto& side :
         {std::pair{"request", &h.request}, std::pair{"response", &h.response}}) {
      auto* ops = side.second;  // a plain variable: lambdas may not capture structured bindings
      r.Object(side.first, [&](ObjectReader& o) {
        ops->set = o.StringMap("set");
        ops->add = o.StringMap("add");
        ops->remove = o.StringList("remove");
      });
    }
  });
  return h;
}

double ReadPercent(ObjectReader& r, absl::string_view key) {
  double out = 100;
  r.Object(key, [&](ObjectReader& p) {
    if (auto v = p.Number("value")) {
      if (*v < 0 || *v > 100)
        p.Error("value", "must be between 0 and 100");
      else
        out = *v;
    }
  });
  return out;
}

// Weights of a route's destinations: each within 0..100, and summing to 100 when there are
// several (Istio's rule; Envoy NACKs weighted clusters that do not add up to the total).
void CheckWeights(FieldErrors* errors, const std::string& route_path,
                  const std::vector<std::pair<bool, int64_t>>& weights) {
  if (weights.size() < 2) return;
  int64_t sum = 0;
  for (auto [valid, w] : weights) {
    if (!valid) return;  // already reported
    sum += w;
  }
  if (sum != 100) errors->Add(route_path, absl::StrCat("weights must sum to 100, not ", sum));
}

// Reads the `destination` and `weight` of one route destination (HTTP or L4), and records the
// weight, or that it was invalid, for CheckWeights.
template <typename T>
T ReadWeightedDestination(ObjectReader& d, std::vector<std::pair<bool, int64_t>>* weights) {
  T dest;
  d.Required("destination");
  d.Object("destination", [&](ObjectReader& o) { dest.destination = ReadDestination(o); });
  bool has = d.Has("weight");
  auto w = d.IntInRange("weight", 0, 100);
  if (w) dest.weight = static_cast<int32_t>(*w);
  weights->emplace_back(!has || w.has_value(), w.value_or(0));
  return dest;
}

const std::vector<absl::string_view> kRetryOn = {"5xx",
                                                 "gateway-error",
                                                 "reset",
                                                 "connect-failure",
                                                 "envoy-ratelimited",
                                                 "retriable-4xx",
                                                 "refused-stream",
                                                 "retriable-status-codes",
                                                 "retriable-headers",
                                                 "cancelled",
                                                 "deadline-exceeded",
                                                 "internal",
                                                 "resource-exhausted",
                                                 "unavailable"};

HTTPRetry ReadRetry(ObjectReader& r) {
  HTTPRetry retry;
  if (auto a = r.IntInRange("attempts", 0, 1000)) retry.attempts = static_cast<int32_t>(*a);
  retry.per_try_timeout = r.Duration("perTryTimeout", absl::Milliseconds(1));
  if (auto on = r.String("retryOn")) {
    retry.retry_on = *on;
    for (absl::string_view item : absl::StrSplit(*on, ',')) {
      item = absl::StripAsciiWhitespace(item);
      int code;
      bool known = std::find(kRetryOn.begin(), kRetryOn.end(), item) != kRetryOn.end();
      if (!known && !(absl::SimpleAtoi(item, &code) && code >= 100 && code <= 599)) {
        r.Error("retryOn", absl::StrCat("unknown retry condition \"", item,
                                        "\": want a status code or one of 5xx, gateway-error, "
                                        "reset, connect-failure, retriable-4xx, refused-stream, "
                                        "retriable-status-codes, ..."));
      }
    }
  }
  r.Bool("retryRemoteLocalities");
  return retry;
}

// Istio's grpcStatus: a status code name in capitals, as gRPC's statuscodes.md lists them. Its
// number (as a string or an integer) is accepted too.
std::optional<uint32_t> GrpcStatusCode(const json& value) {
  static constexpr absl::string_view kNames[] = {"OK",
                                                 "CANCELLED",
                                                 "UNKNOWN",
                                                 "INVALID_ARGUMENT",
                                                 "DEADLINE_EXCEEDED",
                                                 "NOT_FOUND",
                                                 "ALREADY_EXISTS",
                                                 "PERMISSION_DENIED",
                                                 "RESOURCE_EXHAUSTED",
                                                 "FAILED_PRECONDITION",
                                                 "ABORTED",
                                                 "OUT_OF_RANGE",
                                                 "UNIMPLEMENTED",
                                                 "INTERNAL",
                                                 "UNAVAILABLE",
                                                 "DATA_LOSS",
                                                 "UNAUTHENTICATED"};
  int64_t code = -1;
  if (value.is_number_integer()) {
    code = value.get<int64_t>();
  } else if (value.is_string()) {
    const std::string& s = value.get_ref<const std::string&>();
    for (size_t i = 0; i < std::size(kNames); ++i) {
      if (s == kNames[i]) return static_cast<uint32_t>(i);
    }
    if (!absl::SimpleAtoi(s, &code)) return std::nullopt;
  }
  if (code < 0 || code >= static_cast<int64_t>(std::size(kNames))) return std::nullopt;
  return static_cast<uint32_t>(code);
}

HTTPFaultInjection ReadFault(ObjectReader& r) {
  HTTPFaultInjection fault;
  r.Object("delay", [&](ObjectReader& d) {
    HTTPFaultInjection::Delay delay;
    if (!d.Has("fixedDelay") && !d.Has("exponentialDelay")) d.Error("fixedDelay", "is required");
    if (auto v = d.Duration("fixedDelay", absl::Milliseconds(1))) delay.fixed_delay = *v;
    d.Duration("exponentialDelay", absl::Milliseconds(1));
    delay.percentage = ReadPercent(d, "percentage");
    if (auto p = d.IntInRange("percent", 0, 100)) delay.percentage = static_cast<double>(*p);
    fault.delay = delay;
  });
  r.Object("abort", [&](ObjectReader& a) {
    HTTPFaultInjection::Abort abort;
    const int given = a.Has("httpStatus") + a.Has("grpcStatus") + a.Has("http2Error");
    if (given == 0) a.Error("httpStatus", "one of httpStatus and grpcStatus is required");
    if (given > 1) a.Error("grpcStatus", "only one of httpStatus, grpcStatus and http2Error");
    if (auto s = a.IntInRange("httpStatus", 200, 599)) abort.http_status = static_cast<int32_t>(*s);
    if (const json* g = a.Get("grpcStatus")) {
      abort.grpc_status = GrpcStatusCode(*g);
      if (!abort.grpc_status) {
        a.Error("grpcStatus",
                "must be a gRPC status code name such as UNAVAILABLE (or its number, 0-16)");
      }
    }
    if (a.Has("http2Error"))
      a.Error("http2Error", "is not supported; use httpStatus or grpcStatus");
    a.Get("http2Error");
    abort.percentage = ReadPercent(a, "percentage");
    if (auto p = a.IntInRange("percent", 0, 100)) abort.percentage = static_cast<double>(*p);
    fault.abort = abort;
  });
  if (!fault.delay && !fault.abort) r.errors()->Add(r.path(), "delay or abort is required");
  return fault;
}

CorsPolicy ReadCors(ObjectReader& r) {
  CorsPolicy cors;
  r.List("allowOrigins", [&](const json& v, const std::string& path, size_t) {
    if (auto m = ReadStringMatch(v, path, r.errors(), false)) cors.allow_origins.push_back(*m);
  });
  for (const std::string& o : r.StringList("allowOrigin")) {
    cors.allow_origins.push_back(StringMatch{StringMatch::Type::kExact, o});
  }
  cors.allow_methods = r.StringList("allowMethods");
  cors.allow_headers = r.StringList("allowHeaders");
  cors.expose_headers = r.StringList("exposeHeaders");
  cors.max_age = r.Duration("maxAge");
  cors.allow_credentials = r.Bool("allowCredentials");
  return cors;
}

void ReadGatewayRefs(ObjectReader& r, absl::string_view key, std::vector<std::string>* out) {
  *out = r.StringList(key);
  for (size_t i = 0; i < out->size(); ++i) {
    absl::string_view g = (*out)[i];
    absl::string_view name = g;
    if (size_t slash = g.find('/'); slash != absl::string_view::npos) {
      Check(r.errors(), absl::StrCat(r.Path(key), "[", i, "]"),
            CheckDns1123Label(g.substr(0, slash)));
      name = g.substr(slash + 1);
    }
    if (name != "mesh") {
      Check(r.errors(), absl::StrCat(r.Path(key), "[", i, "]"), CheckDns1123Subdomain(name));
    }
  }
}

HTTPMatchRequest ReadHttpMatch(ObjectReader& r) {
  HTTPMatchRequest m;
  m.name = r.String("name").value_or("");
  for (auto [key, field] : {std::pair{"uri", &m.uri}, std::pair{"scheme", &m.scheme},
                            std::pair{"method", &m.method}, std::pair{"authority", &m.authority}}) {
    if (const json* v = r.Get(key)) *field = ReadStringMatch(*v, r.Path(key), r.errors(), false);
  }
  m.headers = ReadStringMatchMap(r, "headers", true);
  m.without_headers = ReadStringMatchMap(r, "withoutHeaders", true);
  m.query_params = ReadStringMatchMap(r, "queryParams", false);
  if (auto p = r.Port("port")) m.port = *p;
  m.source_labels = ReadLabels(r, "sourceLabels");
  ReadGatewayRefs(r, "gateways", &m.gateways);
  m.source_namespace = r.String("sourceNamespace").value_or("");
  m.ignore_uri_case = r.Bool("ignoreUriCase").value_or(false);
  return m;
}

HTTPRoute ReadHttpRoute(ObjectReader& r) {
  HTTPRoute route;
  route.name = r.String("name").value_or("");
  r.ObjectList("match", [&](ObjectReader& m, size_t) { route.match.push_back(ReadHttpMatch(m)); });
  std::vector<std::pair<bool, int64_t>> weights;
  r.ObjectList("route", [&](ObjectReader& d, size_t) {
    auto dest = ReadWeightedDestination<HTTPRouteDestination>(d, &weights);
    dest.headers = ReadHeaders(d, "headers");
    route.route.push_back(std::move(dest));
  });
  CheckWeights(r.errors(), r.Path("route"), weights);
  r.Object("redirect", [&](ObjectReader& o) {
    HTTPRedirect redirect;
    redirect.uri = o.String("uri").value_or("");
    redirect.authority = o.String("authority").value_or("");
    if (auto p = o.Port("port")) redirect.port = *p;
    o.Enum("derivePort", {"FROM_PROTOCOL_DEFAULT", "FROM_REQUEST_PORT"});
    redirect.scheme = o.String("scheme").value_or("");
    if (auto c = o.Int("redirectCode")) {
      if (*c != 301 && *c != 302 && *c != 303 && *c != 307 && *c != 308) {
        o.Error("redirectCode", "must be one of 301, 302, 303, 307, 308");
      } else {
        redirect.redirect_code = static_cast<uint32_t>(*c);
      }
    }
    route.redirect = redirect;
  });
  r.Object("rewrite", [&](ObjectReader& o) {
    HTTPRewrite rewrite;
    rewrite.uri = o.String("uri").value_or("");
    rewrite.authority = o.String("authority").value_or("");
    if (rewrite.uri.empty() && rewrite.authority.empty()) {
      o.errors()->Add(o.path(), "uri or authority is required");
    }
    route.rewrite = rewrite;
  });
  route.timeout = r.Duration("timeout", absl::Milliseconds(1));
  r.Object("retries", [&](ObjectReader& o) { route.retries = ReadRetry(o); });
  r.Object("fault", [&](ObjectReader& o) { route.fault = ReadFault(o); });
  r.Object("mirror", [&](ObjectReader& o) { route.mirror = ReadDestination(o); });
  if (r.Has("mirrorPercentage")) route.mirror_percentage = ReadPercent(r, "mirrorPercentage");
  if (auto p = r.IntInRange("mirrorPercent", 0, 100))
    route.mirror_percentage = static_cast<double>(*p);
  r.Object("corsPolicy", [&](ObjectReader& o) { route.cors_policy = ReadCors(o); });
  route.headers = ReadHeaders(r, "headers");
  r.Get("delegate");  // Istio delegation: accepted, not yet compiled

  if (route.redirect && !route.route.empty()) {
    r.errors()->Add(r.path(), "route and redirect are mutually exclusive");
  } else if (!route.redirect && route.route.empty() && !r.Has("delegate") &&
             !r.Has("directResponse")) {
    r.Error("route", "is required (or redirect)");
  }
  if (route.redirect && route.rewrite)
    r.errors()->Add(r.path(), "rewrite cannot be used with redirect");
  return route;
}

L4MatchAttributes ReadL4Match(ObjectReader& r) {
  L4MatchAttributes m;
  m.destination_subnets = r.StringList("destinationSubnets");
  for (size_t i = 0; i < m.destination_subnets.size(); ++i) {
    Check(r.errors(), absl::StrCat(r.Path("destinationSubnets"), "[", i, "]"),
          CheckIpOrCidr(m.destination_subnets[i]));
  }
  if (auto p = r.Port("port")) m.port = *p;
  m.source_labels = ReadLabels(r, "sourceLabels");
  ReadGatewayRefs(r, "gateways", &m.gateways);
  m.source_namespace = r.String("sourceNamespace").value_or("");
  return m;
}

std::vector<RouteDestination> ReadRouteDestinations(ObjectReader& r) {
  std::vector<RouteDestination> out;
  std::vector<std::pair<bool, int64_t>> weights;
  r.ObjectList("route", [&](ObjectReader& d, size_t) {
    out.push_back(ReadWeightedDestination<RouteDestination>(d, &weights));
  });
  if (out.empty() && !r.Has("route"))
    r.Error("route", "is required");
  else if (out.empty())
    r.Error("route", "must not be empty");
  CheckWeights(r.errors(), r.Path("route"), weights);
  return out;
}

void ReadHosts(ObjectReader& r, absl::string_view key, bool allow_star,
               std::vector<std::string>* out) {
  *out = r.StringList(key);
  for (size_t i = 0; i < out->size(); ++i) {
    Check(r.errors(), absl::StrCat(r.Path(key), "[", i, "]"), CheckHost((*out)[i], allow_star));
  }
}

VirtualService ReadVirtualService(ObjectReader& r) {
  VirtualService vs;
  ReadHosts(r, "hosts", true, &vs.hosts);
  if (vs.hosts.empty()) r.Error("hosts", "at least one host is required");
  ReadGatewayRefs(r, "gateways", &vs.gateways);
  bool mesh_bound = vs.gateways.empty() ||
                    std::find(vs.gateways.begin(), vs.gateways.end(), "mesh") != vs.gateways.end();
  for (size_t i = 0; i < vs.hosts.size(); ++i) {
    if (vs.hosts[i] == "*" && mesh_bound) {
      r.errors()->Add(
          absl::StrCat(r.Path("hosts"), "[", i, "]"),
          "\"*\" is only allowed for a VirtualService bound to gateways, not to the mesh");
    }
  }
  r.ObjectList("http", [&](ObjectReader& o, size_t) { vs.http.push_back(ReadHttpRoute(o)); });
  r.ObjectList("tcp", [&](ObjectReader& o, size_t) {
    TCPRoute route;
    o.ObjectList("match", [&](ObjectReader& m, size_t) { route.match.push_back(ReadL4Match(m)); });
    route.route = ReadRouteDestinations(o);
    vs.tcp.push_back(std::move(route));
  });
  r.ObjectList("tls", [&](ObjectReader& o, size_t) {
    TLSRoute route;
    o.ObjectList("match", [&](ObjectReader& m, size_t) {
      TLSMatchAttributes t;
      m.Required("sniHosts");
      ReadHosts(m, "sniHosts", true, &t.sni_hosts);
      t.destination_subnets = m.StringList("destinationSubnets");
      if (auto p = m.Port("port")) t.port = *p;
      t.source_labels = ReadLabels(m, "sourceLabels");
      ReadGatewayRefs(m, "gateways", &t.gateways);
      t.source_namespace = m.String("sourceNamespace").value_or("");
      route.match.push_back(std::move(t));
    });
    if (route.match.empty()) o.Error("match", "is required");
    route.route = ReadRouteDestinations(o);
    vs.tls.push_back(std::move(route));
  });
  vs.export_to = r.StringList("exportTo");
  if (vs.http.empty() && vs.tcp.empty() && vs.tls.empty()) {
    r.errors()->Add(r.path(), "at least one of http, tcp or tls is required");
  }
  return vs;
}

LoadBalancerSettings ReadLoadBalancer(ObjectReader& r) {
  LoadBalancerSettings lb;
  if (auto s = r.Enum("simple", {"UNSPECIFIED", "ROUND_ROBIN", "LEAST_CONN", "RANDOM",
                                 "PASSTHROUGH", "LEAST_REQUEST"})) {
    using S = LoadBalancerSettings::Simple;
    static const std::map<std::string, S, std::less<>> kModes = {
        {"UNSPECIFIED", S::kUnspecified}, {"ROUND_ROBIN", S::kRoundRobin},
        {"LEAST_CONN", S::kLeastConn},    {"RANDOM", S::kRandom},
        {"PASSTHROUGH", S::kPassthrough}, {"LEAST_REQUEST", S::kLeastRequest}};
    lb.simple = kModes.at(*s);
  }
  r.Object("consistentHash", [&](ObjectReader& c) {
    LoadBalancerSettings::ConsistentHash hash;
    int keys = 0;
    if (auto h = c.String("httpHeaderName")) {
      hash.http_header_name = *h;
      ++keys;
    }
    c.Object("httpCookie", [&](ObjectReader& k) {
      LoadBalancerSettings::ConsistentHash::Cookie cookie;
      k.Required("name");
      cookie.name = k.String("name").value_or("");
      cookie.path = k.String("path").value_or("");
      cookie.ttl = k.Duration("ttl");
      hash.http_cookie = cookie;
      ++keys;
    });
    if (auto s = c.Bool("useSourceIp")) {
      hash.use_source_ip = *s;
      ++keys;
    }
    if (auto q = c.String("httpQueryParameterName")) {
      hash.http_query_parameter_name = *q;
      ++keys;
    }
    if (auto m = c.IntInRange("minimumRingSize", 0, 8 << 20))
      hash.minimum_ring_size = static_cast<uint64_t>(*m);
    c.Get("ringHash");
    c.Get("maglev");
    if (keys != 1) {
      c.errors()->Add(c.path(),
                      "exactly one of httpHeaderName, httpCookie, useSourceIp or "
                      "httpQueryParameterName must be set");
    }
    lb.consistent_hash = hash;
  });
  r.Get("localityLbSetting");  // accepted; locality-aware balancing is not compiled yet
  r.Duration("warmupDurationSecs");
  if (lb.simple && lb.consistent_hash) {
    r.errors()->Add(r.path(), "simple and consistentHash are mutually exclusive");
  }
  return lb;
}

ConnectionPoolSettings ReadConnectionPool(ObjectReader& r) {
  ConnectionPoolSettings pool;
  auto count = [](ObjectReader& o, absl::string_view key) -> std::optional<int32_t> {
    auto v = o.IntInRange(key, 0, INT32_MAX);
    return v ? std::optional<int32_t>(static_cast<int32_t>(*v)) : std::nullopt;
  };
  r.Object("tcp", [&](ObjectReader& t) {
    ConnectionPoolSettings::Tcp tcp;
    tcp.max_connections = count(t, "maxConnections");
    tcp.connect_timeout = t.Duration("connectTimeout", absl::Milliseconds(1));
    tcp.max_connection_duration = t.Duration("maxConnectionDuration", absl::Milliseconds(1));
    tcp.idle_timeout = t.Duration("idleTimeout", absl::Milliseconds(1));
    t.Object("tcpKeepalive", [&](ObjectReader& k) {
      count(k, "probes");
      k.Duration("time");
      k.Duration("interval");
    });
    pool.tcp = tcp;
  });
  r.Object("http", [&](ObjectReader& h) {
    ConnectionPoolSettings::Http http;
    http.http1_max_pending_requests = count(h, "http1MaxPendingRequests");
    http.http2_max_requests = count(h, "http2MaxRequests");
    http.max_requests_per_connection = count(h, "maxRequestsPerConnection");
    http.max_retries = count(h, "maxRetries");
    http.max_concurrent_streams = count(h, "maxConcurrentStreams");
    http.idle_timeout = h.Duration("idleTimeout", absl::Milliseconds(1));
    http.h2_upgrade_policy =
        h.Enum("h2UpgradePolicy", {"DEFAULT", "DO_NOT_UPGRADE", "UPGRADE"}).value_or("");
    http.use_client_protocol = h.Bool("useClientProtocol").value_or(false);
    pool.http = http;
  });
  return pool;
}

OutlierDetection ReadOutlier(ObjectReader& r) {
  OutlierDetection od;
  auto u32 = [&](absl::string_view key) -> std::optional<uint32_t> {
    auto v = r.IntInRange(key, 0, UINT32_MAX);
    return v ? std::optional<uint32_t>(static_cast<uint32_t>(*v)) : std::nullopt;
  };
  od.consecutive_5xx_errors = u32("consecutive5xxErrors");
  if (auto legacy = u32("consecutiveErrors"); legacy && !od.consecutive_5xx_errors) {
    od.consecutive_gateway_errors = legacy;  // Istio maps the deprecated field to gateway errors
  }
  if (auto g = u32("consecutiveGatewayErrors")) od.consecutive_gateway_errors = g;
  od.consecutive_local_origin_failures = u32("consecutiveLocalOriginFailures");
  od.split_external_local_origin_errors = r.Bool("splitExternalLocalOriginErrors").value_or(false);
  od.interval = r.Duration("interval", absl::Milliseconds(1));
  od.base_ejection_time = r.Duration("baseEjectionTime", absl::Milliseconds(1));
  if (auto p = r.IntInRange("maxEjectionPercent", 0, 100))
    od.max_ejection_percent = static_cast<int32_t>(*p);
  if (auto p = r.IntInRange("minHealthPercent", 0, 100))
    od.min_health_percent = static_cast<int32_t>(*p);
  return od;
}

ClientTLSSettings ReadClientTls(ObjectReader& r) {
  ClientTLSSettings tls;
  using M = ClientTLSSettings::Mode;
  static const std::map<std::string, M, std::less<>> kModes = {{"DISABLE", M::kDisable},
                                                               {"SIMPLE", M::kSimple},
                                                               {"MUTUAL", M::kMutual},
                                                               {"ISTIO_MUTUAL", M::kIstioMutual}};
  if (auto m = r.Enum("mode", {"DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"}))
    tls.mode = kModes.at(*m);
  tls.client_certificate = r.String("clientCertificate").value_or("");
  tls.private_key = r.String("privateKey").value_or("");
  tls.ca_certificates = r.String("caCertificates").value_or("");
  tls.credential_name = r.String("credentialName").value_or("");
  tls.subject_alt_names = r.StringList("subjectAltNames");
  tls.sni = r.String("sni").value_or("");
  tls.insecure_skip_verify = r.Bool("insecureSkipVerify").value_or(false);
  if (tls.mode == M::kMutual && tls.credential_name.empty()) {
    if (tls.client_certificate.empty()) r.Error("clientCertificate", "is required for MUTUAL mode");
    if (tls.private_key.empty()) r.Error("privateKey", "is required for MUTUAL mode");
  }
  return tls;
}

TrafficPolicy ReadTrafficPolicy(ObjectReader& r, bool top_level) {
  TrafficPolicy tp;
  r.Object("loadBalancer", [&](ObjectReader& o) { tp.load_balancer = ReadLoadBalancer(o); });
  r.Object("connectionPool", [&](ObjectReader& o) { tp.connection_pool = ReadConnectionPool(o); });
  r.Object("outlierDetection", [&](ObjectReader& o) { tp.outlier_detection = ReadOutlier(o); });
  r.Object("tls", [&](ObjectReader& o) { tp.tls = ReadClientTls(o); });
  r.Get("tunnel");
  r.Get("proxyProtocol");
  if (top_level) {
    std::set<uint32_t> ports;
    r.ObjectList("portLevelSettings", [&](ObjectReader& p, size_t) {
      TrafficPolicy::PortTrafficPolicy ptp;
      p.Required("port");
      if (auto port = ReadPortSelector(p, "port")) {
        ptp.port = *port;
        if (!ports.insert(port->number).second)
          p.Error("port", "duplicate port in portLevelSettings");
      }
      p.Object("loadBalancer", [&](ObjectReader& o) { ptp.load_balancer = ReadLoadBalancer(o); });
      p.Object("connectionPool",
               [&](ObjectReader& o) { ptp.connection_pool = ReadConnectionPool(o); });
      p.Object("outlierDetection",
               [&](ObjectReader& o) { ptp.outlier_detection = ReadOutlier(o); });
      p.Object("tls", [&](ObjectReader& o) { ptp.tls = ReadClientTls(o); });
      tp.port_level_settings.push_back(std::move(ptp));
    });
  }
  return tp;
}

DestinationRule ReadDestinationRule(ObjectReader& r) {
  DestinationRule dr;
  if (r.Required("host")) {
    dr.host = r.String("host").value_or("");
    Check(r.errors(), r.Path("host"), CheckHost(dr.host, false));
  }
  r.Object("trafficPolicy",
           [&](ObjectReader& o) { dr.traffic_policy = ReadTrafficPolicy(o, true); });
  std::set<std::string> names;
  r.ObjectList("subsets", [&](ObjectReader& s, size_t) {
    Subset subset;
    if (s.Required("name")) {
      subset.name = s.String("name").value_or("");
      Check(s.errors(), s.Path("name"), CheckDns1123Label(subset.name));
      if (!names.insert(subset.name).second)
        s.Error("name", absl::StrCat("duplicate subset \"", subset.name, "\""));
    }
    subset.labels = ReadLabels(s, "labels");
    s.Object("trafficPolicy",
             [&](ObjectReader& o) { subset.traffic_policy = ReadTrafficPolicy(o, true); });
    dr.subsets.push_back(std::move(subset));
  });
  dr.export_to = r.StringList("exportTo");
  r.Object("workloadSelector",
           [&](ObjectReader& o) { dr.workload_selector = ReadLabels(o, "matchLabels"); });
  return dr;
}

const std::vector<absl::string_view> kProtocols = {"HTTP",  "HTTPS", "GRPC", "GRPC-WEB", "HTTP2",
                                                   "MONGO", "TCP",   "TLS",  "UDP"};

ServicePort ReadServicePort(ObjectReader& r, bool name_required) {
  ServicePort port;
  r.Required("number");
  if (auto n = r.Port("number")) port.number = *n;
  if (name_required) r.Required("name");
  port.name = r.String("name").value_or("");
  if (auto p = r.String("protocol")) {
    std::string upper = absl::AsciiStrToUpper(*p);
    if (std::find(kProtocols.begin(), kProtocols.end(), upper) == kProtocols.end()) {
      r.Error("protocol",
              "must be one of HTTP, HTTPS, GRPC, GRPC-WEB, HTTP2, MONGO, TCP, TLS, UDP");
    }
    port.protocol = upper;
  } else if (name_required || r.Has("number")) {
    r.Required("protocol");
  }
  if (auto t = r.Port("targetPort")) port.target_port = *t;
  return port;
}

Gateway ReadGateway(ObjectReader& r) {
  Gateway gw;
  gw.selector = ReadLabels(r, "selector");
  r.ObjectList("servers", [&](ObjectReader& s, size_t) {
    Server server;
    s.Required("port");
    s.Object("port", [&](ObjectReader& p) { server.port = ReadServicePort(p, false); });
    server.bind = s.String("bind").value_or("");
    server.hosts = s.StringList("hosts");
    if (server.hosts.empty()) s.Error("hosts", "at least one host is required");
    for (size_t i = 0; i < server.hosts.size(); ++i) {
      absl::string_view h = server.hosts[i];
      std::string path = absl::StrCat(s.Path("hosts"), "[", i, "]");
      if (size_t slash = h.find('/'); slash != absl::string_view::npos) {
        absl::string_view ns = h.substr(0, slash);
        if (ns != "*" && ns != "." && ns != "~") Check(s.errors(), path, CheckDns1123Label(ns));
        h = h.substr(slash + 1);
      }
      Check(s.errors(), path, CheckHost(h, true));
    }
    s.Object("tls", [&](ObjectReader& t) {
      ServerTLSSettings tls;
      using M = ServerTLSSettings::Mode;
      static const std::map<std::string, M, std::less<>> kModes = {
          {"PASSTHROUGH", M::kPassthrough},
          {"SIMPLE", M::kSimple},
          {"MUTUAL", M::kMutual},
          {"AUTO_PASSTHROUGH", M::kAutoPassthrough},
          {"ISTIO_MUTUAL", M::kIstioMutual},
          {"OPTIONAL_MUTUAL", M::kOptionalMutual}};
      tls.https_redirect = t.Bool("httpsRedirect").value_or(false);
      bool has_mode = t.Has("mode");
      if (auto m = t.Enum("mode", {"PASSTHROUGH", "SIMPLE", "MUTUAL", "AUTO_PASSTHROUGH",
                                   "ISTIO_MUTUAL", "OPTIONAL_MUTUAL"})) {
        tls.mode = kModes.at(*m);
      }
      tls.server_certificate = t.String("serverCertificate").value_or("");
      tls.private_key = t.String("privateKey").value_or("");
      tls.ca_certificates = t.String("caCertificates").value_or("");
      tls.credential_name = t.String("credentialName").value_or("");
      tls.subject_alt_names = t.StringList("subjectAltNames");
      t.StringList("verifyCertificateSpki");
      t.StringList("verifyCertificateHash");
      tls.cipher_suites = t.StringList("cipherSuites");
      tls.min_protocol_version =
          t.Enum("minProtocolVersion", {"TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3"})
              .value_or("");
      tls.max_protocol_version =
          t.Enum("maxProtocolVersion", {"TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3"})
              .value_or("");
      bool needs_cert =
          tls.mode == M::kSimple || tls.mode == M::kMutual || tls.mode == M::kOptionalMutual;
      if (has_mode && needs_cert && tls.credential_name.empty()) {
        if (tls.server_certificate.empty())
          t.Error("serverCertificate",
                  "is required for SIMPLE and MUTUAL modes unless credentialName is set");
        if (tls.private_key.empty())
          t.Error("privateKey",
                  "is required for SIMPLE and MUTUAL modes unless credentialName is set");
        if (tls.mode != M::kSimple && tls.ca_certificates.empty())
          t.Error("caCertificates", "is required for MUTUAL mode unless credentialName is set");
      }
      server.tls = tls;
    });
    const std::string& proto = server.port.protocol;
    if ((proto == "HTTPS" || proto == "TLS") && !server.tls) {
      s.Error("tls", absl::StrCat("is required for protocol ", proto));
    }
    if ((proto == "HTTP" || proto == "TCP") && server.tls && !server.tls->https_redirect &&
        s.Has("tls")) {
      // TLS settings on a plain-text port mean nothing unless they ask for an HTTPS redirect.
      if (server.tls->mode != ServerTLSSettings::Mode::kPassthrough ||
          !server.tls->server_certificate.empty()) {
        s.Error("tls",
                absl::StrCat("only httpsRedirect is allowed on a plain-text ", proto, " port"));
      }
    }
    server.name = s.String("name").value_or("");
    s.Get("defaultEndpoint");
    gw.servers.push_back(std::move(server));
  });
  if (gw.servers.empty()) r.Error("servers", "at least one server is required");
  return gw;
}

std::string CheckAddress(absl::string_view a) {
  if (IsIpAddress(a) || absl::StartsWith(a, "unix://")) return "";
  std::string host_error = CheckHost(a, false);
  if (host_error.empty() && !absl::StartsWith(a, "*")) return "";
  return absl::StrCat("\"", a, "\" is not an IP address, host name or unix:// path");
}

WorkloadEntry ReadWorkloadEntry(ObjectReader& r, bool address_required) {
  WorkloadEntry we;
  if (address_required && !r.Has("network")) r.Required("address");
  if (auto a = r.String("address")) {
    we.address = *a;
    Check(r.errors(), r.Path("address"), CheckAddress(*a));
  }
  r.Map("ports", [&](const std::string& name, const json& v, const std::string& path) {
    if (!v.is_number_integer() || v.get<int64_t>() < 1 || v.get<int64_t>() > 65535) {
      r.errors()->Add(path, "must be between 1 and 65535");
    } else {
      we.ports[name] = v.get<uint32_t>();
    }
  });
  we.labels = ReadLabels(r, "labels");
  we.network = r.String("network").value_or("");
  we.locality = r.String("locality").value_or("");
  if (auto w = r.IntInRange("weight", 0, UINT32_MAX)) we.weight = static_cast<uint32_t>(*w);
  if (auto sa = r.String("serviceAccount")) {
    we.service_account = *sa;
    Check(r.errors(), r.Path("serviceAccount"), CheckDns1123Subdomain(*sa));
  }
  return we;
}

ServiceEntry ReadServiceEntry(ObjectReader& r) {
  ServiceEntry se;
  ReadHosts(r, "hosts", false, &se.hosts);
  if (se.hosts.empty()) r.Error("hosts", "at least one host is required");
  se.addresses = r.StringList("addresses");
  for (size_t i = 0; i < se.addresses.size(); ++i) {
    Check(r.errors(), absl::StrCat(r.Path("addresses"), "[", i, "]"),
          CheckIpOrCidr(se.addresses[i]));
  }
  std::set<uint32_t> numbers;
  std::set<std::string> names;
  r.ObjectList("ports", [&](ObjectReader& p, size_t) {
    ServicePort port = ReadServicePort(p, true);
    if (port.number && !numbers.insert(port.number).second)
      p.Error("number", "duplicate port number");
    if (!port.name.empty() && !names.insert(port.name).second)
      p.Error("name", "duplicate port name");
    se.ports.push_back(std::move(port));
  });
  if (se.ports.empty()) r.Error("ports", "at least one port is required");
  if (auto l = r.Enum("location", {"MESH_EXTERNAL", "MESH_INTERNAL"})) {
    se.location = *l == "MESH_INTERNAL" ? ServiceEntry::Location::kMeshInternal
                                        : ServiceEntry::Location::kMeshExternal;
  }
  if (auto res = r.Enum("resolution", {"NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN"})) {
    using R = ServiceEntry::Resolution;
    se.resolution = *res == "STATIC"            ? R::kStatic
                    : *res == "DNS"             ? R::kDns
                    : *res == "DNS_ROUND_ROBIN" ? R::kDnsRoundRobin
                                                : R::kNone;
  }
  r.ObjectList("endpoints", [&](ObjectReader& e, size_t) {
    WorkloadEntry we = ReadWorkloadEntry(e, true);
    if (se.resolution == ServiceEntry::Resolution::kStatic && !we.address.empty() &&
        !IsIpAddress(we.address) && !absl::StartsWith(we.address, "unix://")) {
      e.Error("address", "must be an IP address when resolution is STATIC");
    }
    se.endpoints.push_back(std::move(we));
  });
  r.Object("workloadSelector",
           [&](ObjectReader& o) { se.workload_selector = ReadLabels(o, "labels"); });
  if (se.workload_selector && !se.endpoints.empty()) {
    r.errors()->Add(r.path(), "endpoints and workloadSelector are mutually exclusive");
  }
  if (se.resolution == ServiceEntry::Resolution::kStatic && se.endpoints.empty() &&
      !se.workload_selector) {
    r.Error("endpoints", "are required when resolution is STATIC (or a workloadSelector)");
  }
  se.export_to = r.StringList("exportTo");
  se.subject_alt_names = r.StringList("subjectAltNames");
  return se;
}

MtlsMode ParseMtlsMode(const std::string& s) {
  if (s == "STRICT") return MtlsMode::kStrict;
  if (s == "PERMISSIVE") return MtlsMode::kPermissive;
  if (s == "DISABLE") return MtlsMode::kDisable;
  return MtlsMode::kUnset;
}

Policy ReadPolicy(ObjectReader& r) {
  Policy policy;
  r.ObjectList("targets", [&](ObjectReader& t, size_t) {
    Policy::Target target;
    if (t.Required("name")) {
      target.name = t.String("name").value_or("");
      Check(t.errors(), t.Path("name"), CheckDns1123Label(target.name));
    }
    t.ObjectList("ports", [&](ObjectReader& p, size_t) {
      if (p.Has("number") == p.Has("name")) {
        p.errors()->Add(p.path(), "exactly one of number or name must be set");
      }
      if (auto n = p.Port("number")) target.ports.push_back(PortSelector{*n});
      if (auto n = p.String("name")) target.port_names.push_back(*n);
    });
    policy.targets.push_back(std::move(target));
  });
  r.List("peers", [&](const json& v, const std::string& path, size_t) {
    ObjectReader peer(&v, path, r.errors());
    if (!v.is_object()) return;
    bool has_mtls = v.contains("mtls");
    if (has_mtls == peer.Has("jwt")) {
      r.errors()->Add(path, "exactly one of mtls or jwt must be set");
    }
    peer.Get("jwt");
    if (has_mtls) {
      peer.Get("mtls");
      // `mtls:` with no body means STRICT, as in Istio.
      MtlsMode mode = MtlsMode::kStrict;
      ObjectReader m(v["mtls"].is_null() ? nullptr : &v["mtls"], path + ".mtls", r.errors());
      if (auto s = m.Enum("mode", {"STRICT", "PERMISSIVE"})) mode = ParseMtlsMode(*s);
      m.Bool("allowTls");
      if (policy.peer_mtls == MtlsMode::kUnset) policy.peer_mtls = mode;
    }
  });
  policy.peer_is_optional = r.Bool("peerIsOptional").value_or(false);
  r.Get("origins");
  r.Bool("originIsOptional");
  r.Enum("principalBinding", {"USE_PEER", "USE_ORIGIN"});
  return policy;
}

PeerAuthentication ReadPeerAuthentication(ObjectReader& r) {
  PeerAuthentication pa;
  r.Object("selector", [&](ObjectReader& s) { pa.selector = ReadLabels(s, "matchLabels"); });
  const std::vector<absl::string_view> modes = {"UNSET", "DISABLE", "PERMISSIVE", "STRICT"};
  r.Object("mtls", [&](ObjectReader& m) {
    if (auto s = m.Enum("mode", modes)) pa.mtls = ParseMtlsMode(*s);
  });
  r.Map("portLevelMtls", [&](const std::string& key, const json& v, const std::string& path) {
    int port;
    if (!absl::SimpleAtoi(key, &port) || port < 1 || port > 65535) {
      r.errors()->Add(path, "port must be a number between 1 and 65535");
      return;
    }
    ObjectReader m(&v, path, r.errors());
    MtlsMode mode = MtlsMode::kUnset;
    if (auto s = m.Enum("mode", modes)) mode = ParseMtlsMode(*s);
    pa.port_level_mtls[static_cast<uint32_t>(port)] = mode;
  });
  if (!pa.port_level_mtls.empty() && (!pa.selector || pa.selector->empty())) {
    r.Error("portLevelMtls", "requires a workload selector");
  }
  return pa;
}

Service ReadService(ObjectReader& r) {
  Service svc;
  svc.type = r.Enum("type", {"ClusterIP", "NodePort", "LoadBalancer", "ExternalName"})
                 .value_or("ClusterIP");
  svc.selector = ReadLabels(r, "selector");
  std::set<std::string> names;
  std::set<std::pair<uint32_t, std::string>> ports;
  r.ObjectList("ports", [&](ObjectReader& p, size_t) {
    Service::Port port;
    p.Required("port");
    if (auto n = p.Port("port")) port.port = *n;
    if (auto n = p.String("name")) {
      port.name = *n;
      Check(p.errors(), p.Path("name"), CheckDns1123Label(*n));
      if (!names.insert(*n).second)
        p.Error("name", absl::StrCat("duplicate port name \"", *n, "\""));
    }
    if (const json* t = p.Get("targetPort")) {
      if (t->is_number_integer()) {
        int64_t v = t->get<int64_t>();
        if (v < 1 || v > 65535)
          p.Error("targetPort", "must be between 1 and 65535");
        else
          port.target_port = static_cast<uint32_t>(v);
      } else if (t->is_string()) {
        port.target_port_name = t->get<std::string>();
        Check(p.errors(), p.Path("targetPort"), CheckDns1123Label(port.target_port_name));
      } else {
        p.Error("targetPort", "must be a port number or a port name");
      }
    }
    port.protocol = p.Enum("protocol", {"TCP", "UDP", "SCTP"}).value_or("TCP");
    port.app_protocol = p.String("appProtocol").value_or("");
    p.IntInRange("nodePort", 1, 65535);
    if (port.port && !ports.insert({port.port, port.protocol}).second) {
      p.Error("port", absl::StrCat("duplicate port ", port.port, "/", port.protocol));
    }
    svc.ports.push_back(std::move(port));
  });
  if (svc.ports.size() > 1) {
    for (size_t i = 0; i < svc.ports.size(); ++i) {
      if (svc.ports[i].name.empty()) {
        r.errors()->Add(absl::StrCat(r.Path("ports"), "[", i, "].name"),
                        "is required when a service has more than one port");
      }
    }
  }
  if (svc.ports.empty() && svc.type != "ExternalName")
    r.Error("ports", "at least one port is required");
  svc.cluster_ip = r.String("clusterIP").value_or("");
  if (!svc.cluster_ip.empty() && svc.cluster_ip != "None" && !IsIpAddress(svc.cluster_ip)) {
    r.Error("clusterIP", "must be an IP address or None");
  }
  r.StringList("clusterIPs");
  svc.external_name = r.String("externalName").value_or("");
  if (svc.type == "ExternalName" && svc.external_name.empty()) {
    r.Error("externalName", "is required when type is ExternalName");
  }
  r.Enum("sessionAffinity", {"None", "ClientIP"});
  r.Get("sessionAffinityConfig");
  r.Enum("externalTrafficPolicy", {"Cluster", "Local"});
  r.Enum("internalTrafficPolicy", {"Cluster", "Local"});
  r.StringList("ipFamilies");
  r.Enum("ipFamilyPolicy", {"SingleStack", "PreferDualStack", "RequireDualStack"});
  r.Bool("publishNotReadyAddresses");
  r.String("loadBalancerIP");
  r.StringList("loadBalancerSourceRanges");
  r.String("loadBalancerClass");
  r.StringList("externalIPs");
  r.IntInRange("healthCheckNodePort", 1, 65535);
  r.Bool("allocateLoadBalancerNodePorts");
  return svc;
}

Spec ReadSpec(Kind kind, ObjectReader& r, const DecodeOptions& options) {
  switch (kind) {
    case Kind::kGateway: return ReadGateway(r);
    case Kind::kVirtualService: return ReadVirtualService(r);
    case Kind::kDestinationRule: return ReadDestinationRule(r);
    case Kind::kServiceEntry: return ReadServiceEntry(r);
    case Kind::kWorkloadEntry: return ReadWorkloadEntry(r, true);
    case Kind::kPolicy: return ReadPolicy(r);
    case Kind::kPeerAuthentication: return ReadPeerAuthentication(r);
    case Kind::kService: return ReadService(r);
    case Kind::kAuthorizationPolicy: return ReadAuthorizationPolicy(r);
    case Kind::kRequestAuthentication: return ReadRequestAuthentication(r);
    case Kind::kTelemetry: return ReadTelemetry(r, options.tracing_providers);
  }
  return Gateway{};
}

// Istio kinds meshpilot does not enforce: refused by default, or skipped with a note when the
// operator asks for it (so that a whole folder of Istio manifests can be applied).
const std::set<absl::string_view> kUnservedIstioKinds = {"Sidecar", "EnvoyFilter", "WorkloadGroup",
                                                         "ProxyConfig", "WasmPlugin"};

}  // namespace

std::vector<json> ExpandDocuments(std::vector<json> docs) {
  std::vector<json> out;
  for (json& d : docs) {
    if (d.is_array()) {
      for (json& e : d) out.push_back(std::move(e));
    } else if (d.is_object() && d.contains("kind") && d["kind"] == "List" && d.contains("items") &&
               d["items"].is_array()) {
      for (json& e : d["items"]) out.push_back(std::move(e));
    } else {
      out.push_back(std::move(d));
    }
  }
  return out;
}

std::string FormatError(absl::string_view display, const FieldError& error) {
  if (error.path.empty()) return absl::StrCat(display, ": ", error.message);
  return absl::StrCat(display, ": ", error.path, ": ", error.message);
}

DecodedDocument DecodeDocument(const json& doc, absl::string_view default_namespace, size_t index,
                               const DecodeOptions& options) {
  DecodedDocument out;
  out.display = absl::StrCat("document ", index);
  FieldErrors errors;
  if (!doc.is_object()) {
    out.errors.push_back({"", "must be an object with apiVersion, kind, metadata and spec"});
    return out;
  }
  if (doc.contains("apiVersion") && doc["apiVersion"].is_string())
    out.api_version = doc["apiVersion"];
  if (doc.contains("kind") && doc["kind"].is_string()) out.kind = doc["kind"];
  const json* meta = doc.contains("metadata") ? &doc["metadata"] : nullptr;
  if (meta && meta->is_object()) {
    if (meta->contains("name") && (*meta)["name"].is_string()) out.name = (*meta)["name"];
    if (meta->contains("namespace") && (*meta)["namespace"].is_string())
      out.ns = (*meta)["namespace"];
  }
  if (out.ns.empty()) out.ns = std::string(default_namespace);
  if (!out.kind.empty() && !out.name.empty()) {
    out.display = absl::StrCat(out.kind, " ", out.ns, "/", out.name);
  } else if (!out.kind.empty()) {
    out.display = absl::StrCat(out.kind, " (document ", index, ")");
  }

  if (out.api_version.empty() || out.kind.empty()) {
    if (out.api_version.empty()) out.errors.push_back({"apiVersion", "is required"});
    if (out.kind.empty()) out.errors.push_back({"kind", "is required"});
    return out;
  }
  absl::string_view group, version;
  SplitApiVersion(out.api_version, &group, &version);
  const KindInfo* kind = FindByGroupKind(group, out.kind);
  if (!kind) {
    if (IsIstioGroup(group) && !kUnservedIstioKinds.count(out.kind)) {
      out.errors.push_back({"kind", absl::StrCat("unknown kind ", out.kind, " in ", group)});
      return out;
    }
    if (IsIstioGroup(group) && !options.allow_unenforced_kinds) {
      out.errors.push_back(
          {"kind", absl::StrCat(out.kind, " (", group,
                                ") is not enforced by meshpilot: applying it would change "
                                "nothing. Remove it, or start meshpilot with "
                                "--allow-unenforced-kinds to skip such documents")});
      return out;
    }
    out.outcome = DecodedDocument::Outcome::kSkipped;
    out.skip_reason = IsIstioGroup(group)
                          ? absl::StrCat(out.kind, " is not served by meshpilot")
                          : absl::StrCat(out.api_version, " ", out.kind, " is not a mesh resource");
    return out;
  }
  if (!kind->ServesVersion(version)) {
    std::string versions;
    for (auto v : kind->versions) absl::StrAppend(&versions, versions.empty() ? "" : ", ", v);
    out.errors.push_back({"apiVersion", absl::StrCat(out.api_version, " is not served for ",
                                                     kind->name, "; use version ", versions)});
    return out;
  }

  Object object;
  object.kind = kind;
  object.api_version = out.api_version;
  {
    ObjectReader root(&doc, "", &errors);
    root.Get("apiVersion");
    root.Get("kind");
    root.Get("status");  // server-owned; ignored on input as Kubernetes does
    if (root.Required("metadata")) {
      root.Object("metadata", [&](ObjectReader& m) {
        if (m.Required("name")) {
          object.meta.name = m.String("name").value_or("");
          Check(&errors, m.Path("name"),
                kind->kind == Kind::kService ? CheckDns1123Label(object.meta.name)
                                             : CheckDns1123Subdomain(object.meta.name));
        }
        if (auto ns = m.String("namespace"))
          Check(&errors, m.Path("namespace"), CheckDns1123Label(*ns));
        object.meta.namespace_ = out.ns;
        object.meta.labels = ReadLabels(m, "labels");
        object.meta.annotations = m.StringMap("annotations");
        if (const json* rv = m.Get("resourceVersion")) {
          int64_t n;
          if (!rv->is_string() || !absl::SimpleAtoi(rv->get<std::string>(), &n) || n <= 0) {
            m.Error("resourceVersion", "must be a positive integer in a string");
          } else {
            object.meta.resource_version = rv->get<std::string>();
          }
        }
        object.meta.uid = m.String("uid").value_or("");
        object.meta.creation_timestamp = m.String("creationTimestamp").value_or("");
        object.meta.generation = m.Int("generation").value_or(0);
      });
    }
    if (root.Required("spec")) {
      root.Object("spec", [&](ObjectReader& s) { object.spec = ReadSpec(kind->kind, s, options); });
      object.spec_json = doc["spec"];
    }
  }
  out.errors = errors.list();
  if (out.errors.empty()) {
    out.outcome = DecodedDocument::Outcome::kObject;
    out.object = std::move(object);
  }
  return out;
}

}  // namespace mesh::model
