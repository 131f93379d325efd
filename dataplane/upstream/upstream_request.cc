#include "dataplane/upstream/upstream_request.h"

#include "absl/strings/str_cat.h"

namespace mesh::dataplane {
namespace {

constexpr absl::string_view kBeforeHeaders =
    "upstream connect error or disconnect/reset before headers. reset reason: ";

}  // namespace

UpstreamRequest::UpstreamRequest(Context context, const Cluster& cluster, const Route& route,
                                 RequestHeadPtr head, std::optional<uint64_t> hash,
                                 Settings settings, UpstreamRequestCallbacks& callbacks)
    : context_(std::move(context)),
      cluster_(cluster),
      route_(route),
      head_(std::move(head)),
      hash_(hash),
      settings_(settings),
      callbacks_(callbacks),
      retry_(route.retry, *cluster.state, cluster.limits.max_retries) {
  cluster_.state->requests.fetch_add(1, std::memory_order_relaxed);
  // An upgrade's "body" is a tunnel's bytes: never kept, never replayed.
  if (!head_->upgrade.empty()) replayable_ = false;
}

UpstreamRequest::~UpstreamRequest() {
  ReleaseAttempt(true);
  cluster_.state->requests.fetch_sub(1, std::memory_order_relaxed);
}

void UpstreamRequest::Arm(TimerPtr& timer, void (UpstreamRequest::*on_fire)(),
                          absl::Duration delay) {
  // Made on first use: most requests never set a deadline, retry or per-try timeout, and the
  // request path then creates no timer at all.
  if (!timer) timer = context_.time.CreateTimer([this, on_fire] { (this->*on_fire)(); });
  timer->Enable(delay);
}

void UpstreamRequest::Disarm(const TimerPtr& timer) {
  if (timer) timer->Disable();
}

void UpstreamRequest::Start(bool end_stream) {
  start_ = context_.time.Now();
  request_complete_ = end_stream;
  std::optional<absl::Duration> timeout = route_.timeout;
  if (timeout && *timeout <= absl::ZeroDuration()) timeout.reset();  // 0: no timeout
  if (settings_.grpc_timeout && (!timeout || *settings_.grpc_timeout < *timeout)) {
    timeout = settings_.grpc_timeout;
    deadline_from_grpc_ = true;
  }
  if (timeout) {
    deadline_ = start_ + *timeout;
    Arm(global_timer_, &UpstreamRequest::OnGlobalTimeout, *timeout);
  }
  StartAttempt();
}

void UpstreamRequest::StartAttempt() {
  if (done_) return;
  ++attempts_;
  const absl::Time now = context_.time.Now();
  const Host* host = cluster_.Pick(context_.random(), hash_, now);
  // A retry goes elsewhere when it can.
  for (int i = 0; previous_host_ && host == previous_host_ && cluster_.hosts.size() > 1 && i < 3;
       ++i) {
    host = cluster_.Pick(context_.random(), std::nullopt, now);
  }
  if (!host) {
    ++context_.stats.no_healthy_upstream[cluster_.name];
    done_ = true;
    Disarm(global_timer_);
    callbacks_.OnUpstreamFailure(
        {503, "no healthy upstream", {{"x-meshproxy-reason", "no_healthy_upstream"}}, {}, "UH"});
    return;
  }
  host_ = host;
  host_->state->active_requests.fetch_add(1, std::memory_order_relaxed);
  if (retry_.per_try_timeout())
    Arm(per_try_timer_, &UpstreamRequest::OnPerTryTimeout, *retry_.per_try_timeout());
  body_sent_ = 0;
  waiting_for_pool_ = true;
  PendingStreamPtr pending =
      context_.pools.NewStream(cluster_, *host_, settings_.protocol, deadline_, *this, *this);
  if (waiting_for_pool_) pending_ = std::move(pending);
}

void UpstreamRequest::OnPoolReady(RequestEncoder& encoder, HttpProtocol, bool reused) {
  waiting_for_pool_ = false;
  if (done_) return;
  attempt_reused_ = reused;
  encoder_ = &encoder;
  encoder.stream().SetCallbacks(this);
  if (read_disabled_ > 0) encoder.stream().ReadDisable(true);
  const bool end = request_complete_ && body_.empty() && !trailers_;
  end_sent_ = end;
  encoder.EncodeHeaders(*head_, end);
  SendBody();
}

void UpstreamRequest::SendBody() {
  if (!encoder_ || end_sent_) return;
  absl::string_view rest = absl::string_view(body_).substr(body_sent_);
  const bool end = request_complete_ && !trailers_;
  if (!rest.empty() || end) {
    end_sent_ = end;
    body_sent_ = body_.size();
    encoder_->EncodeData(rest, end);
  }
  if (!replayable_) {
    body_.clear();
    body_sent_ = 0;
  }
  if (encoder_ && request_complete_ && trailers_ && !end_sent_) {
    end_sent_ = true;
    encoder_->EncodeTrailers(*trailers_);
  }
  UpdateWriteBlocked();
}

void UpstreamRequest::SendData(absl::string_view data, bool end_stream) {
  if (done_ && response_complete_) return;
  body_.append(data.data(), data.size());
  if (replayable_ && body_.size() > settings_.buffer_limit) replayable_ = false;
  request_complete_ = end_stream;
  SendBody();
  UpdateWriteBlocked();
}

void UpstreamRequest::SendTrailers(HeaderMap trailers) {
  if (done_ && response_complete_) return;
  trailers_ = std::move(trailers);
  request_complete_ = true;
  SendBody();
}

void UpstreamRequest::UpdateWriteBlocked() {
  // Blocked while the upstream stream's buffer is above its watermark, or while no stream is
  // ready and the body waiting for one is past the buffer limit.
  const bool blocked =
      watermark_blocked_ || (!encoder_ && !replayable_ && body_.size() > settings_.buffer_limit);
  if (blocked == write_blocked_) return;
  write_blocked_ = blocked;
  callbacks_.OnUpstreamWriteBlocked(blocked);
}

void UpstreamRequest::DecodeHeaders(ResponseHeadPtr head, bool end_stream) {
  if (done_) return;
  Disarm(per_try_timer_);
  const absl::Time now = context_.time.Now();
  AttemptResult result;
  result.kind = AttemptResult::Kind::kResponse;
  result.status = head->status;
  if (const std::string* grpc = head->headers.Get("grpc-status")) result.grpc_status = *grpc;
  RecordForOutlierDetection(cluster_, *host_, result, now);
  absl::Duration backoff;
  RetryState::Decision decision =
      retry_.OnAttemptEnded(result, replayable_, context_.random(), &backoff);
  if (decision == RetryState::Decision::kRetry && !DeadlinePassed(now + backoff)) {
    previous_host_ = host_;
    ReleaseAttempt(true);
    Arm(backoff_timer_, &UpstreamRequest::StartAttempt, backoff);
    return;
  }
  if (decision == RetryState::Decision::kOverflow) ++context_.stats.overflows[cluster_.name];
  context_.stats.upstream_latency[cluster_.name].Record(now - start_);
  response_started_ = true;
  if (head->status == 101) Disarm(global_timer_);  // an upgraded tunnel has no deadline
  if (end_stream) response_complete_ = true;
  callbacks_.OnUpstreamHeaders(std::move(head), end_stream);
  if (end_stream) Finish();
}

void UpstreamRequest::DecodeData(absl::string_view data, bool end_stream) {
  if (done_) return;
  if (end_stream) response_complete_ = true;
  callbacks_.OnUpstreamData(data, end_stream);
  if (end_stream) Finish();
}

void UpstreamRequest::DecodeTrailers(HeaderMap trailers) {
  if (done_) return;
  response_complete_ = true;
  callbacks_.OnUpstreamTrailers(std::move(trailers));
  Finish();
}

void UpstreamRequest::Finish() {
  done_ = true;
  Disarm(global_timer_);
  // An upstream that answered before the whole request went out keeps no half-sent request.
  ReleaseAttempt(!end_sent_);
}

void UpstreamRequest::OnReset(ResetReason reason, absl::string_view detail) {
  encoder_ = nullptr;  // the stream is gone
  if (done_) return;
  if (response_started_) {
    done_ = true;
    Disarm(global_timer_);
    ReleaseAttempt(false);
    callbacks_.OnUpstreamReset();
    return;
  }
  // A pooled connection the peer closed an instant before this request went out (a keep-alive
  // race, a draining listener), or an HTTP/2 stream refused unprocessed: nothing reached the
  // application, so the request goes again, on whatever the pool has, outside the retry policy
  // and without counting against the host. A draining listener closes every pooled connection
  // at once, so a stale one may be followed by another: each is replaced (each one tried is
  // gone from the pool), up to kMaxStaleReplacements; a refused stream is replaced once.
  const bool stale = attempt_reused_ && reason == ResetReason::kConnectionTermination;
  const bool refused = reason == ResetReason::kRefused;
  if (replayable_ && ((stale && stale_replacements_ < kMaxStaleReplacements) ||
                      (refused && !refused_retry_used_))) {
    if (stale) ++stale_replacements_;
    if (refused) refused_retry_used_ = true;
    previous_host_ = nullptr;
    ReleaseAttempt(false);
    StartAttempt();
    return;
  }
  AttemptResult result;
  result.kind = AttemptResult::Kind::kReset;
  LocalReply reply{503, absl::StrCat(kBeforeHeaders, "reset"), {}, {}, "UR"};
  if (reason == ResetReason::kProtocolError) {
    reply.status = 502;
    reply.flags = "UPE";
    reply.body = absl::StrCat(kBeforeHeaders, "protocol error (", detail, ")");
  } else if (reason == ResetReason::kRefused) {
    reply.body = absl::StrCat(kBeforeHeaders, "remote refused stream reset");
  } else if (reason == ResetReason::kConnectionTermination) {
    reply.body = absl::StrCat(kBeforeHeaders, "connection termination");
    reply.flags = "UC";
  }
  AttemptFailed(result, std::move(reply));
}

void UpstreamRequest::OnAboveWriteBufferHighWatermark() {
  watermark_blocked_ = true;
  UpdateWriteBlocked();
}

void UpstreamRequest::OnBelowWriteBufferLowWatermark() {
  watermark_blocked_ = false;
  UpdateWriteBlocked();
}

void UpstreamRequest::OnPoolFailure(Failure failure, absl::string_view detail) {
  waiting_for_pool_ = false;
  if (done_) return;
  AttemptResult result;
  switch (failure) {
    case Failure::kOverflow: {
      ReleaseAttempt(false);
      ++context_.stats.overflows[cluster_.name];
      cluster_.state->overflows.fetch_add(1, std::memory_order_relaxed);
      done_ = true;
      Disarm(global_timer_);
      callbacks_.OnUpstreamFailure({503,
                                    absl::StrCat(kBeforeHeaders, "overflow"),
                                    {{"x-envoy-overloaded", "true"},
                                     {"x-meshproxy-reason", absl::StrCat("overflow_", detail)}},
                                    {},
                                    "UO"});
      return;
    }
    case Failure::kTimeout:
      if (DeadlinePassed(context_.time.Now())) {
        result.kind = AttemptResult::Kind::kTimeout;
        ++context_.stats.upstream_timeouts[cluster_.name];
        AttemptFailed(result, TimeoutReply());
        return;
      }
      [[fallthrough]];
    case Failure::kConnect:
      result.kind = AttemptResult::Kind::kConnectFailure;
      ++context_.stats.upstream_connect_failures[cluster_.name];
      AttemptFailed(result,
                    {503, absl::StrCat(kBeforeHeaders, "connection failure"), {}, {}, "UF"});
      return;
  }
}

void UpstreamRequest::AttemptFailed(AttemptResult result, LocalReply reply) {
  const absl::Time now = context_.time.Now();
  if (host_) RecordForOutlierDetection(cluster_, *host_, result, now);
  previous_host_ = host_;
  ReleaseAttempt(true);
  absl::Duration backoff;
  RetryState::Decision decision =
      retry_.OnAttemptEnded(result, replayable_, context_.random(), &backoff);
  if (decision == RetryState::Decision::kRetry && !DeadlinePassed(now + backoff)) {
    Arm(backoff_timer_, &UpstreamRequest::StartAttempt, backoff);
    return;
  }
  if (decision == RetryState::Decision::kOverflow) ++context_.stats.overflows[cluster_.name];
  done_ = true;
  Disarm(global_timer_);
  callbacks_.OnUpstreamFailure(std::move(reply));
}

void UpstreamRequest::ReleaseAttempt(bool reset) {
  Disarm(per_try_timer_);
  if (encoder_) {
    Stream& stream = encoder_->stream();
    encoder_ = nullptr;
    stream.SetCallbacks(nullptr);
    if (reset) stream.Reset(ResetReason::kLocal);
  }
  pending_.reset();
  waiting_for_pool_ = false;
  end_sent_ = false;
  if (host_) {
    host_->state->active_requests.fetch_sub(1, std::memory_order_relaxed);
    host_ = nullptr;
  }
}

void UpstreamRequest::OnPerTryTimeout() {
  if (done_ || response_started_) return;
  ++context_.stats.upstream_timeouts[cluster_.name];
  AttemptResult result;
  result.kind = AttemptResult::Kind::kTimeout;
  AttemptFailed(result, TimeoutReply());
}

void UpstreamRequest::OnGlobalTimeout() {
  if (done_) return;
  ++context_.stats.upstream_timeouts[cluster_.name];
  done_ = true;
  Disarm(backoff_timer_);
  if (host_) {
    AttemptResult result;
    result.kind = AttemptResult::Kind::kTimeout;
    RecordForOutlierDetection(cluster_, *host_, result, context_.time.Now());
  }
  ReleaseAttempt(true);
  if (response_started_) {
    callbacks_.OnUpstreamReset();
  } else {
    callbacks_.OnUpstreamFailure(TimeoutReply());
  }
}

bool UpstreamRequest::DeadlinePassed(absl::Time when) const {
  return deadline_ <= when;
}

LocalReply UpstreamRequest::TimeoutReply() const {
  LocalReply reply{504, "upstream request timeout", {}, {}, "UT"};
  if (deadline_from_grpc_) reply.grpc_status = 4;  // DEADLINE_EXCEEDED
  return reply;
}

void UpstreamRequest::Cancel() {
  done_ = true;
  Disarm(global_timer_);
  Disarm(backoff_timer_);
  ReleaseAttempt(true);
}

void UpstreamRequest::ReadDisable(bool disable) {
  read_disabled_ += disable ? 1 : -1;
  if (encoder_) encoder_->stream().ReadDisable(disable);
}

}  // namespace mesh::dataplane
