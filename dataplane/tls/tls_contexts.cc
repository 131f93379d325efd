#include "dataplane/tls/tls_contexts.h"

#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "absl/strings/str_cat.h"

namespace mesh::dataplane {
namespace {

namespace ssl = boost::asio::ssl;

void Harden(ssl::context& ctx, boost::system::error_code& ec) {
  ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                      ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1,
                  ec);
}

absl::Status Configure(ssl::context& ctx, const WorkloadCertificate::Credentials& c, bool server) {
  boost::system::error_code ec;
  Harden(ctx, ec);
  if (!ec) ctx.use_certificate_chain(boost::asio::buffer(c.cert_pem), ec);
  if (!ec) ctx.use_private_key(boost::asio::buffer(c.key_pem), ssl::context::pem, ec);
  if (!ec) ctx.add_certificate_authority(boost::asio::buffer(c.root_pem), ec);
  if (!ec) {
    ctx.set_verify_mode(
        server ? ssl::verify_peer | ssl::verify_fail_if_no_peer_cert : ssl::verify_peer, ec);
  }
  if (ec) return absl::InvalidArgumentError(absl::StrCat("TLS context: ", ec.message()));
  return absl::OkStatus();
}

}  // namespace

std::shared_ptr<ssl::context> NewTlsContext(ssl::context::method method,
                                            boost::system::error_code& ec) {
  auto ctx = std::make_shared<ssl::context>(method);
  Harden(*ctx, ec);
  return ctx;
}

TlsContexts::TlsContexts() : client(ssl::context::tls_client), server(ssl::context::tls_server) {}

absl::StatusOr<TlsContextsPtr> TlsContexts::Make(const WorkloadCertificate::Credentials& c) {
  auto out = std::make_shared<TlsContexts>();
  if (absl::Status s = Configure(out->client, c, false); !s.ok()) return s;
  if (absl::Status s = Configure(out->server, c, true); !s.ok()) return s;
  OfferAlpn(out->server);
  out->spiffe_id = c.spiffe_id;
  return out;
}

std::string PeerSpiffeId(SSL* ssl) {
  X509* cert = SSL_get1_peer_certificate(ssl);
  if (!cert) return "";
  std::string out;
  auto* names =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  for (int i = 0; names && i < sk_GENERAL_NAME_num(names) && out.empty(); ++i) {
    const GENERAL_NAME* n = sk_GENERAL_NAME_value(names, i);
    if (n->type != GEN_URI) continue;
    out.assign(reinterpret_cast<const char*>(ASN1_STRING_get0_data(n->d.uniformResourceIdentifier)),
               ASN1_STRING_length(n->d.uniformResourceIdentifier));
  }
  GENERAL_NAMES_free(names);
  X509_free(cert);
  return out;
}

std::string HandshakeFailure(SSL* ssl, const std::string& error) {
  long verdict = SSL_get_verify_result(ssl);
  if (verdict != X509_V_OK) return X509_verify_cert_error_string(verdict);
  return error;
}

void OfferAlpn(ssl::context& server) {
  SSL_CTX_set_alpn_select_cb(
      server.native_handle(),
      [](SSL*, const unsigned char** out, unsigned char* out_length, const unsigned char* in,
         unsigned int in_length, void*) -> int {
        static const unsigned char kOurs[] = "\x02h2\x08http/1.1";
        unsigned char* chosen = nullptr;
        if (SSL_select_next_proto(&chosen, out_length, kOurs, sizeof kOurs - 1, in, in_length) !=
            OPENSSL_NPN_NEGOTIATED) {
          return SSL_TLSEXT_ERR_NOACK;
        }
        *out = chosen;
        return SSL_TLSEXT_ERR_OK;
      },
      nullptr);
}

}  // namespace mesh::dataplane
