// Argument checks of masked_mse and soft_dice, shared by every device.
#pragma once

#include <ATen/ops/empty.h>

#include "ops/common.h"

namespace spotlight_ops {

struct TermsCall {
  spotlight::LossOptions opt;
  int64_t samples = 0, voxels = 0;
};

inline TermsCall check_masked_mse_call(const Tensor& pred, const Tensor& target, const Tensor& mask,
                                       c10::string_view mse_normalization, c10::string_view reduction) {
  TermsCall call;
  call.opt = loss_options(0.5, -0.95, 1e-6, 256, mse_normalization, reduction);
  check_floating(pred, "pred");
  check_floating(target, "target");
  check_same(pred, "pred", target, "target");
  check_mask(mask, pred, "pred");
  std::tie(call.samples, call.voxels) = samples_and_voxels(pred, "pred");
  return call;
}

inline TermsCall check_soft_dice_call(const Tensor& soft, const Tensor& mask, double eps,
                                      c10::string_view reduction) {
  TermsCall call;
  call.opt = loss_options(0.5, -0.95, eps, 256, "foreground", reduction);
  check_floating(soft, "soft");
  check_mask(mask, soft, "soft");
  std::tie(call.samples, call.voxels) = samples_and_voxels(soft, "soft");
  return call;
}

inline Tensor empty_term_output(const Tensor& like, const TermsCall& call) {
  return call.opt.reduction == spotlight::Reduction::kNone ? at::empty({call.samples}, like.options())
                                                           : at::empty({}, like.options());
}

}  // namespace spotlight_ops
