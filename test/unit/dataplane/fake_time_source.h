#pragma once

#include <algorithm>
#include <functional>
#include <memory>
#include <vector>

#include "dataplane/stream/time_source.h"

namespace mesh::dataplane::testing {

// Time that moves only when a test says so; timers fire in deadline order during Advance.
class FakeTimeSource : public TimeSource {
 public:
  absl::Time Now() override { return now_; }
  TimerPtr CreateTimer(std::function<void()> on_fire) override {
    return std::make_unique<FakeTimer>(*this, std::move(on_fire));
  }
  // Moves the clock forward, firing each timer whose time comes, at its time.
  void Advance(absl::Duration d) {
    const absl::Time end = now_ + d;
    for (;;) {
      FakeTimer* next = nullptr;
      for (FakeTimer* t : timers_) {
        if (t->enabled_ && t->at_ <= end && (!next || t->at_ < next->at_)) next = t;
      }
      if (!next) break;
      now_ = std::max(now_, next->at_);
      next->enabled_ = false;
      next->on_fire_();
    }
    now_ = end;
  }

 private:
  class FakeTimer : public Timer {
   public:
    FakeTimer(FakeTimeSource& source, std::function<void()> on_fire)
        : source_(source), on_fire_(std::move(on_fire)) {
      source_.timers_.push_back(this);
    }
    ~FakeTimer() override { std::erase(source_.timers_, this); }
    void Enable(absl::Duration delay) override {
      enabled_ = true;
      at_ = source_.now_ + delay;
    }
    void Disable() override { enabled_ = false; }
    bool Enabled() const override { return enabled_; }

    FakeTimeSource& source_;
    std::function<void()> on_fire_;
    bool enabled_ = false;
    absl::Time at_;
  };
  absl::Time now_ = absl::FromUnixSeconds(1'000'000);
  std::vector<FakeTimer*> timers_;
};

}  // namespace mesh::dataplane::testing
