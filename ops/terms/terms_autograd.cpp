// Autograd of masked_mse and soft_dice. The mask is a constant (bool).
// Per pool, with g the upstream gradient of the pool's value:
//   masked_mse: dL/dP = g * 2 M (P - Y) / D,  dL/dY = -dL/dP  (0 when D = 0)
//   soft_dice:  dL/dS = g * (-2 M / B + 2 A / B^2),  A = sum(S M), B = sum(S) + sum(M) + eps
// "mean" pools per sample with g / N; "none" per sample with g_s.
#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <string>

#include "ops/common.h"

namespace spotlight_ops {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Per-pool sums of x [N, n]: a [1, 1] tensor for "batch", [N, 1] otherwise.
Tensor pool_sum(const Tensor& x, spotlight::Reduction r) {
  return r == spotlight::Reduction::kBatch ? x.sum().reshape({1, 1}) : x.sum(1, true);
}

// Upstream gradient per pool, broadcastable against [N, n].
Tensor pool_grad(const Tensor& grad, spotlight::Reduction r, int64_t samples, at::ScalarType acc) {
  const Tensor g = grad.to(acc);
  if (r == spotlight::Reduction::kNone) return g.reshape({samples, 1});
  if (r == spotlight::Reduction::kMean) return (g / static_cast<double>(samples)).reshape({1, 1});
  return g.reshape({1, 1});
}

class MaskedMseFunction : public torch::autograd::Function<MaskedMseFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const Tensor& pred, const Tensor& target, const Tensor& mask,
                               c10::string_view mse_normalization, c10::string_view reduction) {
    at::AutoDispatchBelowADInplaceOrView guard;
    static const auto op = c10::Dispatcher::singleton()
                               .findSchemaOrThrow("spotlight::masked_mse", "")
                               .typed<Tensor(const Tensor&, const Tensor&, const Tensor&, c10::string_view,
                                             c10::string_view)>();
    ctx->save_for_backward({pred, target, mask});
    ctx->saved_data["mse_normalization"] = std::string(mse_normalization);
    ctx->saved_data["reduction"] = std::string(reduction);
    return {op.call(pred, target, mask, mse_normalization, reduction)};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    if (!grads[0].defined()) return variable_list(5);
    const auto saved = ctx->get_saved_variables();
    const Tensor &pred = saved[0], &target = saved[1], &mask = saved[2];
    const auto opt = loss_options(0.5, -0.95, 1e-6, 256, ctx->saved_data["mse_normalization"].toStringRef(),
                                  ctx->saved_data["reduction"].toStringRef());
    const auto acc = acc_dtype(pred.scalar_type());
    const int64_t samples = pred.size(0);
    const Tensor p = pred.reshape({samples, -1}).to(acc), y = target.reshape({samples, -1}).to(acc);
    const Tensor m = mask.reshape({samples, -1}).to(acc);
    Tensor d = opt.mse_normalization == spotlight::MseNormalization::kForeground
                   ? pool_sum(m, opt.reduction)
                   : at::full_like(pool_sum(m, opt.reduction), static_cast<double>(
                                       opt.reduction == spotlight::Reduction::kBatch ? p.numel() : p.size(1)));
    const Tensor coef = at::where(d > 0, 2.0 / d, at::zeros_like(d)) * pool_grad(grads[0], opt.reduction, samples, acc);
    const Tensor gp = coef * m * (p - y);
    variable_list out(5);
    out[0] = gp.to(pred.scalar_type()).reshape(pred.sizes());
    out[1] = (-gp).to(target.scalar_type()).reshape(target.sizes());
    return out;
  }
};

class SoftDiceFunction : public torch::autograd::Function<SoftDiceFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const Tensor& soft, const Tensor& mask, double eps,
                               c10::string_view reduction) {
    at::AutoDispatchBelowADInplaceOrView guard;
    static const auto op = c10::Dispatcher::singleton()
                               .findSchemaOrThrow("spotlight::soft_dice", "")
                               .typed<Tensor(const Tensor&, const Tensor&, double, c10::string_view)>();
    ctx->save_for_backward({soft, mask});
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["reduction"] = std::string(reduction);
    return {op.call(soft, mask, eps, reduction)};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    if (!grads[0].defined()) return variable_list(4);
    const auto saved = ctx->get_saved_variables();
    const Tensor &soft = saved[0], &mask = saved[1];
    const double eps = ctx->saved_data["eps"].toDouble();
    const auto opt = loss_options(0.5, -0.95, eps, 256, "foreground", ctx->saved_data["reduction"].toStringRef());
    const auto acc = acc_dtype(soft.scalar_type());
    const int64_t samples = soft.size(0);
    const Tensor s = soft.reshape({samples, -1}).to(acc), m = mask.reshape({samples, -1}).to(acc);
    const Tensor a = pool_sum(s * m, opt.reduction);
    const Tensor b = pool_sum(s, opt.reduction) + pool_sum(m, opt.reduction) + eps;
    const Tensor gs = pool_grad(grads[0], opt.reduction, samples, acc) * (-2.0 * m / b + 2.0 * a / (b * b));
    variable_list out(4);
    out[0] = gs.to(soft.scalar_type()).reshape(soft.sizes());
    return out;
  }
};

Tensor masked_mse_autograd(const Tensor& pred, const Tensor& target, const Tensor& mask,
                           c10::string_view mse_normalization, c10::string_view reduction) {
  return MaskedMseFunction::apply(pred, target, mask, mse_normalization, reduction)[0];
}

Tensor soft_dice_autograd(const Tensor& soft, const Tensor& mask, double eps, c10::string_view reduction) {
  return SoftDiceFunction::apply(soft, mask, eps, reduction)[0];
}

}  // namespace

TORCH_LIBRARY_IMPL(spotlight, Autograd, m) {
  m.impl("masked_mse", &masked_mse_autograd);
  m.impl("soft_dice", &soft_dice_autograd);
}

}  // namespace spotlight_ops
