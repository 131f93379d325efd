#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "dataplane/admin/stats.h"
#include "dataplane/config/route_table.h"
#include "dataplane/router/local_reply.h"
#include "dataplane/stream/stream.h"
#include "dataplane/stream/time_source.h"
#include "dataplane/upstream/cluster_table.h"
#include "dataplane/upstream/connection_source.h"
#include "dataplane/upstream/retry_state.h"

namespace mesh::dataplane {

// What an upstream request tells the downstream stream that owns it.
class UpstreamRequestCallbacks {
 public:
  virtual ~UpstreamRequestCallbacks() = default;
  virtual void OnUpstreamHeaders(ResponseHeadPtr head, bool end_stream) = 0;
  virtual void OnUpstreamData(absl::string_view data, bool end_stream) = 0;
  virtual void OnUpstreamTrailers(HeaderMap trailers) = 0;
  // No response will come: the downstream answers `reply` itself. Called at most once, and
  // never after OnUpstreamHeaders.
  virtual void OnUpstreamFailure(LocalReply reply) = 0;
  // The upstream stream broke after its head was forwarded: the downstream must be reset.
  virtual void OnUpstreamReset() = 0;
  // Flow control: the upstream cannot take more request body now (true), or can again.
  virtual void OnUpstreamWriteBlocked(bool blocked) = 0;
};

// One request's journey upstream, as Envoy's router filter makes it: picks a host, takes a
// stream from the pools, sends the request, and relays the response; retries under the route's
// policy (with back-off, the cluster's retry budget, and a body kept up to `buffer_limit` so it
// can be sent again), enforces the per-try timeout and the request's deadline (the route's
// timeout, or a shorter grpc-timeout), and records each attempt for outlier detection.
// Everything time-related goes through the injected TimeSource, so all of it is unit-tested with
// a fake clock and a fake ConnectionSource. Worker-thread only; the owner keeps `cluster`,
// `route` and the callbacks alive for the request's lifetime.
class UpstreamRequest : public ResponseDecoder, public StreamCallbacks, public PoolCallbacks {
 public:
  struct Context {
    TimeSource& time;
    ConnectionSource& pools;
    std::function<uint64_t()> random;
    WorkerStats& stats;
  };
  struct Settings {
    HttpProtocol protocol = HttpProtocol::kHttp11;  // what the upstream speaks
    size_t buffer_limit = 1024 * 1024;  // request body kept for retries; beyond it, no retry
    std::optional<absl::Duration> grpc_timeout;  // the request's grpc-timeout, when valid
  };
  UpstreamRequest(Context context, const Cluster& cluster, const Route& route, RequestHeadPtr head,
                  std::optional<uint64_t> hash, Settings settings,
                  UpstreamRequestCallbacks& callbacks);
  ~UpstreamRequest() override;

  // Starts the first attempt; `end_stream` when the request has no body.
  void Start(bool end_stream);
  // Request body and trailers as they arrive from the client.
  void SendData(absl::string_view data, bool end_stream);
  void SendTrailers(HeaderMap trailers);
  // The client went away: everything upstream is cancelled; no callback follows.
  void Cancel();
  // Flow control from the client side: stop (true) or resume reading the response.
  void ReadDisable(bool disable);

  // ResponseDecoder
  void DecodeHeaders(ResponseHeadPtr head, bool end_stream) override;
  void DecodeData(absl::string_view data, bool end_stream) override;
  void DecodeTrailers(HeaderMap trailers) override;
  // StreamCallbacks
  void OnReset(ResetReason reason, absl::string_view detail) override;
  void OnAboveWriteBufferHighWatermark() override;
  void OnBelowWriteBufferLowWatermark() override;
  // PoolCallbacks
  void OnPoolReady(RequestEncoder& encoder, HttpProtocol protocol, bool reused) override;
  void OnPoolFailure(Failure failure, absl::string_view detail) override;

  const Host* host() const { return host_; }
  int attempts() const { return attempts_; }

 private:
  void StartAttempt();
  void SendBody();
  // The attempt ended without a usable response: retry, or report `reply`.
  void AttemptFailed(AttemptResult result, LocalReply reply);
  // Drops the attempt's stream and timers; `reset` resets a stream still open.
  void ReleaseAttempt(bool reset);
  void OnPerTryTimeout();
  void OnGlobalTimeout();
  void Finish();  // the response is complete: timers off, the stream let go
  void UpdateWriteBlocked();
  bool DeadlinePassed(absl::Time when) const;
  LocalReply TimeoutReply() const;
  void Arm(TimerPtr& timer, void (UpstreamRequest::*on_fire)(), absl::Duration delay);
  static void Disarm(const TimerPtr& timer);

  Context context_;
  const Cluster& cluster_;
  const Route& route_;
  RequestHeadPtr head_;
  const std::optional<uint64_t> hash_;
  const Settings settings_;
  UpstreamRequestCallbacks& callbacks_;
  RetryState retry_;
  TimerPtr per_try_timer_, global_timer_, backoff_timer_;  // made when first armed
  absl::Time start_;
  absl::Time deadline_ = absl::InfiniteFuture();
  bool deadline_from_grpc_ = false;

  const Host* host_ = nullptr;
  const Host* previous_host_ = nullptr;
  PendingStreamPtr pending_;
  RequestEncoder* encoder_ = nullptr;
  int attempts_ = 0;
  bool waiting_for_pool_ = false;
  bool attempt_reused_ = false;  // the attempt's connection had carried requests before
  // Free replacements of pooled connections found closed, and the one of a refused stream.
  static constexpr int kMaxStaleReplacements = 8;
  int stale_replacements_ = 0;
  bool refused_retry_used_ = false;

  std::string body_;      // request body: all of it while replayable, else what is unsent
  size_t body_sent_ = 0;  // of body_, on the current attempt
  bool replayable_ = true;
  bool request_complete_ = false;
  std::optional<HeaderMap> trailers_;
  bool end_sent_ = false;  // the request's end went out on the current attempt
  bool response_started_ = false;
  bool response_complete_ = false;
  bool done_ = false;  // a final outcome went to the callbacks, or Cancel
  int read_disabled_ = 0;
  bool write_blocked_ = false;
  bool watermark_blocked_ = false;
};

}  // namespace mesh::dataplane
