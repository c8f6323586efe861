// Temporary storage in the style of CUB's two-phase API: the caller owns one
// device allocation; each device-level function carves it into aligned
// arrays. Carving with no base pointer only counts bytes, so the size query
// and the launch share one layout function and cannot disagree.
#pragma once

#include <cstddef>

#include "spotlight/core/config.hpp"

namespace spotlight::cuda {

class WorkspaceCarver {
 public:
  static constexpr size_t kAlignment = 256;

  explicit WorkspaceCarver(void* base = nullptr) : base_(static_cast<char*>(base)) {}

  // The next `count` values of U; null when only counting.
  template <class U>
  U* take(index_t count) {
    offset_ = (offset_ + kAlignment - 1) / kAlignment * kAlignment;
    U* p = base_ ? reinterpret_cast<U*>(base_ + offset_) : nullptr;
    offset_ += static_cast<size_t>(count) * sizeof(U);
    return p;
  }

  size_t bytes() const { return offset_; }

 private:
  char* base_;
  size_t offset_ = 0;
};

}  // namespace spotlight::cuda
