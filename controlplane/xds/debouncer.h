#pragma once

#include "absl/time/time.h"

namespace mesh::xds {

// Decides when to push after config changes, as Istio's pilot does: wait for a quiet period
// after the last change, but never longer than `max_delay` after the first unpushed one. Pure
// state; the caller supplies the time, so tests never sleep. Not thread-safe.
class Debouncer {
 public:
  Debouncer(absl::Duration quiet, absl::Duration max_delay)
      : quiet_(quiet), max_delay_(max_delay) {}

  // Records a change at `now`.
  void Changed(absl::Time now) {
    if (!pending_) first_ = now;
    last_ = now;
    pending_ = true;
  }
  // When to fire next: InfiniteFuture() if nothing is pending.
  absl::Time Deadline() const {
    if (!pending_) return absl::InfiniteFuture();
    return std::min(last_ + quiet_, first_ + max_delay_);
  }
  // Whether to push now; if so the pending changes count as pushed.
  bool Fire(absl::Time now) {
    if (!pending_ || now < Deadline()) return false;
    pending_ = false;
    return true;
  }
  bool pending() const { return pending_; }

 private:
  absl::Duration quiet_, max_delay_;
  bool pending_ = false;
  absl::Time first_, last_;
};

}  // namespace mesh::xds
