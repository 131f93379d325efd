#pragma once

#include <cstddef>
#include <deque>
#include <string>

#include "absl/strings/string_view.h"

namespace mesh::dataplane {

// Bytes a codec has encoded and its connection has not yet written: appended at the back,
// written and consumed from the front. The front block, once handed out by Front(), never moves
// until it is consumed, so the connection may write from it while the codec keeps appending.
// A small response is one block, and leaves in one write.
class OutputBuffer {
 public:
  void Append(absl::string_view bytes) { back().append(bytes.data(), bytes.size()); }
  // The block to append to in place (a head built field by field).
  std::string& back() {
    if (blocks_.empty() || (blocks_.size() == 1 && front_locked_) ||
        blocks_.back().size() >= kBlock) {
      blocks_.emplace_back();
    }
    return blocks_.back();
  }
  // The first contiguous bytes to write; stable until Consume takes all of them.
  absl::string_view Front() {
    while (!front_locked_ && !blocks_.empty() && blocks_.front().empty()) blocks_.pop_front();
    if (blocks_.empty()) return {};
    front_locked_ = true;
    return absl::string_view(blocks_.front()).substr(start_);
  }
  // `n` bytes of Front() were written.
  void Consume(size_t n) {
    start_ += n;
    if (!blocks_.empty() && start_ >= blocks_.front().size()) {
      blocks_.pop_front();
      start_ = 0;
      front_locked_ = false;
    }
  }
  // Flow control: kAbove the first time the buffer holds more than `high` bytes, kBelow the first
  // time it drains under half of that afterwards, kNone otherwise.
  enum class Watermark { kNone, kAbove, kBelow };
  Watermark CrossedWatermark(size_t high) {
    const size_t held = size();
    if (!above_ && held > high) {
      above_ = true;
      return Watermark::kAbove;
    }
    if (above_ && held < high / 2) {
      above_ = false;
      return Watermark::kBelow;
    }
    return Watermark::kNone;
  }
  size_t size() const {
    size_t n = 0;
    for (const std::string& b : blocks_) n += b.size();
    return n - start_;
  }
  bool empty() const { return size() == 0; }

 private:
  static constexpr size_t kBlock = 64 * 1024;  // appends start a new block past this size
  std::deque<std::string> blocks_;
  size_t start_ = 0;
  bool front_locked_ = false;
  bool above_ = false;
};

}  // namespace mesh::dataplane
