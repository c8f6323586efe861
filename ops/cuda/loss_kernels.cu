// Launchers of the fused loss forward and backward (see launch.h).
#include "ops/cuda/dtype.cuh"
#include "ops/cuda/launch.h"
#include "spotlight/core/loss_terms.hpp"
#include "spotlight/cuda/loss.cuh"

namespace spotlight_ops::cuda {

// The [samples, LossSums::kFields] float64 sums tensor is read as LossSums records.
static_assert(sizeof(spotlight::LossSums) == spotlight::LossSums::kFields * sizeof(double));
static_assert(alignof(spotlight::LossSums) == alignof(double));

size_t loss_forward_workspace_bytes(DType dtype, int64_t samples, int64_t voxels, int bins, bool otsu) {
  return visit_dtype(dtype, size_t{0}, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return spotlight::cuda::loss_forward_workspace_bytes<T>(samples, voxels, bins, otsu);
  });
}

cudaError_t loss_forward(DType dtype, const void* pred, const void* target, int64_t samples, int64_t voxels,
                         const void* given_thresholds, const spotlight::LossOptions& opt, void* loss,
                         void* thresholds, double* sums, void* workspace, size_t workspace_bytes,
                         cudaStream_t stream) {
  return visit_dtype(dtype, cudaErrorInvalidValue, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = spotlight::acc_t<T>;
    return spotlight::cuda::loss_forward(static_cast<const T*>(pred), static_cast<const T*>(target), samples, voxels,
                                         static_cast<const A*>(given_thresholds), opt, static_cast<T*>(loss),
                                         static_cast<A*>(thresholds), reinterpret_cast<spotlight::LossSums*>(sums),
                                         workspace, workspace_bytes, stream);
  });
}

size_t loss_backward_workspace_bytes(DType dtype, int64_t samples, spotlight::Reduction reduction) {
  return visit_dtype(dtype, size_t{0}, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return spotlight::cuda::loss_backward_workspace_bytes<T>(samples, reduction);
  });
}

cudaError_t loss_backward(DType dtype, const void* grad, bool grad_is_float64, int64_t grad_stride, const void* pred,
                          const void* target, int64_t samples, int64_t voxels, const void* thresholds,
                          const double* sums, const spotlight::LossOptions& opt, void* grad_pred, void* grad_target,
                          void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  return visit_dtype(dtype, cudaErrorInvalidValue, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = spotlight::acc_t<T>;
    const auto run = [&](const auto* g) {
      return spotlight::cuda::loss_backward(g, grad_stride, static_cast<const T*>(pred), static_cast<const T*>(target),
                                            samples, voxels, static_cast<const A*>(thresholds),
                                            reinterpret_cast<const spotlight::LossSums*>(sums), opt,
                                            static_cast<T*>(grad_pred), static_cast<T*>(grad_target), workspace,
                                            workspace_bytes, stream);
    };
    return grad_is_float64 ? run(static_cast<const double*>(grad)) : run(static_cast<const T*>(grad));
  });
}

}  // namespace spotlight_ops::cuda
