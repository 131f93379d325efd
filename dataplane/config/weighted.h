#pragma once

#include <cstdint>
#include <vector>

namespace mesh::dataplane {

// The item a uniform draw lands on when each item owns `weight` of `total` points; the first item
// when all weights are zero, nullptr when there is none. T has a `weight` member.
template <class T>
const T* PickWeighted(const std::vector<T>& items, uint64_t total, uint64_t draw) {
  if (items.empty()) return nullptr;
  if (items.size() == 1 || total == 0) return &items[0];
  uint64_t point = draw % total;
  for (const T& item : items) {
    if (point < item.weight) return &item;
    point -= item.weight;
  }
  return &items.back();
}

}  // namespace mesh::dataplane
