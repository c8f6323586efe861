// CUDA kernels of spotlight::otsu_threshold, spotlight::otsu_standardize and
// the standardization's private forward and backward (2, 3 and 2 launches, no
// host sync; see docs/cuda.md).
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <tuple>

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

// (y, thresholds [N], stats [N, 3]), the last two in the accumulation dtype.
std::tuple<Tensor, Tensor, Tensor> otsu_standardize_forward_cuda(const Tensor& x, int64_t bins) {
  const auto [samples, voxels] = check_otsu_call(x, bins);
  const c10::cuda::CUDAGuard device_guard(x.device());
  const Tensor xc = x.contiguous();
  Tensor out = at::empty_like(xc);
  const auto acc = x.options().dtype(acc_dtype(x.scalar_type()));
  Tensor thresholds = at::empty({samples}, acc);
  Tensor stats = at::empty({samples, kStandardizeStatsFields}, acc);
  const auto dtype = cuda::dtype_of(x);
  const size_t bytes = cuda::otsu_standardize_workspace_bytes(dtype, samples, voxels, static_cast<int>(bins));
  Tensor ws = cuda::workspace(x, bytes);
  C10_CUDA_CHECK(cuda::otsu_standardize_forward(dtype, xc.const_data_ptr(), samples, voxels, static_cast<int>(bins),
                                                out.data_ptr(), thresholds.data_ptr(), stats.data_ptr(),
                                                cuda::workspace_ptr(ws), bytes, cuda::current_stream()));
  return {out, thresholds, stats};
}

Tensor otsu_standardize_cuda(const Tensor& x, int64_t bins) {
  return std::get<0>(otsu_standardize_forward_cuda(x, bins));
}

Tensor otsu_standardize_backward_cuda(const Tensor& grad, const Tensor& x, const Tensor& thresholds,
                                      const Tensor& stats) {
  const auto [samples, voxels] = check_standardize_backward(grad, x, thresholds, stats);
  const c10::cuda::CUDAGuard device_guard(x.device());
  const Tensor xc = x.contiguous(), gc = grad.contiguous(), tc = thresholds.contiguous(), sc = stats.contiguous();
  Tensor grad_x = at::empty_like(xc);
  const auto dtype = cuda::dtype_of(x);
  const size_t bytes = cuda::otsu_standardize_backward_workspace_bytes(dtype, samples, voxels);
  Tensor ws = cuda::workspace(x, bytes);
  C10_CUDA_CHECK(cuda::otsu_standardize_backward(dtype, gc.const_data_ptr(), xc.const_data_ptr(), samples, voxels,
                                                 tc.const_data_ptr(), sc.const_data_ptr(), grad_x.data_ptr(),
                                                 cuda::workspace_ptr(ws), bytes, cuda::current_stream()));
  return grad_x;
}

}  // namespace

TORCH_LIBRARY_IMPL(spotlight, CUDA, m) {
  m.impl("otsu_threshold", &otsu_threshold_cuda);
  m.impl("otsu_standardize", &otsu_standardize_cuda);
  m.impl("_otsu_standardize_forward", &otsu_standardize_forward_cuda);
  m.impl("_otsu_standardize_backward", &otsu_standardize_backward_cuda);
}

}  // namespace spotlight_ops
