// What every CUDA op kernel (*_cuda.cpp) shares: the launcher dtype of a
// tensor, the current stream, and workspace from torch's caching allocator
// (stream-ordered, so it is safe to free right after the launch, and it
// works under CUDA graph capture). C++ compiler only: torch headers.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <cstddef>
#include <cstdint>

#include "ops/common.h"
#include "ops/cuda/launch.h"

namespace spotlight_ops::cuda {

// The dtype of a tensor check_floating accepted.
inline DType dtype_of(const Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat:
      return DType::kFloat32;
    case at::kDouble:
      return DType::kFloat64;
    case at::kHalf:
      return DType::kFloat16;
    case at::kBFloat16:
      return DType::kBFloat16;
    default:
      TORCH_CHECK_TYPE(false, "spotlight: CUDA kernels take float32, float64, float16 or bfloat16, got ",
                       t.scalar_type());
  }
}

inline cudaStream_t current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

// `bytes` of device memory on the device of `like`, freed with the tensor.
inline Tensor workspace(const Tensor& like, size_t bytes) {
  return at::empty({static_cast<int64_t>(bytes)}, like.options().dtype(at::kByte));
}

// A device pointer to a workspace tensor's bytes (null for an empty one).
inline void* workspace_ptr(Tensor& ws) { return ws.numel() > 0 ? ws.data_ptr() : nullptr; }

}  // namespace spotlight_ops::cuda
