#pragma once

#include <functional>
#include <memory>

#include "absl/time/time.h"

namespace mesh::dataplane {

// A one-shot timer on a worker's event loop. Destroying it disables it.
class Timer {
 public:
  virtual ~Timer() = default;
  // Fires once after `delay` (replacing any earlier setting).
  virtual void Enable(absl::Duration delay) = 0;
  virtual void Disable() = 0;
  virtual bool Enabled() const = 0;
};
using TimerPtr = std::unique_ptr<Timer>;

// The clock and timers the request path uses, injected so that retries, back-off and timeouts
// are unit-tested without sleeping (a fake advances time by hand). Worker-thread only.
class TimeSource {
 public:
  virtual ~TimeSource() = default;
  virtual absl::Time Now() = 0;
  // `on_fire` runs on the worker's thread; it may destroy the timer.
  virtual TimerPtr CreateTimer(std::function<void()> on_fire) = 0;
};

}  // namespace mesh::dataplane
