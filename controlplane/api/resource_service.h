#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/yaml_json.h"
#include "controlplane/model/analyzer.h"
#include "controlplane/model/config_index.h"
#include "controlplane/model/decode.h"
#include "controlplane/model/kinds.h"
#include "controlplane/store/store.h"
#include "nlohmann/json.hpp"

// The config API's semantics, independent of HTTP: decoding request bodies, validation,
// optimistic concurrency, apply/delete batches and watches, all on a store::Store.
//
// Errors are absl::Status values whose code maps to an HTTP status (rest_server.cc):
// InvalidArgument 400 (the message lists one error per line), NotFound 404, AlreadyExists and
// FailedPrecondition 409, OutOfRange 410, Unavailable 503.
namespace mesh::api {

enum class BodyFormat { kJson, kYaml };

struct ApplyItem {
  std::string kind;  // "VirtualService", or the skipped kind as written
  std::string api_version;
  std::string ns, name;
  std::string action;            // created | configured | unchanged | skipped | deleted | not found
  int64_t resource_version = 0;  // 0 for skipped and not found
  std::string qualified_kind;    // "virtualservice.networking.istio.io", "deployment.apps"
  std::string note;              // why skipped
};

struct ApplyResult {
  std::vector<ApplyItem> items;
  std::vector<model::Warning> warnings;
  int64_t revision = 0;  // store revision after the batch (unchanged if nothing was written)

  nlohmann::json ToJson() const;
  // kubectl-style lines: "virtualservice.networking.istio.io/voting-app created".
  std::string ToText() const;
};

struct ServiceOptions {
  YamlLimits yaml;
  // How often an apply retries when a concurrent writer changed one of its resources between
  // read and commit (only when the request itself gave no resourceVersion).
  int max_apply_retries = 8;
  model::DecodeOptions decode;
};

// A request's documents, decoded (resource_service.cc).
struct Batch;

// Thread-safe; the store and index must outlive it.
class ResourceService {
 public:
  ResourceService(store::Store* store, model::ConfigIndex* index, ServiceOptions options = {});

  // POST /apply: validates every document first; if any is invalid, writes nothing and returns
  // InvalidArgument listing every error. Otherwise writes all changed resources in one
  // transaction.
  absl::StatusOr<ApplyResult> Apply(absl::string_view body, BodyFormat format,
                                    absl::string_view default_ns);
  // DELETE /apply: deletes the resources the documents name, in one transaction.
  absl::StatusOr<ApplyResult> DeleteApplied(absl::string_view body, BodyFormat format,
                                            absl::string_view default_ns);

  // Single-resource operations. `version` is the API version of the path and becomes the
  // apiVersion of what is returned.
  absl::StatusOr<nlohmann::json> Get(const model::KindInfo& kind, absl::string_view version,
                                     absl::string_view ns, absl::string_view name);
  // Lists one namespace, or all when `ns` is empty, as a Kubernetes List.
  absl::StatusOr<nlohmann::json> List(const model::KindInfo& kind, absl::string_view version,
                                      absl::string_view ns);
  // POST: AlreadyExists if present. PUT (`replace`): creates or replaces; a
  // metadata.resourceVersion in the body must match or FailedPrecondition. `created` (optional)
  // tells whether this write created the object: of concurrent creates of one name exactly one
  // did, whatever each one read before.
  absl::StatusOr<nlohmann::json> Write(const model::KindInfo& kind, absl::string_view version,
                                       absl::string_view ns, absl::string_view path_name,
                                       absl::string_view body, BodyFormat format, bool replace,
                                       bool* created = nullptr);
  absl::StatusOr<nlohmann::json> Delete(const model::KindInfo& kind, absl::string_view version,
                                        absl::string_view ns, absl::string_view name);

  // Streams watch events as JSON lines ({"type":"ADDED","object":{...}}) to `sink`, from the
  // revision after `after_revision`; with no revision, first an ADDED event for every current
  // resource. `sink` runs on a store thread; see store::Store::Watch.
  using EventSink = std::function<void(std::string line)>;
  absl::StatusOr<store::WatchPtr> Watch(const model::KindInfo& kind, absl::string_view version,
                                        absl::string_view ns, std::optional<int64_t> after_revision,
                                        EventSink sink);

  // Every cross-reference warning in the stored config (one namespace when `ns` is set).
  std::vector<model::Warning> Analyze(absl::string_view ns);

  // Parses a body into documents (YAML streams, JSON objects, arrays and Lists).
  absl::StatusOr<std::vector<nlohmann::json>> ParseBody(absl::string_view body,
                                                        BodyFormat format) const;

 private:
  // One attempt at writing a decoded batch; sets *retry when a concurrent writer got in between.
  absl::StatusOr<ApplyResult> ApplyOnce(const Batch& batch, bool* retry);
  absl::StatusOr<Batch> ParseBatch(absl::string_view body, BodyFormat format,
                                   absl::string_view default_ns) const;

  // Commits `ops` and remembers the revision, so reads that promise to see this service's
  // writes wait for the index to reach it (not for unrelated keys such as join tokens).
  absl::StatusOr<store::CommitResult> Write(std::vector<store::Op> ops);

  store::Store* store_;
  model::ConfigIndex* index_;
  ServiceOptions options_;
  std::atomic<int64_t> last_write_revision_{0};
};

// Converts a stored value into the API's JSON: resourceVersion from the store, apiVersion of
// the version asked for (empty keeps the stored one).
nlohmann::json StoredToJson(const store::KeyValue& kv, const model::KindInfo& kind,
                            absl::string_view version, int64_t resource_version);

}  // namespace mesh::api
