// CUDA glue shared by every spotlight CUDA header: the runtime, error
// propagation in the style of CUB (every device-level function returns a
// cudaError_t and never throws), and small integer helpers.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "spotlight/core/config.hpp"

// Returns the error of `expr` from the enclosing function when it fails.
// (Variadic: template arguments in `expr` may hold commas.)
#define SPOTLIGHT_CUDA_TRY(...)                                              \
  do {                                                                       \
    const cudaError_t spotlight_cuda_error_ = (__VA_ARGS__);                 \
    if (spotlight_cuda_error_ != cudaSuccess) return spotlight_cuda_error_; \
  } while (0)

namespace spotlight::cuda {

inline constexpr int kWarpThreads = 32;

SPOTLIGHT_HD constexpr index_t ceil_div(index_t a, index_t b) { return (a + b - 1) / b; }

// The error of the launch just made (bad configuration, no kernel image for
// this GPU), as CUB's and PyTorch's launch checks read it.
inline cudaError_t launch_error() { return cudaGetLastError(); }

}  // namespace spotlight::cuda
