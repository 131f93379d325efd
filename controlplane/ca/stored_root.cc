#include "controlplane/ca/stored_root.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <nlohmann/json.hpp>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace mesh::ca {
namespace {

constexpr size_t kNonce = 12, kTag = 16;

std::string KeyOf(const std::string& secret) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(secret.data()), secret.size(), digest);
  return std::string(reinterpret_cast<char*>(digest), sizeof digest);
}

using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)>;

}  // namespace

absl::StatusOr<std::string> Seal(const std::string& secret, const std::string& plaintext) {
  const std::string key = KeyOf(secret);
  std::string out(kNonce, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), kNonce) != 1)
    return absl::InternalError("no randomness for a nonce");
  CipherCtx ctx(EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free);
  std::string body(plaintext.size(), '\0');
  int n = 0;
  unsigned char tag[kTag];
  if (!ctx ||
      EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr,
                         reinterpret_cast<const unsigned char*>(key.data()),
                         reinterpret_cast<const unsigned char*>(out.data())) != 1 ||
      EVP_EncryptUpdate(ctx.get(), reinterpret_cast<unsigned char*>(body.data()), &n,
                        reinterpret_cast<const unsigned char*>(plaintext.data()),
                        static_cast<int>(plaintext.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx.get(), nullptr, &n) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTag, tag) != 1) {
    return absl::InternalError("AES-GCM encryption failed");
  }
  return out + body + std::string(reinterpret_cast<char*>(tag), kTag);
}

absl::StatusOr<std::string> Open(const std::string& secret, const std::string& sealed) {
  if (sealed.size() < kNonce + kTag) return absl::InvalidArgumentError("sealed data too short");
  const std::string key = KeyOf(secret);
  const std::string body = sealed.substr(kNonce, sealed.size() - kNonce - kTag);
  std::string tag = sealed.substr(sealed.size() - kTag);
  CipherCtx ctx(EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free);
  std::string out(body.size(), '\0');
  int n = 0;
  if (!ctx ||
      EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr,
                         reinterpret_cast<const unsigned char*>(key.data()),
                         reinterpret_cast<const unsigned char*>(sealed.data())) != 1 ||
      EVP_DecryptUpdate(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &n,
                        reinterpret_cast<const unsigned char*>(body.data()),
                        static_cast<int>(body.size())) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTag, tag.data()) != 1 ||
      EVP_DecryptFinal_ex(ctx.get(), nullptr, &n) != 1) {
    return absl::FailedPreconditionError("it does not decrypt with this key");
  }
  return out;
}

absl::StatusOr<std::unique_ptr<Authority>> LoadOrCreateInStore(store::Store* store,
                                                               const std::string& secret,
                                                               Authority::Options options) {
  if (secret.empty())
    return absl::InvalidArgumentError("the key that encrypts the CA key in the store is empty");
  for (int attempt = 0; attempt < 2; ++attempt) {
    absl::StatusOr<std::optional<store::KeyValue>> stored = store->Get(kStoredRootKey);
    if (!stored.ok()) return stored.status();
    if (stored->has_value()) {
      nlohmann::json j = nlohmann::json::parse((*stored)->value, nullptr, false);
      std::string sealed;
      if (!j.is_object() || !j["cert"].is_string() || !j["key"].is_string() ||
          !absl::Base64Unescape(j["key"].get<std::string>(), &sealed)) {
        return absl::DataLossError(absl::StrCat("CA: ", kStoredRootKey, " does not parse"));
      }
      absl::StatusOr<std::string> key_pem = Open(secret, sealed);
      if (!key_pem.ok()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "CA: the root key in the store (", kStoredRootKey, ") ", key_pem.status().message(),
            "; every replica needs the same --ca-key-file or MESHPILOT_CA_KEY"));
      }
      return Authority::FromPem(j["cert"].get<std::string>(), *key_pem, options,
                                std::string(kStoredRootKey) + " certificate",
                                std::string(kStoredRootKey) + " key");
    }
    absl::StatusOr<Authority::Created> made = Authority::Create(options);
    if (!made.ok()) return made.status();
    absl::StatusOr<std::string> sealed = Seal(secret, made->key_pem);
    if (!sealed.ok()) return sealed.status();
    nlohmann::json j = {{"cert", made->authority->root_cert_pem()},
                        {"key", absl::Base64Escape(*sealed)},
                        {"alg", "AES-256-GCM, key SHA-256(secret)"}};
    absl::StatusOr<store::CommitResult> put =
        store->Commit({store::Op::Put(kStoredRootKey, j.dump(), 0)});
    if (put.ok()) {
      log::Info("ca: created the mesh root and stored it, key encrypted, at ", kStoredRootKey);
      return std::move(made->authority);
    }
    if (!absl::IsAlreadyExists(put.status())) return put.status();
    // Another replica stored its root first: use that one.
  }
  return absl::AbortedError("CA: the stored root kept changing");
}

}  // namespace mesh::ca
