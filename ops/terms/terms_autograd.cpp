// Autograd of masked_mse and soft_dice: glue over their private forward and
// backward ops. The forward saves each sample's sums (spotlight::LossSums:
// D = sum(M) for masked_mse; A = sum(S M), sum(S), sum(M) for soft_dice), so
// the backward makes one pass over the voxels and no reduction; its math is
// the header's (term_coefficients in spotlight/core/loss_terms.hpp). The
// mask is a constant (bool). The backward is a kernel, not differentiable
// again: under create_graph its gradient raises a named error when a second
// backward reaches it (use spotlight_ops.reference for higher derivatives).
#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <string>
#include <tuple>

#include "ops/common.h"
#include "ops/double_backward.h"

namespace spotlight_ops {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

const auto& masked_mse_forward_op() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("spotlight::_masked_mse_forward", "")
                             .typed<std::tuple<Tensor, Tensor>(const Tensor&, const Tensor&, const Tensor&,
                                                               c10::string_view, c10::string_view)>();
  return op;
}

const auto& masked_mse_backward_op() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("spotlight::_masked_mse_backward", "")
                             .typed<std::tuple<Tensor, Tensor>(const Tensor&, const Tensor&, const Tensor&,
                                                               const Tensor&, const Tensor&, c10::string_view,
                                                               c10::string_view, bool)>();
  return op;
}

const auto& soft_dice_forward_op() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("spotlight::_soft_dice_forward", "")
                             .typed<std::tuple<Tensor, Tensor>(const Tensor&, const Tensor&, double,
                                                               c10::string_view)>();
  return op;
}

const auto& soft_dice_backward_op() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("spotlight::_soft_dice_backward", "")
                             .typed<Tensor(const Tensor&, const Tensor&, const Tensor&, const Tensor&, double,
                                           c10::string_view)>();
  return op;
}

class MaskedMseFunction : public torch::autograd::Function<MaskedMseFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const Tensor& pred, const Tensor& target, const Tensor& mask,
                               c10::string_view mse_normalization, c10::string_view reduction) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [value, sums] = masked_mse_forward_op().call(pred, target, mask, mse_normalization, reduction);
    ctx->save_for_backward({pred, target, mask, sums});
    ctx->saved_data["mse_normalization"] = std::string(mse_normalization);
    ctx->saved_data["reduction"] = std::string(reduction);
    ctx->saved_data["target_grad"] = target.requires_grad();
    return {value};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    variable_list out(5);
    if (!grads[0].defined()) return out;
    const auto saved = ctx->get_saved_variables();
    const bool target_grad = ctx->saved_data["target_grad"].toBool();
    Tensor grad_pred, grad_target;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      std::tie(grad_pred, grad_target) = masked_mse_backward_op().call(
          grads[0], saved[0], saved[1], saved[2], saved[3], ctx->saved_data["mse_normalization"].toStringRef(),
          ctx->saved_data["reduction"].toStringRef(), target_grad);
    }
    error_on_double_backward(grad_pred, "masked_mse", saved[0], saved[1], grads[0]);
    out[0] = grad_pred;
    if (target_grad) {
      error_on_double_backward(grad_target, "masked_mse", saved[0], saved[1], grads[0]);
      out[1] = grad_target;
    }
    return out;
  }
};

class SoftDiceFunction : public torch::autograd::Function<SoftDiceFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const Tensor& soft, const Tensor& mask, double eps,
                               c10::string_view reduction) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [value, sums] = soft_dice_forward_op().call(soft, mask, eps, reduction);
    ctx->save_for_backward({soft, mask, sums});
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["reduction"] = std::string(reduction);
    return {value};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    variable_list out(4);
    if (!grads[0].defined()) return out;
    const auto saved = ctx->get_saved_variables();
    Tensor grad_soft;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      grad_soft = soft_dice_backward_op().call(grads[0], saved[0], saved[1], saved[2],
                                               ctx->saved_data["eps"].toDouble(),
                                               ctx->saved_data["reduction"].toStringRef());
    }
    error_on_double_backward(grad_soft, "soft_dice", saved[0], grads[0], Tensor());
    out[0] = grad_soft;
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
