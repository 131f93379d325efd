#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "dataplane/authn/jwt_authn.h"
#include "dataplane/config/rbac_policy.h"
#include "dataplane/config/route_table.h"
#include "dataplane/telemetry/access_log.h"
#include "dataplane/telemetry/tracing.h"

namespace envoy::config::listener::v3 {
class Listener;
}

// What meshproxy serves on one listener, distilled from an Envoy Listener: an HTTP connection
// manager (routes from RDS or inline) or a TCP proxy (one cluster, or weighted clusters).
namespace mesh::dataplane {

struct TcpTarget {
  std::string cluster;
  uint32_t weight = 1;
};

struct ListenerConfig {
  enum class Kind { kHttp, kTcp };
  enum class Direction { kUnspecified, kInbound, kOutbound };
  std::string name;
  Kind kind = Kind::kHttp;
  Direction direction = Direction::kUnspecified;
  std::string address;  // as configured; "0.0.0.0" means "the proxy's own address"
  uint32_t port = 0;
  std::string stat_prefix;
  // Mutual TLS on accepted connections: none, required (STRICT), or either (PERMISSIVE: TLS when
  // the client starts a TLS handshake, plaintext otherwise).
  enum class Tls { kNone, kStrict, kPermissive };
  Tls tls = Tls::kNone;
  // TLS with certificates from files (a gateway's SIMPLE or MUTUAL server) rather than the mesh
  // identity; `ca_file` and a required client certificate for MUTUAL.
  struct TlsFiles {
    std::string cert_file, key_file, ca_file;
    bool require_client_certificate = false;
  };
  std::optional<TlsFiles> tls_files;

  // kHttp: the RDS route config name, or an inline table (then `rds_name` is empty).
  std::string rds_name;
  RouteTablePtr inline_routes;
  // kHttp: how long a request stream may go without a byte either way before it ends (408 when
  // no response has started, else a reset): Envoy's 5 minutes when the config has none; none
  // when it says 0.
  std::optional<absl::Duration> stream_idle_timeout = absl::Minutes(5);
  // kHttp: request authentication (envoy.filters.http.jwt_authn), before the RBAC filters.
  JwtAuthnPtr jwt_authn;
  // kHttp: the RBAC filters every request passes, in order (envoy.filters.http.rbac).
  std::vector<RbacPolicyPtr> http_rbac;
  // Every connection passes these first, once (envoy.filters.network.rbac).
  std::vector<RbacPolicyPtr> network_rbac;
  // The HCM's or the TCP proxy's access logs: a line per request or connection.
  std::vector<telemetry::AccessLogPtr> access_logs;
  // kHttp: the HCM's tracing (null: none, and no trace headers are written).
  telemetry::TracingConfigPtr tracing;

  // kTcp: where connections go; the idle timeout (Envoy's default of 1 h when the config has
  // none; none when it says 0).
  std::vector<TcpTarget> tcp_targets;
  uint32_t tcp_total_weight = 0;
  std::optional<absl::Duration> tcp_idle_timeout;

  // The TCP target for a number drawn uniformly; nullptr when there is none.
  const TcpTarget* PickTcp(uint64_t draw) const;

  // Converts a listener with a socket address and one filter chain whose only network filter is
  // an http_connection_manager or a tcp_proxy, optionally with a TLS transport socket (STRICT), or
  // two such chains, one matching transport protocol "tls" with a TLS transport socket and one
  // plaintext (PERMISSIVE). InvalidArgument names the field otherwise.
  static absl::StatusOr<std::shared_ptr<const ListenerConfig>> FromProto(
      const envoy::config::listener::v3::Listener& listener);
};
using ListenerConfigPtr = std::shared_ptr<const ListenerConfig>;

}  // namespace mesh::dataplane
