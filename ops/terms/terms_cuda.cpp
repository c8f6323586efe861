// CUDA kernels of spotlight::masked_mse and spotlight::soft_dice and their
// private forward and backward ops: checks, allocation, stream, and the
// launchers of ops/cuda/terms_kernels.cu. Forward: one memset and one
// launch; backward: two launches. No host sync; see docs/cuda.md.
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <tuple>

#include "ops/common.h"
#include "ops/cuda/glue.h"
#include "ops/cuda/launch.h"
#include "ops/terms/terms_checks.h"

namespace spotlight_ops {
namespace {

std::tuple<Tensor, Tensor> masked_mse_forward_cuda(const Tensor& pred, const Tensor& target, const Tensor& mask,
                                                   c10::string_view mse_normalization, c10::string_view reduction) {
  const TermsCall call = check_masked_mse_call(pred, target, mask, mse_normalization, reduction);
  const c10::cuda::CUDAGuard device_guard(pred.device());
  const Tensor p = pred.contiguous(), t = target.contiguous(), m = mask.contiguous();
  Tensor out = empty_term_output(pred, call), sums = empty_term_sums(pred, call);
  const auto dtype = cuda::dtype_of(pred);
  const size_t bytes = cuda::term_workspace_bytes(dtype, call.samples, call.voxels);
  Tensor ws = cuda::workspace(pred, bytes);
  C10_CUDA_CHECK(cuda::masked_mse(dtype, p.const_data_ptr(), t.const_data_ptr(), m.const_data_ptr<bool>(),
                                  call.samples, call.voxels, call.mse_normalization, call.reduction, out.data_ptr(),
                                  sums.data_ptr<double>(), cuda::workspace_ptr(ws), bytes, cuda::current_stream()));
  return {out, sums};
}

Tensor masked_mse_cuda(const Tensor& pred, const Tensor& target, const Tensor& mask,
                       c10::string_view mse_normalization, c10::string_view reduction) {
  return std::get<0>(masked_mse_forward_cuda(pred, target, mask, mse_normalization, reduction));
}

std::tuple<Tensor, Tensor> masked_mse_backward_cuda(const Tensor& grad, const Tensor& pred, const Tensor& target,
                                                    const Tensor& mask, const Tensor& sums,
                                                    c10::string_view mse_normalization, c10::string_view reduction,
                                                    bool target_grad) {
  const TermsCall call = check_masked_mse_call(pred, target, mask, mse_normalization, reduction);
  check_term_state(grad, sums, pred, "pred", call);
  const c10::cuda::CUDAGuard device_guard(pred.device());
  const Tensor p = pred.contiguous(), t = target.contiguous(), m = mask.contiguous(), s = sums.contiguous();
  const Tensor g = grad.to(at::kDouble).contiguous();
  Tensor grad_pred = at::empty_like(p);
  Tensor grad_target = target_grad ? at::empty_like(t) : at::empty({0}, p.options());
  const size_t bytes = cuda::term_backward_workspace_bytes(call.samples);
  Tensor ws = cuda::workspace(pred, bytes);
  C10_CUDA_CHECK(cuda::masked_mse_backward(cuda::dtype_of(pred), g.const_data_ptr<double>(), p.const_data_ptr(),
                                           t.const_data_ptr(), m.const_data_ptr<bool>(), call.samples, call.voxels,
                                           s.const_data_ptr<double>(), call.mse_normalization, call.reduction,
                                           grad_pred.data_ptr(), target_grad ? grad_target.data_ptr() : nullptr,
                                           cuda::workspace_ptr(ws), bytes, cuda::current_stream()));
  return {grad_pred, grad_target};
}

std::tuple<Tensor, Tensor> soft_dice_forward_cuda(const Tensor& soft, const Tensor& mask, double eps,
                                                  c10::string_view reduction) {
  const TermsCall call = check_soft_dice_call(soft, mask, eps, reduction);
  const c10::cuda::CUDAGuard device_guard(soft.device());
  const Tensor s = soft.contiguous(), m = mask.contiguous();
  Tensor out = empty_term_output(soft, call), sums = empty_term_sums(soft, call);
  const auto dtype = cuda::dtype_of(soft);
  const size_t bytes = cuda::term_workspace_bytes(dtype, call.samples, call.voxels);
  Tensor ws = cuda::workspace(soft, bytes);
  C10_CUDA_CHECK(cuda::soft_dice(dtype, s.const_data_ptr(), m.const_data_ptr<bool>(), call.samples, call.voxels,
                                 call.eps, call.reduction, out.data_ptr(), sums.data_ptr<double>(),
                                 cuda::workspace_ptr(ws), bytes, cuda::current_stream()));
  return {out, sums};
}

Tensor soft_dice_cuda(const Tensor& soft, const Tensor& mask, double eps, c10::string_view reduction) {
  return std::get<0>(soft_dice_forward_cuda(soft, mask, eps, reduction));
}

Tensor soft_dice_backward_cuda(const Tensor& grad, const Tensor& soft, const Tensor& mask, const Tensor& sums,
                               double eps, c10::string_view reduction) {
  const TermsCall call = check_soft_dice_call(soft, mask, eps, reduction);
  check_term_state(grad, sums, soft, "soft", call);
  const c10::cuda::CUDAGuard device_guard(soft.device());
  const Tensor m = mask.contiguous(), s = sums.contiguous();
  const Tensor g = grad.to(at::kDouble).contiguous();
  Tensor grad_soft = at::empty_like(soft, at::MemoryFormat::Contiguous);
  const size_t bytes = cuda::term_backward_workspace_bytes(call.samples);
  Tensor ws = cuda::workspace(soft, bytes);
  C10_CUDA_CHECK(cuda::soft_dice_backward(cuda::dtype_of(soft), g.const_data_ptr<double>(), m.const_data_ptr<bool>(),
                                          call.samples, call.voxels, s.const_data_ptr<double>(), call.eps,
                                          call.reduction, grad_soft.data_ptr(), cuda::workspace_ptr(ws), bytes,
                                          cuda::current_stream()));
  return grad_soft;
}

}  // namespace

TORCH_LIBRARY_IMPL(spotlight, CUDA, m) {
  m.impl("masked_mse", &masked_mse_cuda);
  m.impl("soft_dice", &soft_dice_cuda);
  m.impl("_masked_mse_forward", &masked_mse_forward_cuda);
  m.impl("_masked_mse_backward", &masked_mse_backward_cuda);
  m.impl("_soft_dice_forward", &soft_dice_forward_cuda);
  m.impl("_soft_dice_backward", &soft_dice_backward_cuda);
}

}  // namespace spotlight_ops
