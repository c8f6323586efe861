// Launchers of otsu_threshold and otsu_standardize (see launch.h).
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

}  // namespace spotlight_ops::cuda
