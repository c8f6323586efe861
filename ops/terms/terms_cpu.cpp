// CPU kernels of spotlight::masked_mse and spotlight::soft_dice (forward;
// their gradients are ATen expressions in terms_autograd.cpp).
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <vector>

#include "ops/common.h"
#include "ops/terms/terms_checks.h"
#include "spotlight/core/loss_terms.hpp"
#include "spotlight/cpu/terms.hpp"

namespace spotlight_ops {
namespace {

Tensor masked_mse_cpu(const Tensor& pred, const Tensor& target, const Tensor& mask,
                      c10::string_view mse_normalization, c10::string_view reduction) {
  const TermsCall call = check_masked_mse_call(pred, target, mask, mse_normalization, reduction);
  const Tensor p = pred.contiguous(), t = target.contiguous(), m = mask.contiguous();
  Tensor out = empty_term_output(pred, call);
  std::vector<spotlight::LossSums> sums(static_cast<size_t>(call.samples));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, pred.scalar_type(), "spotlight::masked_mse", [&] {
    spotlight::cpu::masked_mse_sums(p.const_data_ptr<scalar_t>(), t.const_data_ptr<scalar_t>(),
                                    m.const_data_ptr<bool>(), call.samples, call.voxels, sums.data(),
                                    AtenExecutor{});
    spotlight::finalize_losses(sums.data(), call.samples, call.voxels, call.opt, out.data_ptr<scalar_t>(),
                               &spotlight::PoolResult::mmse);
  });
  return out;
}

Tensor soft_dice_cpu(const Tensor& soft, const Tensor& mask, double eps, c10::string_view reduction) {
  const TermsCall call = check_soft_dice_call(soft, mask, eps, reduction);
  const Tensor s = soft.contiguous(), m = mask.contiguous();
  Tensor out = empty_term_output(soft, call);
  std::vector<spotlight::LossSums> sums(static_cast<size_t>(call.samples));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, soft.scalar_type(), "spotlight::soft_dice", [&] {
    spotlight::cpu::soft_dice_sums(s.const_data_ptr<scalar_t>(), m.const_data_ptr<bool>(), call.samples,
                                   call.voxels, sums.data(), AtenExecutor{});
    spotlight::finalize_losses(sums.data(), call.samples, call.voxels, call.opt, out.data_ptr<scalar_t>(),
                               &spotlight::PoolResult::dice);
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(spotlight, CPU, m) {
  m.impl("masked_mse", &masked_mse_cpu);
  m.impl("soft_dice", &soft_dice_cpu);
}

}  // namespace spotlight_ops
