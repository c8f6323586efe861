// Conversions between the four input types and the accumulation types, on
// the device. Half and bfloat16 go through float both ways, so a value
// rounds exactly as the CPU kernels round it (c10::Half and c10::BFloat16
// also convert through float, rounding to nearest even).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cuda/std/limits>
#include <type_traits>

#include "spotlight/core/config.hpp"

namespace spotlight::cuda {

template <class To, class From>
__device__ __forceinline__ To convert(From v) {
  if constexpr (std::is_same_v<From, __half>) {
    return convert<To>(__half2float(v));
  } else if constexpr (std::is_same_v<From, __nv_bfloat16>) {
    return convert<To>(__bfloat162float(v));
  } else if constexpr (std::is_same_v<To, __half>) {
    return __float2half_rn(static_cast<float>(v));
  } else if constexpr (std::is_same_v<To, __nv_bfloat16>) {
    return __float2bfloat16_rn(static_cast<float>(v));
  } else {
    return static_cast<To>(v);
  }
}

template <class A>
__device__ __forceinline__ A infinity() {
  return ::cuda::std::numeric_limits<A>::infinity();
}

template <class A>
__device__ __forceinline__ A quiet_nan() {
  return ::cuda::std::numeric_limits<A>::quiet_NaN();
}

}  // namespace spotlight::cuda
