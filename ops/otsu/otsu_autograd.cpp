// Autograd of the Otsu ops. The threshold is a bin centre: it jumps when the
// chosen bin changes and otherwise moves only with the sample's min and max.
// It is treated as a constant: otsu_threshold's output never requires grad.
// Standardization is differentiable with the threshold held constant (a
// stop-gradient, as the loss holds its mask constant); the math is the
// header's (spotlight/core/moments.hpp, standardize_grad). The forward saves
// x, the thresholds and the per-sample stats, so the backward neither re-runs
// Otsu nor recomputes the std.
#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <tuple>

#include "ops/common.h"

namespace spotlight_ops {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

const auto& standardize_forward_op() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("spotlight::_otsu_standardize_forward", "")
                             .typed<std::tuple<Tensor, Tensor, Tensor>(const Tensor&, int64_t)>();
  return op;
}

const auto& standardize_backward_op() {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("spotlight::_otsu_standardize_backward", "")
          .typed<Tensor(const Tensor&, const Tensor&, const Tensor&, const Tensor&)>();
  return op;
}

class StandardizeFunction : public torch::autograd::Function<StandardizeFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const Tensor& x, int64_t bins) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [y, thresholds, stats] = standardize_forward_op().call(x, bins);
    ctx->save_for_backward({x, thresholds, stats});
    return {y};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    if (!grads[0].defined()) return {Tensor(), Tensor()};
    const auto saved = ctx->get_saved_variables();
    return {standardize_backward_op().call(grads[0], saved[0], saved[1], saved[2]), Tensor()};
  }
};

Tensor otsu_standardize_autograd(const Tensor& x, int64_t bins) { return StandardizeFunction::apply(x, bins)[0]; }

}  // namespace

TORCH_LIBRARY_IMPL(spotlight, Autograd, m) {
  m.impl("otsu_threshold", torch::CppFunction::makeFallthrough());
  m.impl("otsu_standardize", &otsu_standardize_autograd);
}

}  // namespace spotlight_ops
