// Autograd of spotlight::tunable_sigmoid and of its backward, so that the
// gradient is itself differentiable (second derivatives, gradgradcheck):
//   y = sigma_k(x):           dL/dx = g * sigma_k'(x)          (_tunable_sigmoid_backward)
//   b = g * sigma_k'(x):      dL/dg = o * sigma_k'(x)          (_tunable_sigmoid_backward again)
//                             dL/dx = o * g * sigma_k''(x)     (_tunable_sigmoid_double_backward)
// inside (-1, 1), 0 outside (the clamp). The formulas are the headers'
// (spotlight/core/math.hpp); third derivatives in x raise a named error.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <torch/autograd.h>
#include <torch/csrc/autograd/functions/basic_ops.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/library.h>

#include "ops/common.h"
#include "ops/dispatcher.h"

namespace spotlight_ops {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

bool requires_grad(const Tensor& t) { return t.defined() && t.requires_grad(); }

// The double backward has no derivative of its own (it would need sigma_k'''):
// under create_graph its result gets a node that names this instead of being a
// silent constant.
void error_on_third_derivative(Tensor& grad_x, const Tensor& o, const Tensor& g, const Tensor& x) {
  if (!at::GradMode::is_enabled() || (!requires_grad(o) && !requires_grad(g) && !requires_grad(x))) return;
  auto node = c10::make_intrusive<torch::autograd::Error>(
      "spotlight: the third derivative of spotlight.tunable_sigmoid is not implemented (its second derivative "
      "cannot be differentiated again). Use spotlight_ops.reference.tunable_sigmoid for it.",
      torch::autograd::collect_next_edges(o, g, x));
  grad_x = grad_x.detach();
  torch::autograd::set_history(grad_x, node);
}

class SigmoidBackwardFunction : public torch::autograd::Function<SigmoidBackwardFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const Tensor& grad, const Tensor& x, double k) {
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->save_for_backward({grad, x});
    ctx->saved_data["k"] = k;
    return {dispatch::tunable_sigmoid_backward().call(grad, x, k)};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const Tensor& o = grads[0];
    if (!o.defined()) return {Tensor(), Tensor(), Tensor()};
    const auto saved = ctx->get_saved_variables();
    const Tensor &g = saved[0], &x = saved[1];
    const double k = ctx->saved_data["k"].toDouble();
    Tensor grad_g, grad_x;
    if (ctx->needs_input_grad(0)) grad_g = dispatch::tunable_sigmoid_backward().call(o, x, k);
    if (ctx->needs_input_grad(1)) {
      grad_x = dispatch::tunable_sigmoid_double_backward().call(o, g, x, k);
      error_on_third_derivative(grad_x, o, g, x);
    }
    return {grad_g, grad_x, Tensor()};
  }
};

class SigmoidFunction : public torch::autograd::Function<SigmoidFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const Tensor& x, double k) {
    at::AutoDispatchBelowADInplaceOrView guard;
    static const auto op = c10::Dispatcher::singleton()
                               .findSchemaOrThrow("spotlight::tunable_sigmoid", "")
                               .typed<Tensor(const Tensor&, double)>();
    ctx->save_for_backward({x});
    ctx->saved_data["k"] = k;
    return {op.call(x, k)};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    if (!grads[0].defined()) return {Tensor(), Tensor()};
    const Tensor x = ctx->get_saved_variables()[0];
    const double k = ctx->saved_data["k"].toDouble();
    // Through the dispatcher's Autograd key: differentiable under create_graph.
    return {dispatch::tunable_sigmoid_backward().call(grads[0], x, k), Tensor()};
  }
};

Tensor tunable_sigmoid_autograd(const Tensor& x, double k) { return SigmoidFunction::apply(x, k)[0]; }

Tensor tunable_sigmoid_backward_autograd(const Tensor& grad, const Tensor& x, double k) {
  return SigmoidBackwardFunction::apply(grad, x, k)[0];
}

}  // namespace

TORCH_LIBRARY_IMPL(spotlight, Autograd, m) {
  m.impl("tunable_sigmoid", &tunable_sigmoid_autograd);
  m.impl("_tunable_sigmoid_backward", &tunable_sigmoid_backward_autograd);
}

}  // namespace spotlight_ops
