#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "dataplane/config/route_table.h"
#include "dataplane/router/local_reply.h"
#include "dataplane/stream/stream.h"
#include "dataplane/upstream/cluster_table.h"

// The router stage: everything the proxy decides about a request from its head and the config
// alone, before any upstream is involved. It matches the route (Decide), and answers locally
// where Envoy's filters would (no route, redirect, direct response, fault abort, CORS preflight,
// unknown cluster, no healthy host, overflow); otherwise it names the cluster and rewrites the
// head for the upstream. No sockets and no clock: unit-tested case by case.
namespace mesh::dataplane {

// What the stream layer knows of the connection a request came on.
struct DownstreamInfo {
  std::string peer_ip;
  std::string peer_address, local_address;  // ip:port of either end (access logs)
  bool tls = false;
  std::string peer_identity;   // the client's SPIFFE ID, proven by mutual TLS; empty otherwise
  std::string local_identity;  // this proxy's, when it accepted that TLS
  bool append_forwarded_for = true;
};

struct RoutingResult {
  // A fault delay to wait before what follows (the reply, or forwarding).
  std::optional<absl::Duration> delay;
  // Answer locally; nothing goes upstream.
  std::optional<LocalReply> reply;
  // Otherwise forward to `cluster` (valid as long as the snapshot that held the tables).
  const Route* route = nullptr;
  const WeightedTarget* target = nullptr;
  const Cluster* cluster = nullptr;
  std::optional<uint64_t> hash;  // the ring-hash key, when the route hashes
  HeaderPairs response_headers;  // added to the response: CORS allowances, a generated cookie
  std::vector<const MirrorPolicy*> mirrors;  // clusters that get a copy of the request
};

// Routes `head` by `routes` and `clusters` (either may be null: no config yet). On a forward the
// head is rewritten in place for the upstream: hop-by-hop fields removed, the route's rewrites
// and header operations applied, x-forwarded-for/-proto and x-forwarded-client-cert set (the
// latter only from the proven identity; a client's own value is dropped). `random` gives fresh
// random numbers (weighted targets, fault and mirror percentages, hash cookies).
RoutingResult RouteRequest(const RouteTable* routes, const ClusterTable* clusters,
                           RequestHead& head, const DownstreamInfo& downstream,
                           const std::function<uint64_t()>& random);

// Removes the fields that describe one connection (Connection, the fields it names, Keep-Alive,
// Proxy-Connection, Transfer-Encoding, TE except "trailers", Upgrade unless the request is an
// upgrade, Trailer, Expect, Proxy-Authorization). Used on requests and responses alike.
void StripHopByHop(HeaderMap& headers, bool keep_upgrade);

// Applies a route's or target's header operations.
void ApplyHeaderOps(HeaderMap& headers, const std::vector<std::string>& remove,
                    const std::vector<HeaderOp>& add);

}  // namespace mesh::dataplane
