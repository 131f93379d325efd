#include "dataplane/upstream/retry_state.h"

namespace mesh::dataplane {

RetryState::RetryState(const std::optional<RetryPolicy>& policy, ClusterState& cluster_state,
                       uint32_t max_retries)
    : policy_(policy), cluster_state_(cluster_state), max_retries_(max_retries) {
  if (policy_) per_try_timeout_ = policy_->per_try_timeout;
}

RetryState::~RetryState() {
  ReleaseSlot();
}

void RetryState::ReleaseSlot() {
  if (!holding_slot_) return;
  holding_slot_ = false;
  cluster_state_.retries.fetch_sub(1, std::memory_order_relaxed);
}

bool RetryState::Failed(const AttemptResult& r) {
  return r.kind != AttemptResult::Kind::kResponse || r.status >= 400 ||
         (!r.grpc_status.empty() && r.grpc_status != "0");
}

RetryState::Decision RetryState::OnAttemptEnded(const AttemptResult& result, bool replayable,
                                                uint64_t random, absl::Duration* backoff) {
  ReleaseSlot();  // the retry that held it has ended
  ++ended_;
  if (!policy_ || !Failed(result) || !replayable) return Decision::kNoRetry;
  if (ended_ > static_cast<int>(policy_->num_retries)) return Decision::kNoRetry;
  if (!Retriable(*policy_, result)) return Decision::kNoRetry;
  if (cluster_state_.retries.load(std::memory_order_relaxed) >= max_retries_) {
    cluster_state_.overflows.fetch_add(1, std::memory_order_relaxed);
    return Decision::kOverflow;
  }
  cluster_state_.retries.fetch_add(1, std::memory_order_relaxed);
  holding_slot_ = true;
  *backoff = RetryBackoff(ended_, random);
  return Decision::kRetry;
}

}  // namespace mesh::dataplane
