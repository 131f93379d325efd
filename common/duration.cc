#include "common/duration.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace mesh {

absl::StatusOr<absl::Duration> ParseDuration(absl::string_view text) {
  auto invalid = [&] {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid duration \"", text, "\": want a number and a unit, e.g. 7s or 100ms"));
  };
  if (text.empty()) return invalid();
  if (text[0] == '-')
    return absl::InvalidArgumentError(absl::StrCat("duration \"", text, "\" is negative"));
  absl::Duration total = absl::ZeroDuration();
  size_t i = 0;
  while (i < text.size()) {
    size_t start = i;
    while (i < text.size() && ((text[i] >= '0' && text[i] <= '9') || text[i] == '.')) ++i;
    if (i == start || i - start > 30) return invalid();
    std::string number(text.substr(start, i - start));
    size_t unit_start = i;
    while (i < text.size() && ((text[i] >= 'a' && text[i] <= 'z'))) ++i;
    absl::string_view unit = text.substr(unit_start, i - unit_start);
    absl::Duration scale;
    if (unit == "h")
      scale = absl::Hours(1);
    else if (unit == "m")
      scale = absl::Minutes(1);
    else if (unit == "s")
      scale = absl::Seconds(1);
    else if (unit == "ms")
      scale = absl::Milliseconds(1);
    else if (unit == "us")
      scale = absl::Microseconds(1);
    else if (unit == "ns")
      scale = absl::Nanoseconds(1);
    else
      return invalid();
    char* end = nullptr;
    double value = std::strtod(number.c_str(), &end);
    if (end != number.c_str() + number.size()) return invalid();
    total += value * scale;
  }
  if (total > absl::Hours(24 * 365 * 100)) {
    return absl::InvalidArgumentError(absl::StrCat("duration \"", text, "\" is too long"));
  }
  return total;
}

std::string FormatDurationSeconds(absl::Duration d) {
  int64_t nanos = absl::ToInt64Nanoseconds(d);
  std::string out = absl::StrFormat("%d.%09d", nanos / 1000000000, nanos % 1000000000);
  while (out.back() == '0') out.pop_back();
  if (out.back() == '.') out.pop_back();
  return out + "s";
}

}  // namespace mesh
