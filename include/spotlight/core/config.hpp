// Build-environment glue shared by every spotlight header: host/device
// qualifiers, the index type and the accumulation type of each input type.
#pragma once

#include <cstdint>
#include <type_traits>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define SPOTLIGHT_HD __host__ __device__ __forceinline__
#else
#define SPOTLIGHT_HD inline
#endif

namespace spotlight {

// Every offset is 64-bit: volumes of more than 2^31 voxels are ordinary.
using index_t = std::int64_t;

// Per-element math and partial sums run in float for float, half and
// bfloat16 inputs, and in double for double inputs (SPEC section 9).
template <class T>
struct accumulate {
  using type = float;
};
template <>
struct accumulate<double> {
  using type = double;
};
template <class T>
using acc_t = typename accumulate<T>::type;

}  // namespace spotlight
