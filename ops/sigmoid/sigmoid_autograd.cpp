// Autograd of spotlight::tunable_sigmoid: dL/dx = g * sigma_k'(x) inside
// (-1, 1), 0 outside (the clamp). Under create_graph the backward is built
// from ATen ops instead, so that it is itself differentiable (second
// derivatives, gradgradcheck).
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include "ops/common.h"
#include "ops/dispatcher.h"

namespace spotlight_ops {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

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
    if (at::GradMode::is_enabled() && (x.requires_grad() || grads[0].requires_grad())) {
      // sigma_k'(x) = (1 - k^2) / (k - 2k|x| + 1)^2 inside (-1, 1), 0 outside, differentiable.
      const Tensor xa = x.to(acc_dtype(x.scalar_type()));
      const Tensor den = xa.abs() * (-2.0 * k) + (k + 1.0);
      const Tensor d = at::where((xa > -1.0) & (xa < 1.0), (1.0 - k * k) / (den * den), at::zeros_like(xa));
      return {(grads[0].to(xa.scalar_type()) * d).to(x.scalar_type()), Tensor()};
    }
    return {dispatch::tunable_sigmoid_backward().call(grads[0], x, k), Tensor()};
  }
};

Tensor tunable_sigmoid_autograd(const Tensor& x, double k) { return SigmoidFunction::apply(x, k)[0]; }

}  // namespace

TORCH_LIBRARY_IMPL(spotlight, Autograd, m) { m.impl("tunable_sigmoid", &tunable_sigmoid_autograd); }

}  // namespace spotlight_ops
