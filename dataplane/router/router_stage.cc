#include "dataplane/router/router_stage.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "dataplane/router/router.h"

namespace mesh::dataplane {
namespace {

bool Chance(uint32_t per_million, const std::function<uint64_t()>& random) {
  return per_million >= 1'000'000 || random() % 1'000'000 < per_million;
}

RequestView ViewOf(const RequestHead& head, bool tls) {
  RequestView view;
  view.method = head.method;
  view.authority = head.authority;
  view.path = head.path;
  view.tls = tls;
  view.headers.reserve(head.headers.size());
  for (const HeaderMap::Field& f : head.headers) view.headers.emplace_back(f.name, f.value);
  return view;
}

LocalReply Reply(int status, std::string body, HeaderPairs headers = {}, std::string flags = "") {
  return LocalReply{status, std::move(body), std::move(headers), std::nullopt, std::move(flags)};
}

}  // namespace

void StripHopByHop(HeaderMap& headers, bool keep_upgrade) {
  std::vector<std::string> named;
  headers.ForEachElement("connection", [&](absl::string_view token) {
    if (!absl::EqualsIgnoreCase(token, "close") && !absl::EqualsIgnoreCase(token, "keep-alive") &&
        !(keep_upgrade && absl::EqualsIgnoreCase(token, "upgrade"))) {
      named.emplace_back(absl::AsciiStrToLower(token));
    }
  });
  for (const std::string& name : named) headers.Remove(name);
  static constexpr absl::string_view kHopByHop[] = {
      "connection", "keep-alive", "proxy-connection",   "transfer-encoding",
      "trailer",    "expect",     "proxy-authorization"};
  for (absl::string_view name : kHopByHop) headers.Remove(name);
  if (!keep_upgrade) headers.Remove("upgrade");
  if (const std::string* te = headers.Get("te")) {
    // Only "te: trailers" crosses a hop (gRPC needs it over HTTP/2).
    bool trailers = absl::StrContains(absl::AsciiStrToLower(*te), "trailers");
    headers.Remove("te");
    if (trailers) headers.Add("te", "trailers");
  }
}

void ApplyHeaderOps(HeaderMap& headers, const std::vector<std::string>& remove,
                    const std::vector<HeaderOp>& add) {
  for (const std::string& name : remove) headers.Remove(absl::AsciiStrToLower(name));
  for (const HeaderOp& op : add) {
    if (op.overwrite) {
      headers.Set(op.name, op.value);
    } else {
      headers.Add(op.name, op.value);
    }
  }
}

namespace {

// The fault filter runs before the router: a delay (into `out`), then an abort (returned).
std::optional<LocalReply> ApplyFault(const Route& route, const std::function<uint64_t()>& random,
                                     RoutingResult* out) {
  if (!route.fault) return std::nullopt;
  const FaultPolicy& fault = *route.fault;
  if (fault.delay && Chance(fault.delay_per_million, random)) out->delay = *fault.delay;
  if (!fault.aborts() || !Chance(fault.abort_per_million, random)) return std::nullopt;
  LocalReply reply = Reply(static_cast<int>(fault.abort_status), "fault filter abort", {}, "FI");
  reply.grpc_status = fault.abort_grpc_status;
  return reply;
}

// CORS: a preflight from an allowed origin is answered here (returned); other requests from it
// get the allow headers on their response (into `out`).
std::optional<LocalReply> ApplyCors(const Route& route, const RequestHead& head,
                                    RoutingResult* out) {
  const std::string* origin = head.headers.Get("origin");
  if (!route.cors || !origin) return std::nullopt;
  const CorsPolicy& cors = *route.cors;
  bool allowed = false;
  for (const StringPattern& p : cors.allow_origins) allowed = allowed || p.Matches(*origin);
  if (!allowed) return std::nullopt;
  HeaderPairs& headers = out->response_headers;
  headers.emplace_back("access-control-allow-origin", *origin);
  if (cors.allow_credentials.value_or(false))
    headers.emplace_back("access-control-allow-credentials", "true");
  if (head.method == "OPTIONS" && head.headers.Get("access-control-request-method")) {
    auto add = [&](const char* name, const std::string& value) {
      if (!value.empty()) headers.emplace_back(name, value);
    };
    add("access-control-allow-methods", cors.allow_methods);
    add("access-control-allow-headers", cors.allow_headers);
    add("access-control-max-age", cors.max_age);
    LocalReply reply = Reply(200, "", std::move(headers));
    headers.clear();
    return reply;
  }
  if (!cors.expose_headers.empty())
    headers.emplace_back("access-control-expose-headers", cors.expose_headers);
  return std::nullopt;
}

// Why `cluster` cannot take the request now (Envoy's 503 forms), or nothing.
std::optional<LocalReply> RefuseCluster(const Cluster* cluster, const std::string& name) {
  if (!cluster) {
    return Reply(503, absl::StrCat("cluster not found: ", name),
                 {{"x-meshproxy-reason", "cluster_not_found"}}, "NC");
  }
  if (cluster->hosts.empty())
    return Reply(503, "no healthy upstream", {{"x-meshproxy-reason", "no_healthy_upstream"}}, "UH");
  if (cluster->tls && cluster->tls->unsupported) {
    return Reply(503, "upstream TLS settings (credentialName) not supported by meshproxy",
                 {{"x-meshproxy-reason", "upstream_tls_unsupported"}});
  }
  if (cluster->state->requests.load(std::memory_order_relaxed) >= cluster->limits.max_requests) {
    return Reply(
        503, "upstream connect error or disconnect/reset before headers. reset reason: overflow",
        {{"x-envoy-overloaded", "true"}, {"x-meshproxy-reason", "overflow_max_requests"}}, "UO");
  }
  return std::nullopt;
}

// The request as it goes upstream: hop-by-hop headers out, rewrites, the route's and the
// target's header operations, and the forwarding headers.
void PrepareUpstreamHead(const Route& route, const WeightedTarget& target,
                         const DownstreamInfo& downstream, RequestHead& head) {
  StripHopByHop(head.headers, !head.upgrade.empty());
  if (!route.prefix_rewrite.empty()) head.path = RewritePath(route, head.path);
  if (!route.host_rewrite.empty()) head.authority = route.host_rewrite;
  ApplyHeaderOps(head.headers, route.request_headers_to_remove, route.request_headers_to_add);
  ApplyHeaderOps(head.headers, target.request_headers_to_remove, target.request_headers_to_add);
  if (downstream.append_forwarded_for && !downstream.peer_ip.empty()) {
    const std::string* xff = head.headers.Get("x-forwarded-for");
    head.headers.Set("x-forwarded-for",
                     xff ? absl::StrCat(*xff, ", ", downstream.peer_ip) : downstream.peer_ip);
  }
  // Who the client is, as the mTLS handshake proved it (Envoy's XFCC); never a client's claim.
  if (!downstream.peer_identity.empty()) {
    head.headers.Set("x-forwarded-client-cert", absl::StrCat("By=", downstream.local_identity,
                                                             ";URI=", downstream.peer_identity));
  } else {
    head.headers.Remove("x-forwarded-client-cert");
  }
  if (!head.headers.Get("x-forwarded-proto"))
    head.headers.Add("x-forwarded-proto", downstream.tls ? "https" : "http");
}

}  // namespace

RoutingResult RouteRequest(const RouteTable* routes, const ClusterTable* clusters,
                           RequestHead& head, const DownstreamInfo& downstream,
                           const std::function<uint64_t()>& random) {
  RoutingResult out;
  if (!routes) {
    out.reply = Reply(503, "listener has no route configuration yet", {}, "NR");
    return out;
  }
  RequestView view = ViewOf(head, downstream.tls);
  Decision d = Decide(*routes, view, random());
  switch (d.kind) {
    case Decision::Kind::kNoRoute:
      out.reply = Reply(404, absl::StrCat("no route for ", head.authority, head.path), {}, "NR");
      return out;
    case Decision::Kind::kRedirect:
      out.reply = Reply(d.status, "", {{"location", d.location}});
      return out;
    case Decision::Kind::kDirect: out.reply = Reply(d.status, ""); return out;
    case Decision::Kind::kForward: break;
  }
  const Route& route = *d.route;
  out.route = d.route;
  out.target = d.target;
  std::string set_cookie;
  out.hash = RequestHash(route, view, downstream.peer_ip, random(), &set_cookie);
  if (!set_cookie.empty()) out.response_headers.emplace_back("set-cookie", set_cookie);
  if ((out.reply = ApplyFault(route, random, &out))) return out;
  if ((out.reply = ApplyCors(route, head, &out))) return out;
  const Cluster* cluster = clusters ? clusters->Find(d.target->cluster) : nullptr;
  if ((out.reply = RefuseCluster(cluster, d.target->cluster))) return out;
  out.cluster = cluster;
  for (const MirrorPolicy& m : route.mirrors) {
    if (Chance(m.per_million, random)) out.mirrors.push_back(&m);
  }
  PrepareUpstreamHead(route, *d.target, downstream, head);
  return out;
}

}  // namespace mesh::dataplane
