// Launchers of masked_mse and soft_dice (see launch.h).
#include "ops/cuda/dtype.cuh"
#include "ops/cuda/launch.h"
#include "spotlight/cuda/terms.cuh"

namespace spotlight_ops::cuda {

size_t term_workspace_bytes(DType dtype, int64_t samples, int64_t voxels) {
  return visit_dtype(dtype, size_t{0}, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return spotlight::cuda::term_workspace_bytes<T>(samples, voxels);
  });
}

cudaError_t masked_mse(DType dtype, const void* pred, const void* target, const bool* mask, int64_t samples,
                       int64_t voxels, spotlight::MseNormalization mse_normalization, spotlight::Reduction reduction,
                       void* out, void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  return visit_dtype(dtype, cudaErrorInvalidValue, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return spotlight::cuda::masked_mse(static_cast<const T*>(pred), static_cast<const T*>(target), mask, samples,
                                       voxels, mse_normalization, reduction, static_cast<T*>(out), workspace,
                                       workspace_bytes, stream);
  });
}

cudaError_t soft_dice(DType dtype, const void* soft, const bool* mask, int64_t samples, int64_t voxels, double eps,
                      spotlight::Reduction reduction, void* out, void* workspace, size_t workspace_bytes,
                      cudaStream_t stream) {
  return visit_dtype(dtype, cudaErrorInvalidValue, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return spotlight::cuda::soft_dice(static_cast<const T*>(soft), mask, samples, voxels, eps, reduction,
                                      static_cast<T*>(out), workspace, workspace_bytes, stream);
  });
}

}  // namespace spotlight_ops::cuda
