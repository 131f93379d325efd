#pragma once

#include <cstdint>
#include <optional>

#include "absl/time/time.h"
#include "dataplane/upstream/policies.h"

namespace mesh::dataplane {

// One request's retries, as Envoy's router keeps them: the attempts left under the route's
// policy, whether an attempt's result may be retried (retry_on, the gRPC conditions), the
// back-off before the next attempt, and the cluster's retry budget (at most max_retries retries
// in flight across the cluster). Holds no clock: the caller waits the back-off. Worker-thread
// only; the budget counter it takes is the cluster's shared atomic.
class RetryState {
 public:
  // `policy` may be absent (a single attempt). `cluster_state` counts retries in flight.
  RetryState(const std::optional<RetryPolicy>& policy, ClusterState& cluster_state,
             uint32_t max_retries);
  ~RetryState();  // gives back a budget slot still held
  RetryState(const RetryState&) = delete;
  RetryState& operator=(const RetryState&) = delete;

  enum class Decision {
    kNoRetry,   // the result stands (not retriable, no attempts left, or not replayable)
    kRetry,     // try again after `backoff`; a budget slot is held until the next attempt ends
    kOverflow,  // retriable, but the cluster's retry budget is spent: the result stands
  };
  // Called when an attempt ended with `result`. `replayable` is false once any part of the
  // request can no longer be sent again (a body beyond the buffer limit). `random` is fresh.
  Decision OnAttemptEnded(const AttemptResult& result, bool replayable, uint64_t random,
                          absl::Duration* backoff);
  // Whether the result of an attempt counts as a failure at all.
  static bool Failed(const AttemptResult& result);

  int attempts_ended() const { return ended_; }
  const std::optional<absl::Duration>& per_try_timeout() const { return per_try_timeout_; }

 private:
  void ReleaseSlot();

  const std::optional<RetryPolicy>& policy_;
  ClusterState& cluster_state_;
  const uint32_t max_retries_;
  std::optional<absl::Duration> per_try_timeout_;
  int ended_ = 0;
  bool holding_slot_ = false;
};

}  // namespace mesh::dataplane
