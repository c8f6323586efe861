// Launchers of masked_mse and soft_dice, forward and backward (see launch.h).
#include "ops/cuda/dtype.cuh"
#include "ops/cuda/launch.h"
#include "spotlight/cuda/terms.cuh"

namespace spotlight_ops::cuda {

namespace {

// The [samples, LossSums::kFields] float64 sums tensor is read as LossSums records.
spotlight::LossSums* as_sums(double* sums) { return reinterpret_cast<spotlight::LossSums*>(sums); }
const spotlight::LossSums* as_sums(const double* sums) { return reinterpret_cast<const spotlight::LossSums*>(sums); }

}  // namespace

size_t term_workspace_bytes(DType dtype, int64_t samples, int64_t voxels) {
  return visit_dtype(dtype, size_t{0}, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return spotlight::cuda::term_workspace_bytes<T>(samples, voxels);
  });
}

cudaError_t masked_mse(DType dtype, const void* pred, const void* target, const bool* mask, int64_t samples,
                       int64_t voxels, spotlight::MseNormalization mse_normalization, spotlight::Reduction reduction,
                       void* out, double* sums, void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  return visit_dtype(dtype, cudaErrorInvalidValue, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return spotlight::cuda::masked_mse(static_cast<const T*>(pred), static_cast<const T*>(target), mask, samples,
                                       voxels, mse_normalization, reduction, static_cast<T*>(out), as_sums(sums),
                                       workspace, workspace_bytes, stream);
  });
}

cudaError_t soft_dice(DType dtype, const void* soft, const bool* mask, int64_t samples, int64_t voxels, double eps,
                      spotlight::Reduction reduction, void* out, double* sums, void* workspace,
                      size_t workspace_bytes, cudaStream_t stream) {
  return visit_dtype(dtype, cudaErrorInvalidValue, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return spotlight::cuda::soft_dice(static_cast<const T*>(soft), mask, samples, voxels, eps, reduction,
                                      static_cast<T*>(out), as_sums(sums), workspace, workspace_bytes, stream);
  });
}

size_t term_backward_workspace_bytes(int64_t samples) {
  return spotlight::cuda::term_backward_workspace_bytes(samples);
}

cudaError_t masked_mse_backward(DType dtype, const double* grad, const void* pred, const void* target,
                                const bool* mask, int64_t samples, int64_t voxels, const double* sums,
                                spotlight::MseNormalization mse_normalization, spotlight::Reduction reduction,
                                void* grad_pred, void* grad_target, void* workspace, size_t workspace_bytes,
                                cudaStream_t stream) {
  return visit_dtype(dtype, cudaErrorInvalidValue, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return spotlight::cuda::masked_mse_backward(grad, static_cast<const T*>(pred), static_cast<const T*>(target),
                                                mask, samples, voxels, as_sums(sums), mse_normalization, reduction,
                                                static_cast<T*>(grad_pred), static_cast<T*>(grad_target), workspace,
                                                workspace_bytes, stream);
  });
}

cudaError_t soft_dice_backward(DType dtype, const double* grad, const bool* mask, int64_t samples, int64_t voxels,
                               const double* sums, double eps, spotlight::Reduction reduction, void* grad_soft,
                               void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  return visit_dtype(dtype, cudaErrorInvalidValue, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return spotlight::cuda::soft_dice_backward(grad, mask, samples, voxels, as_sums(sums), eps, reduction,
                                               static_cast<T*>(grad_soft), workspace, workspace_bytes, stream);
  });
}

}  // namespace spotlight_ops::cuda
