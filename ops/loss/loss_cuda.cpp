// CUDA kernels of spotlight::_loss_forward and spotlight::_loss_backward.
// Forward: 3 launches with Otsu thresholds, 1 (after a memset of its arrival
// counters) with given ones; backward: 1 launch. No host sync; see docs/cuda.md.
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <tuple>

#include "ops/common.h"
#include "ops/cuda/glue.h"
#include "ops/cuda/launch.h"
#include "ops/loss/loss_checks.h"

namespace spotlight_ops {
namespace {

std::tuple<Tensor, Tensor, Tensor> loss_forward_cuda(const Tensor& pred, const Tensor& target,
                                                     const std::optional<Tensor>& threshold, double lam, double k,
                                                     double eps, int64_t bins, c10::string_view mse_normalization,
                                                     c10::string_view reduction, c10::string_view soft_mask,
                                                     const std::optional<Tensor>& mask, c10::string_view mask_rule,
                                                     c10::string_view dice_denominator, c10::string_view empty_pools,
                                                     bool per_channel) {
  const LossVariantArgs variant{soft_mask, &mask, mask_rule, dice_denominator, empty_pools, per_channel};
  const c10::cuda::CUDAGuard device_guard(pred.device());
  const LossCall call =
      check_loss_call(pred, target, threshold, lam, k, eps, bins, mse_normalization, reduction, variant);
  const Tensor p = pred.contiguous(), t = target.contiguous();
  auto [loss, thresholds, sums] = empty_loss_outputs(pred, call, per_channel);
  const bool otsu = !call.thresholds.defined();
  const auto dtype = cuda::dtype_of(pred);
  const size_t bytes = cuda::loss_forward_workspace_bytes(dtype, call.samples, call.voxels, call.opt.bins, otsu);
  Tensor ws = cuda::workspace(pred, bytes);
  C10_CUDA_CHECK(cuda::loss_forward(dtype, p.const_data_ptr(), t.const_data_ptr(), call.samples, call.voxels,
                                    otsu ? nullptr : call.thresholds.const_data_ptr(), call.opt, loss.data_ptr(),
                                    thresholds.data_ptr(), sums.data_ptr<double>(), cuda::workspace_ptr(ws), bytes,
                                    cuda::current_stream()));
  return {loss, thresholds, sums};
}

std::tuple<Tensor, Tensor> loss_backward_cuda(const Tensor& grad, const Tensor& pred, const Tensor& target,
                                              const Tensor& thresholds, const Tensor& sums, double lam, double k,
                                              double eps, c10::string_view mse_normalization,
                                              c10::string_view reduction, bool target_grad,
                                              c10::string_view soft_mask, const std::optional<Tensor>& mask,
                                              c10::string_view mask_rule, c10::string_view dice_denominator,
                                              c10::string_view empty_pools, bool per_channel) {
  const LossVariantArgs variant{soft_mask, &mask, mask_rule, dice_denominator, empty_pools, per_channel};
  const c10::cuda::CUDAGuard device_guard(pred.device());
  const LossBackwardCall call = check_loss_backward_call(grad, pred, target, thresholds, sums, lam, k, eps,
                                                         mse_normalization, reduction, variant);
  const Tensor p = pred.contiguous(), t = target.contiguous();
  const Tensor thr = thresholds.contiguous(), s = sums.contiguous();
  // The upstream gradient is read in place, through its stride (an expanded
  // gradient has stride 0); a gradient of another dtype than pred is read
  // as float64, as the CPU kernel reads every gradient.
  Tensor g = grad.reshape({-1});
  const bool grad_is_float64 = g.scalar_type() != pred.scalar_type();
  if (grad_is_float64) g = g.to(at::kDouble);
  Tensor grad_pred = at::empty_like(p);
  Tensor grad_target = target_grad ? at::empty_like(t) : at::empty({0}, p.options());
  const auto dtype = cuda::dtype_of(pred);
  const size_t bytes = cuda::loss_backward_workspace_bytes(dtype, call.samples, call.opt.reduction);
  Tensor ws = cuda::workspace(pred, bytes);
  C10_CUDA_CHECK(cuda::loss_backward(dtype, g.const_data_ptr(), grad_is_float64, g.stride(0), p.const_data_ptr(),
                                     t.const_data_ptr(), call.samples, call.voxels, thr.const_data_ptr(),
                                     s.const_data_ptr<double>(), call.opt, grad_pred.data_ptr(),
                                     target_grad ? grad_target.data_ptr() : nullptr, cuda::workspace_ptr(ws), bytes,
                                     cuda::current_stream()));
  return {grad_pred, grad_target};
}

}  // namespace

TORCH_LIBRARY_IMPL(spotlight, CUDA, m) {
  m.impl("_loss_forward", &loss_forward_cuda);
  m.impl("_loss_backward", &loss_backward_cuda);
}

}  // namespace spotlight_ops
