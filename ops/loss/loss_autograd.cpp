// Autograd and composite kernels of spotlight::loss and spotlight::_loss_and_sums,
// boxed: each reads the options by name from the call (ops/loss/loss_options.h)
// and hands them on packed, so no kernel spells the option list. The gradient
// lives in C++ so that TorchScript and libtorch programs get it with no Python.
#include <ATen/ops/full.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <optional>
#include <vector>

#include "ops/common.h"
#include "ops/dispatcher.h"
#include "ops/double_backward.h"
#include "ops/loss/loss_options.h"

namespace spotlight_ops {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class LossFunction : public torch::autograd::Function<LossFunction> {
 public:
  // (loss, sums): the sums are the forward's per-pool counts, not differentiable.
  static variable_list forward(AutogradContext* ctx, const Tensor& pred, const Tensor& target,
                               const std::optional<Tensor>& threshold, const std::optional<Tensor>& mask,
                               const std::vector<double>& options) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [loss, thresholds, sums] = dispatch::loss_forward().call(pred, target, threshold, mask, options);
    ctx->save_for_backward({pred, target, thresholds, sums, mask.has_value() ? *mask : Tensor()});
    ctx->saved_data["options"] = options;
    ctx->saved_data["target_grad"] = target.requires_grad();
    ctx->mark_non_differentiable({sums});
    return {loss, sums};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const bool target_grad = ctx->saved_data["target_grad"].toBool();
    variable_list out(5);
    if (!grads[0].defined()) return out;
    const std::optional<Tensor> mask = saved[4].defined() ? std::optional<Tensor>(saved[4]) : std::nullopt;
    const std::vector<double> options = ctx->saved_data["options"].toDoubleVector();
    Tensor grad_pred, grad_target;
    {
      at::AutoDispatchBelowADInplaceOrView guard;
      std::tie(grad_pred, grad_target) =
          dispatch::loss_backward().call(grads[0], saved[0], saved[1], saved[2], saved[3], mask, options, target_grad);
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

// The arguments of a boxed call of loss or _loss_and_sums (the tensor
// overloads), taken off the stack; the options checked first.
struct LossArgs {
  Tensor pred, target;
  std::optional<Tensor> threshold, mask;
  spotlight::LossOptions opt;
};

LossArgs pop_loss_args(const c10::OperatorHandle& op, torch::jit::Stack* stack) {
  const c10::FunctionSchema& schema = op.schema();
  const size_t count = schema.arguments().size(), base = stack->size() - count;
  LossArgs a;
  a.opt = options_from_stack(schema, *stack, base);
  const auto arg = [&](const char* name) -> const c10::IValue& {
    return (*stack)[base + *schema.argumentIndexWithName(name)];
  };
  const auto optional_tensor = [&](const char* name) {
    const c10::IValue& v = arg(name);
    return v.isNone() ? std::nullopt : std::optional<Tensor>(v.toTensor());
  };
  a.pred = arg("pred").toTensor();
  a.target = arg("target").toTensor();
  a.threshold = optional_tensor("threshold");
  a.mask = optional_tensor("mask");
  torch::jit::drop(*stack, count);
  return a;
}

bool is_loss_dtype(at::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16;
}

// Mixed floating dtypes of pred and target are promoted, as
// torch.nn.functional.mse_loss promotes them (above autograd, the casts are
// differentiable); any other pair is left to the dtype checks.
void promote(LossArgs& a) {
  if (!a.pred.defined() || !a.target.defined()) return;
  const at::ScalarType p = a.pred.scalar_type(), t = a.target.scalar_type();
  if (p == t || !is_loss_dtype(p) || !is_loss_dtype(t)) return;
  const at::ScalarType common = at::promote_types(p, t);
  a.pred = a.pred.to(common);
  a.target = a.target.to(common);
}

// loss returns the loss; _loss_and_sums the loss and the sums, with the
// voxels predicted above T counted (LossOptions::count_above).
bool returns_sums(const c10::OperatorHandle& op) { return op.schema().returns().size() == 2; }

void push_outputs(const c10::OperatorHandle& op, torch::jit::Stack* stack, const Tensor& loss, const Tensor& sums) {
  torch::jit::push(*stack, loss);
  if (returns_sums(op)) torch::jit::push(*stack, sums);
}

void loss_autograd(const c10::OperatorHandle& op, torch::jit::Stack* stack) {
  LossArgs a = pop_loss_args(op, stack);
  a.opt.count_above = returns_sums(op);
  TORCH_CHECK_VALUE(!a.threshold.has_value() || !a.threshold->defined() || !a.threshold->requires_grad(),
                    "spotlight: threshold must not require grad: the loss treats it as a constant (pass "
                    "threshold.detach())");
  promote(a);
  const variable_list out = LossFunction::apply(a.pred, a.target, a.threshold, a.mask, pack_options(a.opt));
  push_outputs(op, stack, out[0], out[1]);
}

// Below autograd (and on the meta device: the checks of the meta kernels
// under torch.compile and torch.export), the outputs of _loss_forward.
void loss_composite(const c10::OperatorHandle& op, torch::jit::Stack* stack) {
  LossArgs a = pop_loss_args(op, stack);
  a.opt.count_above = returns_sums(op);
  promote(a);
  auto [loss, thresholds, sums] = dispatch::loss_forward().call(a.pred, a.target, a.threshold, a.mask,
                                                                 pack_options(a.opt));
  push_outputs(op, stack, loss, sums);
}

// The .float_threshold overloads: one threshold for the whole batch, given as
// a number (so that torch.ops.spotlight.loss(p, y, 0.0) works from Python and
// TorchScript), passed on to the tensor overload as a 0-dim tensor.
void loss_float_threshold(const c10::OperatorHandle& op, torch::jit::Stack* stack) {
  const c10::FunctionSchema& schema = op.schema();
  const size_t base = stack->size() - schema.arguments().size();
  const Tensor& pred = (*stack)[base].toTensor();
  check_floating(pred, "pred");
  c10::IValue& threshold = (*stack)[base + *schema.argumentIndexWithName("threshold")];
  threshold = at::full({}, detail::boxed_double(threshold), pred.options().dtype(acc_dtype(pred.scalar_type())));
  c10::Dispatcher::singleton().findSchemaOrThrow(schema.name().c_str(), "").callBoxed(stack);
}

}  // namespace

TORCH_LIBRARY_IMPL(spotlight, Autograd, m) {
  m.impl("loss", torch::CppFunction::makeFromBoxedFunction<&loss_autograd>());
  m.impl("_loss_and_sums", torch::CppFunction::makeFromBoxedFunction<&loss_autograd>());
}
TORCH_LIBRARY_IMPL(spotlight, CompositeExplicitAutograd, m) {
  m.impl("loss", torch::CppFunction::makeFromBoxedFunction<&loss_composite>());
  m.impl("_loss_and_sums", torch::CppFunction::makeFromBoxedFunction<&loss_composite>());
}
TORCH_LIBRARY_IMPL(spotlight, CompositeImplicitAutograd, m) {
  m.impl("loss.float_threshold", torch::CppFunction::makeFromBoxedFunction<&loss_float_threshold>());
  m.impl("_loss_and_sums.float_threshold", torch::CppFunction::makeFromBoxedFunction<&loss_float_threshold>());
}

}  // namespace spotlight_ops
