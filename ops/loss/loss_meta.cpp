// Meta kernels of spotlight::_loss_forward and spotlight::_loss_backward (the
// fake kernels of torch.compile and torch.export: the real kernels' checks,
// on sizes that may be symbolic, then the outputs' shapes), and the two small
// ops of the collapse guard and of the Python front ends.
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/stack.h>
#include <torch/library.h>

#include <cstddef>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "ops/common.h"
#include "ops/loss/loss_checks.h"
#include "ops/loss/loss_options.h"
#include "spotlight/core/option_text.hpp"

namespace spotlight_ops {
namespace {

std::tuple<Tensor, Tensor, Tensor> loss_forward_meta(const Tensor& pred, const Tensor& target,
                                                     const std::optional<Tensor>& threshold,
                                                     const std::optional<Tensor>& mask,
                                                     c10::ArrayRef<double> options) {
  const spotlight::LossOptions opt = unpack_options(options);
  return empty_loss_outputs(pred, check_loss_call(pred, target, threshold, mask, opt), opt);
}

std::tuple<Tensor, Tensor> loss_backward_meta(const Tensor& grad, const Tensor& pred, const Tensor& target,
                                              const Tensor& thresholds, const Tensor& sums,
                                              const std::optional<Tensor>& mask, c10::ArrayRef<double> options,
                                              bool target_grad) {
  const spotlight::LossOptions opt = unpack_options(options);
  check_loss_backward_call(grad, pred, target, thresholds, sums, mask, opt);
  return {at::empty_like(pred), target_grad ? at::empty_like(target) : at::empty({0}, pred.options())};
}

// The counts the collapse guard reads from per-pool sums [..., pools, F]:
// the voxels predicted above T and the voxels of the mask M, over the pools: [..., 2].
Tensor loss_counts(const Tensor& sums) {
  constexpr int64_t kFields = spotlight::LossSums::kFields;
  TORCH_CHECK_VALUE(sums.dim() >= 2 && sums.sym_size(-1) == kFields && sums.scalar_type() == at::kDouble,
                    "spotlight: sums must be float64 [..., pools, ", kFields, "] (the sums of _loss_and_sums), got ",
                    sums.sym_sizes(), " ", sums.scalar_type());
  constexpr int64_t above = offsetof(spotlight::LossSums, above) / sizeof(double);
  constexpr int64_t fg = offsetof(spotlight::LossSums, fg) / sizeof(double);
  return at::stack({sums.select(-1, above).sum(-1), sums.select(-1, fg).sum(-1)}, -1);
}

// "name=value" options, checked (the check's message for the first bad one) and packed.
std::vector<double> pack_loss_options(const std::vector<std::string>& options) {
  return pack_options(translate_errors([&] {
    const std::vector<std::string_view> items(options.begin(), options.end());
    return spotlight::options_from_text(items);
  }));
}

}  // namespace

TORCH_LIBRARY_IMPL(spotlight, Meta, m) {
  m.impl("_loss_forward", &loss_forward_meta);
  m.impl("_loss_backward", &loss_backward_meta);
}
TORCH_LIBRARY_IMPL(spotlight, CompositeImplicitAutograd, m) {
  m.impl("_loss_counts", &loss_counts);
  m.impl("_pack_loss_options", &pack_loss_options);
}

}  // namespace spotlight_ops
