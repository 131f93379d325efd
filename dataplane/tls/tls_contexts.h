#pragma once

#include <boost/asio/ssl/context.hpp>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "dataplane/tls/workload_certificate.h"

typedef struct ssl_st SSL;

namespace mesh::dataplane {

// The TLS contexts of the mesh identity, made from the workload credentials: the client context
// presents the workload certificate and verifies servers against the mesh root; the server
// context does the same and requires a client certificate. Immutable once made, and shared by
// every connection (Asio contexts may be used from several threads once configured).
struct TlsContexts {
  TlsContexts();
  boost::asio::ssl::context client, server;
  std::string spiffe_id;  // this proxy's identity

  static absl::StatusOr<std::shared_ptr<TlsContexts>> Make(
      const WorkloadCertificate::Credentials& credentials);
};
using TlsContextsPtr = std::shared_ptr<TlsContexts>;

// A new context of `method` that speaks TLS 1.2 or later only.
std::shared_ptr<boost::asio::ssl::context> NewTlsContext(boost::asio::ssl::context::method method,
                                                         boost::system::error_code& ec);

// Makes a server context choose the application protocol by ALPN: "h2" when the client offers
// it, else "http/1.1"; a client offering neither gets no ALPN answer.
void OfferAlpn(boost::asio::ssl::context& server);

// The peer's SPIFFE ID (its certificate's first URI SAN), or empty.
std::string PeerSpiffeId(SSL* ssl);

// Why a handshake failed, in words: the certificate check's verdict ("certificate has expired")
// when there is one, else `error`.
std::string HandshakeFailure(SSL* ssl, const std::string& error);

}  // namespace mesh::dataplane
