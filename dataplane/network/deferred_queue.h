#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <memory>
#include <vector>

namespace mesh::dataplane {

// Something to do once the event being handled is done with (a connection flushing its output).
class DeferredTask {
 public:
  virtual ~DeferredTask() = default;
  virtual void RunDeferred() = 0;
};

// A worker's end-of-event work: what an event makes several connections write leaves in one
// write each, after everything the event caused was encoded, and without a trip through the
// event loop's queue (which would cost a poll of epoll per message). Event handlers open a Scope;
// work deferred outside any scope is posted instead. Worker-thread only.
class DeferredQueue {
 public:
  explicit DeferredQueue(boost::asio::io_context& io) : io_(io) {}

  void Defer(std::shared_ptr<DeferredTask> task) {
    tasks_.push_back(std::move(task));
    if (depth_ == 0 && !posted_) {
      posted_ = true;
      boost::asio::post(io_, [this] {
        posted_ = false;
        Scope scope(*this);
      });
    }
  }

  // Opened by each event handler; the outermost one runs the deferred work when it closes.
  class Scope {
   public:
    explicit Scope(DeferredQueue& queue) : queue_(queue) { ++queue_.depth_; }
    ~Scope() {
      if (queue_.depth_ == 1) queue_.RunAll();
      --queue_.depth_;
    }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    DeferredQueue& queue_;
  };

 private:
  void RunAll() {
    // A task may defer more (a flush that frees a stream which feeds another connection).
    for (size_t i = 0; i < tasks_.size(); ++i) {
      std::shared_ptr<DeferredTask> task = std::move(tasks_[i]);
      task->RunDeferred();
    }
    tasks_.clear();
  }

  boost::asio::io_context& io_;
  std::vector<std::shared_ptr<DeferredTask>> tasks_;
  int depth_ = 0;
  bool posted_ = false;
};

}  // namespace mesh::dataplane
