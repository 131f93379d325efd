#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

// Framing for the store's files: each record is
//   fixed32 little-endian payload length | fixed32 little-endian crc32(payload) | payload.
namespace mesh::store {

// Appends one framed record to `out`.
void AppendFramed(absl::string_view payload, std::string* out);

struct ReadResult {
  std::vector<std::string> payloads;
  // Bytes of `data` covered by whole, checksummed records. Anything after it is a torn tail.
  size_t valid_bytes = 0;
};

// Splits `data` into records, stopping at the first record that is incomplete or fails its
// checksum.
ReadResult ReadFramed(absl::string_view data);

// Reads a whole file. NotFound if it does not exist.
absl::StatusOr<std::string> ReadFile(const std::string& path);

// Writes all of `data` to `fd`, retrying short writes. Returns the errno text on failure.
absl::Status WriteAll(int fd, absl::string_view data);

// Replaces `path` with `data` atomically (a temporary file with `mode`, set before the data goes
// in, synced and renamed over it), creating parent directories.
absl::Status WriteFileAtomically(const std::string& path, absl::string_view data, unsigned mode);

// fsyncs the directory so a rename or create inside it is durable.
absl::Status SyncDir(const std::string& dir);

}  // namespace mesh::store
