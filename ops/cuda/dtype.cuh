// From the launchers' runtime dtype to the header templates' types.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "ops/cuda/launch.h"

namespace spotlight_ops::cuda {

template <class T>
struct TypeTag {
  using type = T;
};

// Calls f(TypeTag<T>{}) with T the device type of `dtype`; `invalid` for a
// dtype outside the enum (the glue never passes one).
template <class R, class F>
R visit_dtype(DType dtype, R invalid, F&& f) {
  switch (dtype) {
    case DType::kFloat32:
      return f(TypeTag<float>{});
    case DType::kFloat64:
      return f(TypeTag<double>{});
    case DType::kFloat16:
      return f(TypeTag<__half>{});
    case DType::kBFloat16:
      return f(TypeTag<__nv_bfloat16>{});
  }
  return invalid;
}

}  // namespace spotlight_ops::cuda
