// Launchers of tunable_sigmoid, its backward and the backward's derivative
// (see launch.h).
#include "ops/cuda/dtype.cuh"
#include "ops/cuda/launch.h"
#include "spotlight/cuda/elementwise.cuh"

namespace spotlight_ops::cuda {

cudaError_t tunable_sigmoid(DType dtype, const void* x, int64_t count, double k, void* out, cudaStream_t stream) {
  return visit_dtype(dtype, cudaErrorInvalidValue, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return spotlight::cuda::tunable_sigmoid(static_cast<const T*>(x), count, k, static_cast<T*>(out), stream);
  });
}

cudaError_t tunable_sigmoid_backward(DType dtype, const void* grad, const void* x, int64_t count, double k,
                                     void* grad_x, cudaStream_t stream) {
  return visit_dtype(dtype, cudaErrorInvalidValue, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return spotlight::cuda::tunable_sigmoid_backward(static_cast<const T*>(grad), static_cast<const T*>(x), count, k,
                                                     static_cast<T*>(grad_x), stream);
  });
}

cudaError_t tunable_sigmoid_double_backward(DType dtype, const void* grad_out, const void* grad, const void* x,
                                            int64_t count, double k, void* grad_x, cudaStream_t stream) {
  return visit_dtype(dtype, cudaErrorInvalidValue, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return spotlight::cuda::tunable_sigmoid_double_backward(static_cast<const T*>(grad_out),
                                                            static_cast<const T*>(grad), static_cast<const T*>(x),
                                                            count, k, static_cast<T*>(grad_x), stream);
  });
}

}  // namespace spotlight_ops::cuda
