#include "controlplane/xds/debouncer.h"

#include <catch2/catch.hpp>

namespace mesh::xds {
namespace {

const absl::Time t0 = absl::FromUnixSeconds(1000);

TEST_CASE("Nothing pending: no deadline, no push") {
  Debouncer d(absl::Milliseconds(100), absl::Seconds(1));
  CHECK(d.Deadline() == absl::InfiniteFuture());
  CHECK(!d.Fire(t0));
}

TEST_CASE("A change is pushed after the quiet period") {
  Debouncer d(absl::Milliseconds(100), absl::Seconds(1));
  d.Changed(t0);
  CHECK(d.Deadline() == t0 + absl::Milliseconds(100));
  CHECK(!d.Fire(t0 + absl::Milliseconds(99)));
  CHECK(d.Fire(t0 + absl::Milliseconds(100)));
  CHECK(!d.pending());
  CHECK(!d.Fire(t0 + absl::Milliseconds(500)));
}

TEST_CASE("Changes inside the quiet period merge into one push") {
  Debouncer d(absl::Milliseconds(100), absl::Seconds(1));
  d.Changed(t0);
  d.Changed(t0 + absl::Milliseconds(50));
  CHECK(!d.Fire(t0 + absl::Milliseconds(120)));
  CHECK(d.Fire(t0 + absl::Milliseconds(150)));
}

TEST_CASE("A steady stream of changes is still pushed by the maximum delay") {
  Debouncer d(absl::Milliseconds(100), absl::Seconds(1));
  absl::Time now = t0;
  int pushes = 0;
  for (int i = 0; i < 50; ++i) {  // a change every 50 ms for 2.5 s
    d.Changed(now);
    now += absl::Milliseconds(50);
    if (d.Fire(now)) ++pushes;
  }
  CHECK(pushes == 2);
}

}  // namespace
}  // namespace mesh::xds
