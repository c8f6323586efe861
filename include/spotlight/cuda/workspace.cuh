// Temporary storage in the style of CUB's two-phase API: the caller owns one
// device allocation; each device-level function carves it into aligned
// arrays. Carving with no base pointer only counts bytes, so the size query
// and the launch share one layout function and cannot disagree.
#pragma once

#include <cstddef>
#include <cstdint>

#include "spotlight/core/config.hpp"

namespace spotlight::cuda {

class WorkspaceCarver {
 public:
  static constexpr size_t kAlignment = 256;
  // The least alignment of a base that every array carved from it keeps
  // (8-byte counters and doubles, 16-byte records); cudaMalloc gives 256,
  // torch's caching allocator 512.
  static constexpr size_t kBaseAlignment = 16;

  // Counting only, for a *_workspace_bytes query: take() returns null.
  WorkspaceCarver() = default;

  // Carving `base`, the caller's workspace, for a launch. A null or
  // misaligned base holds no non-empty layout: bytes() then reports
  // SIZE_MAX, so the launcher's `bytes() > workspace_bytes` check returns
  // cudaErrorInvalidValue before any launch, as CUB does, instead of
  // launching kernels on null pointers (an illegal address that poisons the
  // CUDA context).
  explicit WorkspaceCarver(void* base) : base_(static_cast<char*>(base)), launching_(true) {}

  // The next `count` values of U; null when only counting.
  template <class U>
  U* take(index_t count) {
    offset_ = (offset_ + kAlignment - 1) / kAlignment * kAlignment;
    U* p = base_ ? reinterpret_cast<U*>(base_ + offset_) : nullptr;
    offset_ += static_cast<size_t>(count) * sizeof(U);
    return p;
  }

  // The bytes the layout needs (SIZE_MAX: no workspace of any size holds it).
  size_t bytes() const { return launching_ && offset_ > 0 && !usable_base() ? SIZE_MAX : offset_; }

 private:
  bool usable_base() const {
    return base_ != nullptr && reinterpret_cast<std::uintptr_t>(base_) % kBaseAlignment == 0;
  }

  char* base_ = nullptr;
  bool launching_ = false;
  size_t offset_ = 0;
};

}  // namespace spotlight::cuda
