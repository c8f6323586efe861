// Autograd and composite kernels of spotlight::loss. The gradient lives in
// C++ so that TorchScript and libtorch programs get it with no Python.
#include <ATen/core/grad_mode.h>
#include <ATen/ops/full.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <string>

#include "ops/common.h"
#include "ops/dispatcher.h"
#include "ops/double_backward.h"

namespace spotlight_ops {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class LossFunction : public torch::autograd::Function<LossFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const Tensor& pred, const Tensor& target,
                               const std::optional<Tensor>& threshold, double lam, double k, double eps,
                               int64_t bins, c10::string_view mse_normalization, c10::string_view reduction,
                               c10::string_view soft_mask, const std::optional<Tensor>& mask,
                               c10::string_view mask_rule, c10::string_view dice_denominator,
                               c10::string_view empty_pools, bool per_channel) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [loss, thresholds, sums] =
        dispatch::loss_forward().call(pred, target, threshold, lam, k, eps, bins, mse_normalization, reduction,
                                      soft_mask, mask, mask_rule, dice_denominator, empty_pools, per_channel);
    ctx->save_for_backward({pred, target, thresholds, sums, mask.has_value() ? *mask : Tensor()});
    ctx->saved_data["lam"] = lam;
    ctx->saved_data["k"] = k;
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["mse_normalization"] = std::string(mse_normalization);
    ctx->saved_data["reduction"] = std::string(reduction);
    ctx->saved_data["soft_mask"] = std::string(soft_mask);
    ctx->saved_data["mask_rule"] = std::string(mask_rule);
    ctx->saved_data["dice_denominator"] = std::string(dice_denominator);
    ctx->saved_data["empty_pools"] = std::string(empty_pools);
    ctx->saved_data["per_channel"] = per_channel;
    ctx->saved_data["target_grad"] = target.requires_grad();
    return {loss};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const bool target_grad = ctx->saved_data["target_grad"].toBool();
    variable_list out(15);
    if (!grads[0].defined()) return out;
    const auto str = [&](const char* key) { return ctx->saved_data[key].toStringRef(); };
    const std::string norm = str("mse_normalization"), reduction = str("reduction"), soft_mask = str("soft_mask"),
                      mask_rule = str("mask_rule"), dice_denominator = str("dice_denominator"),
                      empty_pools = str("empty_pools");
    const std::optional<Tensor> mask = saved[4].defined() ? std::optional<Tensor>(saved[4]) : std::nullopt;
    Tensor grad_pred, grad_target;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      std::tie(grad_pred, grad_target) = dispatch::loss_backward().call(
          grads[0], saved[0], saved[1], saved[2], saved[3], ctx->saved_data["lam"].toDouble(),
          ctx->saved_data["k"].toDouble(), ctx->saved_data["eps"].toDouble(), norm, reduction, target_grad,
          soft_mask, mask, mask_rule, dice_denominator, empty_pools, ctx->saved_data["per_channel"].toBool());
    }
    error_on_double_backward(grad_pred, "loss", saved[0], saved[1], grads[0]);
    out[0] = grad_pred;
    if (target_grad) {
      error_on_double_backward(grad_target, "loss", saved[0], saved[1], grads[0]);
      out[1] = grad_target;
    }
    return out;
  }
};

#define SPOTLIGHT_LOSS_VARIANT_PARAMS                                                                    \
  c10::string_view soft_mask, const std::optional<Tensor>&mask, c10::string_view mask_rule,             \
      c10::string_view dice_denominator, c10::string_view empty_pools, bool per_channel
#define SPOTLIGHT_LOSS_VARIANT_ARGS soft_mask, mask, mask_rule, dice_denominator, empty_pools, per_channel

Tensor loss_autograd(const Tensor& pred, const Tensor& target, const std::optional<Tensor>& threshold, double lam,
                     double k, double eps, int64_t bins, c10::string_view mse_normalization,
                     c10::string_view reduction, SPOTLIGHT_LOSS_VARIANT_PARAMS) {
  TORCH_CHECK_VALUE(!threshold.has_value() || !threshold->defined() || !threshold->requires_grad(),
                    "spotlight: threshold must not require grad: the loss treats it as a constant (pass "
                    "threshold.detach())");
  return LossFunction::apply(pred, target, threshold, lam, k, eps, bins, mse_normalization, reduction,
                             SPOTLIGHT_LOSS_VARIANT_ARGS)[0];
}

// Below autograd, the loss is the first output of _loss_forward, on any device.
Tensor loss_composite(const Tensor& pred, const Tensor& target, const std::optional<Tensor>& threshold, double lam,
                      double k, double eps, int64_t bins, c10::string_view mse_normalization,
                      c10::string_view reduction, SPOTLIGHT_LOSS_VARIANT_PARAMS) {
  return std::get<0>(dispatch::loss_forward().call(pred, target, threshold, lam, k, eps, bins, mse_normalization,
                                                   reduction, SPOTLIGHT_LOSS_VARIANT_ARGS));
}

// loss.float_threshold: one threshold for the whole batch, given as a number.
Tensor loss_float_threshold(const Tensor& pred, const Tensor& target, double threshold, double lam, double k,
                            double eps, int64_t bins, c10::string_view mse_normalization,
                            c10::string_view reduction, SPOTLIGHT_LOSS_VARIANT_PARAMS) {
  check_floating(pred, "pred");
  const Tensor t = at::full({}, threshold, pred.options().dtype(acc_dtype(pred.scalar_type())));
  return dispatch::loss().call(pred, target, t, lam, k, eps, bins, mse_normalization, reduction,
                               SPOTLIGHT_LOSS_VARIANT_ARGS);
}

}  // namespace

TORCH_LIBRARY_IMPL(spotlight, Autograd, m) { m.impl("loss", &loss_autograd); }
TORCH_LIBRARY_IMPL(spotlight, CompositeExplicitAutograd, m) { m.impl("loss", &loss_composite); }
TORCH_LIBRARY_IMPL(spotlight, CompositeImplicitAutograd, m) { m.impl("loss.float_threshold", &loss_float_threshold); }

}  // namespace spotlight_ops
