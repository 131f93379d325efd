#include "common/duration.h"

#include <catch2/catch.hpp>

namespace mesh {
namespace {

TEST_CASE("ParseDuration reads the units Istio manifests use") {
  CHECK(*ParseDuration("7s") == absl::Seconds(7));
  CHECK(*ParseDuration("100ms") == absl::Milliseconds(100));
  CHECK(*ParseDuration("1.5s") == absl::Milliseconds(1500));
  CHECK(*ParseDuration("2h") == absl::Hours(2));
  CHECK(*ParseDuration("1m30s") == absl::Seconds(90));
  CHECK(*ParseDuration("250us") == absl::Microseconds(250));
}

TEST_CASE("ParseDuration rejects what is not a duration, with a message") {
  CHECK(ParseDuration("10").status().message() ==
        "invalid duration \"10\": want a number and a unit, e.g. 7s or 100ms");
  CHECK(ParseDuration("").status().message() ==
        "invalid duration \"\": want a number and a unit, e.g. 7s or 100ms");
  CHECK(ParseDuration("5 s").status().message() ==
        "invalid duration \"5 s\": want a number and a unit, e.g. 7s or 100ms");
  CHECK(ParseDuration("-1s").status().message() == "duration \"-1s\" is negative");
  CHECK(!ParseDuration("1x").ok());
  CHECK(!ParseDuration("s").ok());
}

TEST_CASE("FormatDurationSeconds renders Envoy's JSON form") {
  CHECK(FormatDurationSeconds(absl::Milliseconds(100)) == "0.1s");
  CHECK(FormatDurationSeconds(absl::Seconds(7)) == "7s");
}

}  // namespace
}  // namespace mesh
