// Autograd of the Otsu ops. The threshold is a bin centre: it jumps when the
// chosen bin changes and otherwise moves only with the sample's min and max.
// It is treated as a constant: otsu_threshold's output never requires grad.
// Standardization is differentiable with the threshold held constant:
//   y = (x - T) / s,  s = std(x) (ddof 0; 1 for a constant sample)
// (a stop-gradient, as the loss holds its mask constant):
//   dL/dx_j = g_j / s - (sum_i g_i (x_i - T)) (x_j - mean) / (n s^3)
#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include "ops/common.h"
#include "ops/dispatcher.h"

namespace spotlight_ops {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

class StandardizeFunction : public torch::autograd::Function<StandardizeFunction> {
 public:
  static variable_list forward(AutogradContext* ctx, const Tensor& x, int64_t bins) {
    at::AutoDispatchBelowADInplaceOrView guard;
    static const auto op = c10::Dispatcher::singleton()
                               .findSchemaOrThrow("spotlight::otsu_standardize", "")
                               .typed<Tensor(const Tensor&, int64_t)>();
    Tensor y = op.call(x, bins);
    ctx->save_for_backward({x});
    ctx->saved_data["bins"] = bins;
    return {y};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const Tensor x = ctx->get_saved_variables()[0];
    const int64_t bins = ctx->saved_data["bins"].toInt();
    if (!grads[0].defined()) return {Tensor(), Tensor()};
    const auto acc = acc_dtype(x.scalar_type());
    const int64_t samples = x.size(0);
    const Tensor xs = x.reshape({samples, -1}).to(acc);
    const Tensor g = grads[0].reshape({samples, -1}).to(acc);
    const Tensor thr = dispatch::otsu_threshold().call(x, bins).to(acc).unsqueeze(1);
    const Tensor mean = xs.mean(1, true);
    const Tensor centred = xs - mean;
    Tensor sd = centred.pow(2).mean(1, true).sqrt();
    sd = at::where(sd > 0, sd, at::ones_like(sd));
    const Tensor dot = (g * (xs - thr)).sum(1, true);
    const Tensor gx = g / sd - dot * centred / (static_cast<double>(xs.size(1)) * sd.pow(3));
    return {gx.to(x.scalar_type()).reshape(x.sizes()), Tensor()};
  }
};

Tensor otsu_standardize_autograd(const Tensor& x, int64_t bins) { return StandardizeFunction::apply(x, bins)[0]; }

}  // namespace

TORCH_LIBRARY_IMPL(spotlight, Autograd, m) {
  m.impl("otsu_threshold", torch::CppFunction::makeFallthrough());
  m.impl("otsu_standardize", &otsu_standardize_autograd);
}

}  // namespace spotlight_ops
