// CPU kernels of spotlight::masked_mse and spotlight::soft_dice and their
// private forward and backward ops: checks, allocation, and the header's
// spotlight::cpu::{masked_mse, soft_dice}{,_backward}.
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <tuple>

#include "ops/common.h"
#include "ops/cpu_alloc.h"
#include "ops/terms/terms_checks.h"
#include "spotlight/cpu/terms.hpp"

namespace spotlight_ops {
namespace {

// (value, sums [N, LossSums::kFields] float64)
std::tuple<Tensor, Tensor> masked_mse_forward_cpu(const Tensor& pred, const Tensor& target, const Tensor& mask,
                                                  c10::string_view mse_normalization, c10::string_view reduction) {
  const TermsCall call = check_masked_mse_call(pred, target, mask, mse_normalization, reduction);
  const Tensor p = pred.contiguous(), t = target.contiguous(), m = mask.contiguous();
  Tensor out = empty_term_output(pred, call), sums = empty_term_sums(pred, call);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, pred.scalar_type(), "spotlight::masked_mse", [&] {
    spotlight::cpu::masked_mse(p.const_data_ptr<scalar_t>(), t.const_data_ptr<scalar_t>(), m.const_data_ptr<bool>(),
                               call.samples, call.voxels, call.mse_normalization, call.reduction,
                               out.data_ptr<scalar_t>(), sums_ptr(sums), AtenExecutor{});
  });
  return {out, sums};
}

Tensor masked_mse_cpu(const Tensor& pred, const Tensor& target, const Tensor& mask,
                      c10::string_view mse_normalization, c10::string_view reduction) {
  return std::get<0>(masked_mse_forward_cpu(pred, target, mask, mse_normalization, reduction));
}

std::tuple<Tensor, Tensor> masked_mse_backward_cpu(const Tensor& grad, const Tensor& pred, const Tensor& target,
                                                   const Tensor& mask, const Tensor& sums,
                                                   c10::string_view mse_normalization, c10::string_view reduction,
                                                   bool target_grad) {
  const TermsCall call = check_masked_mse_call(pred, target, mask, mse_normalization, reduction);
  check_term_state(grad, sums, pred, "pred", call);
  const Tensor p = pred.contiguous(), t = target.contiguous(), m = mask.contiguous(), s = sums.contiguous();
  const Tensor g = grad.to(at::kDouble).contiguous();
  Tensor grad_pred = empty_streaming_like(p);
  Tensor grad_target = target_grad ? empty_streaming_like(t) : at::empty({0}, p.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, pred.scalar_type(), "spotlight::masked_mse_backward", [&] {
    spotlight::cpu::masked_mse_backward(g.const_data_ptr<double>(), p.const_data_ptr<scalar_t>(),
                                        t.const_data_ptr<scalar_t>(), m.const_data_ptr<bool>(), call.samples,
                                        call.voxels, sums_ptr(s), call.mse_normalization, call.reduction,
                                        grad_pred.data_ptr<scalar_t>(),
                                        target_grad ? grad_target.data_ptr<scalar_t>() : nullptr, AtenExecutor{});
  });
  return {grad_pred, grad_target};
}

std::tuple<Tensor, Tensor> soft_dice_forward_cpu(const Tensor& soft, const Tensor& mask, double eps,
                                                 c10::string_view reduction) {
  const TermsCall call = check_soft_dice_call(soft, mask, eps, reduction);
  const Tensor s = soft.contiguous(), m = mask.contiguous();
  Tensor out = empty_term_output(soft, call), sums = empty_term_sums(soft, call);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, soft.scalar_type(), "spotlight::soft_dice", [&] {
    spotlight::cpu::soft_dice(s.const_data_ptr<scalar_t>(), m.const_data_ptr<bool>(), call.samples, call.voxels,
                              call.eps, call.reduction, out.data_ptr<scalar_t>(), sums_ptr(sums), AtenExecutor{});
  });
  return {out, sums};
}

Tensor soft_dice_cpu(const Tensor& soft, const Tensor& mask, double eps, c10::string_view reduction) {
  return std::get<0>(soft_dice_forward_cpu(soft, mask, eps, reduction));
}

Tensor soft_dice_backward_cpu(const Tensor& grad, const Tensor& soft, const Tensor& mask, const Tensor& sums,
                              double eps, c10::string_view reduction) {
  const TermsCall call = check_soft_dice_call(soft, mask, eps, reduction);
  check_term_state(grad, sums, soft, "soft", call);
  const Tensor m = mask.contiguous(), s = sums.contiguous();
  const Tensor g = grad.to(at::kDouble).contiguous();
  Tensor grad_soft = empty_streaming_like(soft);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, soft.scalar_type(), "spotlight::soft_dice_backward", [&] {
    spotlight::cpu::soft_dice_backward(g.const_data_ptr<double>(), m.const_data_ptr<bool>(), call.samples,
                                       call.voxels, sums_ptr(s), call.eps, call.reduction,
                                       grad_soft.data_ptr<scalar_t>(), AtenExecutor{});
  });
  return grad_soft;
}

}  // namespace

TORCH_LIBRARY_IMPL(spotlight, CPU, m) {
  m.impl("masked_mse", &masked_mse_cpu);
  m.impl("soft_dice", &soft_dice_cpu);
  m.impl("_masked_mse_forward", &masked_mse_forward_cpu);
  m.impl("_masked_mse_backward", &masked_mse_backward_cpu);
  m.impl("_soft_dice_forward", &soft_dice_forward_cpu);
  m.impl("_soft_dice_backward", &soft_dice_backward_cpu);
}

}  // namespace spotlight_ops
