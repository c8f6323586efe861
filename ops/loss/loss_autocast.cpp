// Autocast kernels of spotlight::loss: under torch.autocast the loss runs in
// float32, as PyTorch's own losses do (mse_loss, binary_cross_entropy_with_logits
// and the rest of autocast's float32 list): float16 and bfloat16 inputs are cast
// to float32, float64 ones are left alone, and the value is float32.
#include <ATen/autocast_mode.h>
#include <torch/library.h>

#include "ops/common.h"
#include "ops/dispatcher.h"

namespace spotlight_ops {
namespace {

Tensor to_float32_if_reduced(const Tensor& t) {
  return t.defined() && (t.scalar_type() == at::kHalf || t.scalar_type() == at::kBFloat16) ? t.to(at::kFloat) : t;
}

Tensor loss_autocast(const Tensor& pred, const Tensor& target, const std::optional<Tensor>& threshold, double lam,
                     double k, double eps, int64_t bins, c10::string_view mse_normalization,
                     c10::string_view reduction, c10::string_view soft_mask, const std::optional<Tensor>& mask,
                     c10::string_view mask_rule, c10::string_view dice_denominator, c10::string_view empty_pools,
                     bool per_channel) {
  const c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
  return dispatch::loss().call(to_float32_if_reduced(pred), to_float32_if_reduced(target), threshold, lam, k, eps,
                               bins, mse_normalization, reduction, soft_mask, mask, mask_rule, dice_denominator,
                               empty_pools, per_channel);
}

}  // namespace

TORCH_LIBRARY_IMPL(spotlight, AutocastCPU, m) { m.impl("loss", &loss_autocast); }
TORCH_LIBRARY_IMPL(spotlight, AutocastCUDA, m) { m.impl("loss", &loss_autocast); }

}  // namespace spotlight_ops
