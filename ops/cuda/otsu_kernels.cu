// Launchers of otsu_threshold and otsu_standardize, forward and backward (see
// launch.h).
#include "ops/cuda/dtype.cuh"
#include "ops/cuda/launch.h"
#include "spotlight/cuda/otsu.cuh"
#include "spotlight/cuda/standardize.cuh"

namespace spotlight_ops::cuda {

size_t otsu_threshold_workspace_bytes(DType dtype, int64_t samples, int64_t voxels, int bins) {
  return visit_dtype(dtype, size_t{0}, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return spotlight::cuda::otsu_thresholds_workspace_bytes<T>(samples, voxels, bins);
  });
}

cudaError_t otsu_threshold(DType dtype, const void* x, int64_t samples, int64_t voxels, int bins, void* thresholds,
                           void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  return visit_dtype(dtype, cudaErrorInvalidValue, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = spotlight::acc_t<T>;
    return spotlight::cuda::otsu_thresholds(static_cast<const T*>(x), samples, voxels, bins,
                                            static_cast<A*>(thresholds), workspace, workspace_bytes, stream);
  });
}

size_t otsu_standardize_workspace_bytes(DType dtype, int64_t samples, int64_t voxels, int bins) {
  return visit_dtype(dtype, size_t{0}, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return spotlight::cuda::otsu_standardize_workspace_bytes<T>(samples, voxels, bins);
  });
}

cudaError_t otsu_standardize(DType dtype, const void* x, int64_t samples, int64_t voxels, int bins, void* out,
                             void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  return visit_dtype(dtype, cudaErrorInvalidValue, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return spotlight::cuda::otsu_standardize(static_cast<const T*>(x), samples, voxels, bins, static_cast<T*>(out),
                                             workspace, workspace_bytes, stream);
  });
}

cudaError_t otsu_standardize_forward(DType dtype, const void* x, int64_t samples, int64_t voxels, int bins,
                                     void* out, void* thresholds, void* stats, void* workspace,
                                     size_t workspace_bytes, cudaStream_t stream) {
  return visit_dtype(dtype, cudaErrorInvalidValue, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = spotlight::acc_t<T>;
    return spotlight::cuda::otsu_standardize_forward(
        static_cast<const T*>(x), samples, voxels, bins, static_cast<T*>(out), static_cast<A*>(thresholds),
        static_cast<spotlight::moments::StandardizeStats<A>*>(stats), workspace, workspace_bytes, stream);
  });
}

size_t otsu_standardize_backward_workspace_bytes(DType dtype, int64_t samples, int64_t voxels) {
  return visit_dtype(dtype, size_t{0}, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return spotlight::cuda::otsu_standardize_backward_workspace_bytes<T>(samples, voxels);
  });
}

cudaError_t otsu_standardize_backward(DType dtype, const void* grad, const void* x, int64_t samples, int64_t voxels,
                                      const void* thresholds, const void* stats, void* grad_x, void* workspace,
                                      size_t workspace_bytes, cudaStream_t stream) {
  return visit_dtype(dtype, cudaErrorInvalidValue, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = spotlight::acc_t<T>;
    return spotlight::cuda::otsu_standardize_backward(
        static_cast<const T*>(grad), static_cast<const T*>(x), samples, voxels, static_cast<const A*>(thresholds),
        static_cast<const spotlight::moments::StandardizeStats<A>*>(stats), static_cast<T*>(grad_x), workspace,
        workspace_bytes, stream);
  });
}

}  // namespace spotlight_ops::cuda
