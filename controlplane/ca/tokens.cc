#include "controlplane/ca/tokens.h"

#include <openssl/rand.h>
#include <openssl/sha.h>

#include <nlohmann/json.hpp>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace mesh::ca {
namespace {

std::string Sha256Hex(const std::string& token) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), digest);
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<char*>(digest), sizeof digest));
}

}  // namespace

bool IsDnsLabel(const std::string& name) {
  if (name.empty() || name.size() > 63 || name.front() == '-' || name.back() == '-') return false;
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  }
  return true;
}

absl::StatusOr<std::string> JoinTokens::Create(const Identity& identity,
                                               std::optional<absl::Duration> ttl, absl::Time now) {
  if (!IsDnsLabel(identity.ns))
    return absl::InvalidArgumentError(
        absl::StrCat("namespace \"", identity.ns, "\" is not a DNS label"));
  if (!IsDnsLabel(identity.service_account)) {
    return absl::InvalidArgumentError(
        absl::StrCat("service account \"", identity.service_account, "\" is not a DNS label"));
  }
  if (ttl && *ttl <= absl::ZeroDuration())
    return absl::InvalidArgumentError("a token's ttl must be positive");
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof bytes) != 1) return absl::InternalError("no randomness for a token");
  std::string token = absl::StrCat("mpt-", absl::BytesToHexString(absl::string_view(
                                               reinterpret_cast<char*>(bytes), sizeof bytes)));
  nlohmann::json record = {{"namespace", identity.ns},
                           {"serviceAccount", identity.service_account},
                           {"created", absl::ToUnixSeconds(now)},
                           {"expires", ttl ? absl::ToUnixSeconds(now + *ttl) : 0}};
  absl::StatusOr<store::CommitResult> r =
      store_->Commit({store::Op::Put(absl::StrCat(kPrefix, Sha256Hex(token)), record.dump(), 0)});
  if (!r.ok()) return r.status();
  return token;
}

absl::StatusOr<Identity> JoinTokens::Authenticate(const std::string& token, absl::Time now) const {
  if (token.empty()) return absl::UnauthenticatedError("no join token");
  absl::StatusOr<std::optional<store::KeyValue>> kv =
      store_->Get(absl::StrCat(kPrefix, Sha256Hex(token)));
  if (!kv.ok()) return kv.status();
  if (!*kv) return absl::UnauthenticatedError("unknown join token");
  nlohmann::json record = nlohmann::json::parse((*kv)->value, nullptr, false);
  if (!record.is_object() || !record["namespace"].is_string() ||
      !record["serviceAccount"].is_string()) {
    return absl::InternalError("damaged join token record");
  }
  int64_t expires = record.value("expires", int64_t{0});
  if (expires != 0 && absl::FromUnixSeconds(expires) <= now)
    return absl::UnauthenticatedError("expired join token");
  return Identity{record["namespace"].get<std::string>(),
                  record["serviceAccount"].get<std::string>()};
}

}  // namespace mesh::ca
