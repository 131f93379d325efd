#pragma once

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

// One line per event, to stderr: `2026-11-23T11:30:50.123Z info store: opened revision=12`.
// Thread-safe; a line is written with a single write(2) so lines never interleave.
namespace mesh::log {

enum class Level { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

// Sets the lowest level that is printed. Default kInfo.
void SetLevel(Level level);
// Parses "debug", "info", "warn" or "error"; returns false on anything else.
bool ParseLevel(absl::string_view text, Level* level);
bool Enabled(Level level);
void Write(Level level, absl::string_view message);

template <typename... Args>
void Debug(const Args&... args) {
  if (Enabled(Level::kDebug)) Write(Level::kDebug, absl::StrCat(args...));
}
template <typename... Args>
void Info(const Args&... args) {
  if (Enabled(Level::kInfo)) Write(Level::kInfo, absl::StrCat(args...));
}
template <typename... Args>
void Warn(const Args&... args) {
  if (Enabled(Level::kWarn)) Write(Level::kWarn, absl::StrCat(args...));
}
template <typename... Args>
void Error(const Args&... args) {
  if (Enabled(Level::kError)) Write(Level::kError, absl::StrCat(args...));
}

}  // namespace mesh::log
