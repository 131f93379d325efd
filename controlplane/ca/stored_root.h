#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "controlplane/ca/authority.h"
#include "controlplane/store/store.h"

// The mesh CA's root kept in the shared store (etcd), so that every meshpilot replica signs with
// the same root. The key is stored encrypted (AES-256-GCM, with a key derived by SHA-256 from
// `secret`, which the operator gives each replica through --ca-key-file or MESHPILOT_CA_KEY);
// the store never holds it in the clear.
namespace mesh::ca {

inline constexpr char kStoredRootKey[] = "/meshpilot/ca/root";

// Loads the root from the store, or creates one and stores it (the first replica to commit wins;
// the others load that one). FailedPrecondition when `secret` does not decrypt the stored key.
absl::StatusOr<std::unique_ptr<Authority>> LoadOrCreateInStore(store::Store* store,
                                                               const std::string& secret,
                                                               Authority::Options options);

// The sealing itself, exposed for tests: nonce | ciphertext | tag, and back.
absl::StatusOr<std::string> Seal(const std::string& secret, const std::string& plaintext);
absl::StatusOr<std::string> Open(const std::string& secret, const std::string& sealed);

}  // namespace mesh::ca
