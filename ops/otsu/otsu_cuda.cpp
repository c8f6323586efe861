// CUDA kernels of spotlight::otsu_threshold and spotlight::otsu_standardize
// (2 and 3 launches, no host sync; see docs/cuda.md).
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include "ops/common.h"
#include "ops/cuda/glue.h"
#include "ops/cuda/launch.h"
#include "ops/otsu/otsu_checks.h"

namespace spotlight_ops {
namespace {

Tensor otsu_threshold_cuda(const Tensor& x, int64_t bins) {
  const auto [samples, voxels] = check_otsu_call(x, bins);
  const c10::cuda::CUDAGuard device_guard(x.device());
  const Tensor xc = x.contiguous();
  Tensor out = at::empty({samples}, x.options().dtype(acc_dtype(x.scalar_type())));  // as the CPU kernel
  const auto dtype = cuda::dtype_of(x);
  const size_t bytes = cuda::otsu_threshold_workspace_bytes(dtype, samples, voxels, static_cast<int>(bins));
  Tensor ws = cuda::workspace(x, bytes);
  C10_CUDA_CHECK(cuda::otsu_threshold(dtype, xc.const_data_ptr(), samples, voxels, static_cast<int>(bins),
                                      out.data_ptr(), cuda::workspace_ptr(ws), bytes, cuda::current_stream()));
  return out;
}

Tensor otsu_standardize_cuda(const Tensor& x, int64_t bins) {
  const auto [samples, voxels] = check_otsu_call(x, bins);
  const c10::cuda::CUDAGuard device_guard(x.device());
  const Tensor xc = x.contiguous();
  Tensor out = at::empty_like(xc);
  const auto dtype = cuda::dtype_of(x);
  const size_t bytes = cuda::otsu_standardize_workspace_bytes(dtype, samples, voxels, static_cast<int>(bins));
  Tensor ws = cuda::workspace(x, bytes);
  C10_CUDA_CHECK(cuda::otsu_standardize(dtype, xc.const_data_ptr(), samples, voxels, static_cast<int>(bins),
                                        out.data_ptr(), cuda::workspace_ptr(ws), bytes, cuda::current_stream()));
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(spotlight, CUDA, m) {
  m.impl("otsu_threshold", &otsu_threshold_cuda);
  m.impl("otsu_standardize", &otsu_standardize_cuda);
}

}  // namespace spotlight_ops
