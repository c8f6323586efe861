// CUDA kernels of spotlight::masked_mse and spotlight::soft_dice (forward;
// their gradients are the ATen expressions of terms_autograd.cpp). One
// memset and one launch each; see docs/cuda.md.
#include <torch/library.h>

#include "ops/common.h"
#include "ops/cuda/glue.h"
#include "ops/cuda/launch.h"
#include "ops/terms/terms_checks.h"

namespace spotlight_ops {
namespace {

Tensor masked_mse_cuda(const Tensor& pred, const Tensor& target, const Tensor& mask,
                       c10::string_view mse_normalization, c10::string_view reduction) {
  const TermsCall call = check_masked_mse_call(pred, target, mask, mse_normalization, reduction);
  const c10::cuda::CUDAGuard device_guard(pred.device());
  const Tensor p = pred.contiguous(), t = target.contiguous(), m = mask.contiguous();
  Tensor out = empty_term_output(pred, call);
  const auto dtype = cuda::dtype_of(pred);
  const size_t bytes = cuda::term_workspace_bytes(dtype, call.samples, call.voxels);
  Tensor ws = cuda::workspace(pred, bytes);
  C10_CUDA_CHECK(cuda::masked_mse(dtype, p.const_data_ptr(), t.const_data_ptr(), m.const_data_ptr<bool>(),
                                  call.samples, call.voxels, call.opt.mse_normalization, call.opt.reduction,
                                  out.data_ptr(), cuda::workspace_ptr(ws), bytes, cuda::current_stream()));
  return out;
}

Tensor soft_dice_cuda(const Tensor& soft, const Tensor& mask, double eps, c10::string_view reduction) {
  const TermsCall call = check_soft_dice_call(soft, mask, eps, reduction);
  const c10::cuda::CUDAGuard device_guard(soft.device());
  const Tensor s = soft.contiguous(), m = mask.contiguous();
  Tensor out = empty_term_output(soft, call);
  const auto dtype = cuda::dtype_of(soft);
  const size_t bytes = cuda::term_workspace_bytes(dtype, call.samples, call.voxels);
  Tensor ws = cuda::workspace(soft, bytes);
  C10_CUDA_CHECK(cuda::soft_dice(dtype, s.const_data_ptr(), m.const_data_ptr<bool>(), call.samples, call.voxels,
                                 call.opt.eps, call.opt.reduction, out.data_ptr(), cuda::workspace_ptr(ws), bytes,
                                 cuda::current_stream()));
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(spotlight, CUDA, m) {
  m.impl("masked_mse", &masked_mse_cuda);
  m.impl("soft_dice", &soft_dice_cuda);
}

}  // namespace spotlight_ops
