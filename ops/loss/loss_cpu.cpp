// CPU kernels of spotlight::_loss_forward and spotlight::_loss_backward.
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <vector>

#include "ops/common.h"
#include "ops/cpu_alloc.h"
#include "ops/loss/loss_checks.h"
#include "spotlight/cpu/loss.hpp"

namespace spotlight_ops {
namespace {

static_assert(sizeof(spotlight::LossSums) == spotlight::LossSums::kFields * sizeof(double));

std::tuple<Tensor, Tensor, Tensor> loss_forward_cpu(const Tensor& pred, const Tensor& target,
                                                    const std::optional<Tensor>& threshold, double lam, double k,
                                                    double eps, int64_t bins, c10::string_view mse_normalization,
                                                    c10::string_view reduction) {
  const LossCall call = check_loss_call(pred, target, threshold, lam, k, eps, bins, mse_normalization, reduction);
  const Tensor p = pred.contiguous(), t = target.contiguous();
  auto [loss, thresholds, sums] = empty_loss_outputs(pred, call);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, pred.scalar_type(), "spotlight::loss", [&] {
    using A = spotlight::acc_t<scalar_t>;
    A* thr = thresholds.data_ptr<A>();
    if (call.thresholds.defined()) {
      std::copy_n(call.thresholds.const_data_ptr<A>(), call.samples, thr);
    } else {
      spotlight::cpu::otsu_thresholds(t.const_data_ptr<scalar_t>(), call.samples, call.voxels, call.opt.bins, thr,
                                      AtenExecutor{});
    }
    auto* s = reinterpret_cast<spotlight::LossSums*>(sums.data_ptr<double>());
    spotlight::cpu::loss_sums(p.const_data_ptr<scalar_t>(), t.const_data_ptr<scalar_t>(), call.samples, call.voxels,
                              thr, call.opt.k, s, AtenExecutor{});
    spotlight::finalize_losses(s, call.samples, call.voxels, call.opt, loss.data_ptr<scalar_t>());
  });
  return {loss, thresholds, sums};
}

std::tuple<Tensor, Tensor> loss_backward_cpu(const Tensor& grad, const Tensor& pred, const Tensor& target,
                                             const Tensor& thresholds, const Tensor& sums, double lam, double k,
                                             double eps, c10::string_view mse_normalization,
                                             c10::string_view reduction, bool target_grad) {
  const LossBackwardCall call = check_loss_backward_call(grad, pred, target, thresholds, sums, lam, k, eps,
                                                         mse_normalization, reduction);
  const Tensor p = pred.contiguous(), t = target.contiguous();
  const Tensor g = grad.to(at::kDouble).contiguous();
  const Tensor s = sums.contiguous();
  std::vector<spotlight::GradCoefficients> coef(static_cast<size_t>(call.samples));
  spotlight::gradient_coefficients(reinterpret_cast<const spotlight::LossSums*>(s.const_data_ptr<double>()),
                                   call.samples, call.voxels, call.opt, g.const_data_ptr<double>(), coef.data());
  Tensor grad_pred = empty_streaming_like(p);
  Tensor grad_target = target_grad ? empty_streaming_like(t) : at::empty({0}, p.options());
  const Tensor thr = thresholds.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, pred.scalar_type(), "spotlight::loss_backward", [&] {
    using A = spotlight::acc_t<scalar_t>;
    spotlight::cpu::loss_backward_apply(p.const_data_ptr<scalar_t>(), t.const_data_ptr<scalar_t>(), call.samples,
                                        call.voxels, thr.const_data_ptr<A>(), coef.data(), call.opt.k,
                                        grad_pred.data_ptr<scalar_t>(),
                                        target_grad ? grad_target.data_ptr<scalar_t>() : nullptr, AtenExecutor{});
  });
  return {grad_pred, grad_target};
}

}  // namespace

TORCH_LIBRARY_IMPL(spotlight, CPU, m) {
  m.impl("_loss_forward", &loss_forward_cpu);
  m.impl("_loss_backward", &loss_backward_cpu);
}

}  // namespace spotlight_ops
