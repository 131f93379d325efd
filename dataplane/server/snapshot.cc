#include "dataplane/server/snapshot.h"

#include "absl/strings/str_cat.h"
#include "dataplane/tls/tls_contexts.h"

namespace mesh::dataplane {

const RouteTable* Snapshot::RoutesFor(const ListenerConfig& listener) const {
  if (listener.inline_routes) return listener.inline_routes.get();
  auto it = config->routes.find(listener.rds_name);
  return it == config->routes.end() ? nullptr : it->second.get();
}

const ListenerConfig* Snapshot::Listener(const std::string& name) const {
  auto it = listeners.find(name);
  return it == listeners.end() ? nullptr : it->second.get();
}

absl::StatusOr<SnapshotPtr> Snapshot::Build(ProxyConfigPtr config, const Snapshot* previous) {
  auto out = std::make_shared<Snapshot>();
  absl::StatusOr<ClusterTablePtr> clusters =
      ClusterTable::Build(*config, previous ? previous->clusters.get() : nullptr);
  if (!clusters.ok()) return clusters.status();
  out->clusters = *std::move(clusters);
  for (const auto& [name, c] : out->clusters->clusters()) {
    if (!c.tls || !c.tls->files) continue;
    namespace ssl = boost::asio::ssl;
    boost::system::error_code ec;
    auto ctx = NewTlsContext(ssl::context::tls_client, ec);
    if (!ec && c.tls->verify) {
      if (c.tls->ca_file.empty()) {
        ctx->set_default_verify_paths(ec);
      } else {
        ctx->load_verify_file(c.tls->ca_file, ec);
      }
      if (!ec) ctx->set_verify_mode(ssl::verify_peer, ec);
    }
    if (!ec && !c.tls->cert_file.empty()) ctx->use_certificate_chain_file(c.tls->cert_file, ec);
    if (!ec && !c.tls->key_file.empty())
      ctx->use_private_key_file(c.tls->key_file, ssl::context::pem, ec);
    if (ec) {
      return absl::InvalidArgumentError(
          absl::StrCat("cluster ", name, ": TLS files: ", ec.message()));
    }
    out->cluster_tls[name] = std::move(ctx);
  }
  for (const auto& [name, l] : config->listeners) {
    if (l.has_api_listener()) continue;  // proxyless gRPC listeners are not for a proxy to bind
    absl::StatusOr<ListenerConfigPtr> lc = ListenerConfig::FromProto(l);
    if (!lc.ok()) return lc.status();
    if (const auto& files = (*lc)->tls_files) {
      namespace ssl = boost::asio::ssl;
      boost::system::error_code ec;
      auto ctx = NewTlsContext(ssl::context::tls_server, ec);
      if (!ec) ctx->use_certificate_chain_file(files->cert_file, ec);
      if (!ec) ctx->use_private_key_file(files->key_file, ssl::context::pem, ec);
      if (!ec && !files->ca_file.empty()) ctx->load_verify_file(files->ca_file, ec);
      if (!ec && files->require_client_certificate)
        ctx->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert, ec);
      if (ec) {
        return absl::InvalidArgumentError(absl::StrCat(
            "listener ", name, ": TLS certificate files (", files->cert_file, ", ", files->key_file,
            files->ca_file.empty() ? "" : ", " + files->ca_file, "): ", ec.message()));
      }
      OfferAlpn(*ctx);
      out->file_tls[name] = std::move(ctx);
    }
    out->listeners[name] = *std::move(lc);
  }
  out->config = std::move(config);
  return SnapshotPtr(std::move(out));
}

}  // namespace mesh::dataplane
