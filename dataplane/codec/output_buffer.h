#pragma once

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace mesh::dataplane {

// Bytes a codec has encoded and its connection has not yet written: appended at the back,
// consumed from the front. One contiguous block, so a small response leaves in one write.
class OutputBuffer {
 public:
  void Append(absl::string_view bytes) { buffer_.append(bytes.data(), bytes.size()); }
  // For encoders that write in place (a head built field by field).
  std::string& back() { return buffer_; }
  absl::string_view View() const {
    return absl::string_view(buffer_).substr(start_);
  }
  void Consume(size_t n) {
    start_ += n;
    if (start_ >= buffer_.size()) {
      buffer_.clear();
      start_ = 0;
    } else if (start_ > 64 * 1024 && start_ * 2 > buffer_.size()) {
      buffer_.erase(0, start_);  // keep a long-lived slow writer from growing without bound
      start_ = 0;
    }
  }
  size_t size() const { return buffer_.size() - start_; }
  bool empty() const { return size() == 0; }

 private:
  std::string buffer_;
  size_t start_ = 0;
};

}  // namespace mesh::dataplane
