// Argument checks and output allocation shared by the CPU and CUDA kernels
// of the loss ops: the same errors, in the same order, on every device.
#pragma once

#include <ATen/ops/empty.h>

#include <optional>
#include <tuple>

#include "ops/common.h"
#include "spotlight/core/loss_terms.hpp"

namespace spotlight_ops {

struct LossCall {
  spotlight::LossOptions opt;
  int64_t samples = 0, voxels = 0;
  Tensor thresholds;  // [N] in the accumulation dtype, or undefined for Otsu
};

inline LossCall check_loss_call(const Tensor& pred, const Tensor& target, const std::optional<Tensor>& threshold,
                                double lam, double k, double eps, int64_t bins, c10::string_view mse_normalization,
                                c10::string_view reduction) {
  LossCall call;
  call.opt = loss_options(lam, k, eps, bins, mse_normalization, reduction);
  check_floating(pred, "pred");
  check_floating(target, "target");
  check_same(pred, "pred", target, "target");
  std::tie(call.samples, call.voxels) = samples_and_voxels(pred, "pred");
  call.thresholds = given_thresholds(threshold, pred, call.samples);
  return call;
}

// (loss, thresholds, sums), empty, on pred's device.
inline std::tuple<Tensor, Tensor, Tensor> empty_loss_outputs(const Tensor& pred, const LossCall& call) {
  const auto opts = pred.options();
  Tensor loss = call.opt.reduction == spotlight::Reduction::kNone ? at::empty({call.samples}, opts)
                                                                   : at::empty({}, opts);
  Tensor thresholds = at::empty({call.samples}, opts.dtype(acc_dtype(pred.scalar_type())));
  Tensor sums = at::empty({call.samples, spotlight::LossSums::kFields}, opts.dtype(at::kDouble));
  return {loss, thresholds, sums};
}

struct LossBackwardCall {
  spotlight::LossOptions opt;
  int64_t samples = 0, voxels = 0;
};

inline LossBackwardCall check_loss_backward_call(const Tensor& grad, const Tensor& pred, const Tensor& target,
                                                 const Tensor& thresholds, const Tensor& sums, double lam, double k,
                                                 double eps, c10::string_view mse_normalization,
                                                 c10::string_view reduction) {
  LossBackwardCall call;
  call.opt = loss_options(lam, k, eps, 256, mse_normalization, reduction);
  check_floating(pred, "pred");
  check_same(pred, "pred", target, "target");
  std::tie(call.samples, call.voxels) = samples_and_voxels(pred, "pred");
  const int64_t outputs = spotlight::loss_output_size(call.opt.reduction, call.samples);
  TORCH_CHECK_VALUE(grad.numel() == outputs, "spotlight: grad must hold ", outputs, " values, got shape ",
                    grad.sizes());
  TORCH_CHECK_VALUE(thresholds.dim() == 1 && thresholds.size(0) == call.samples &&
                        thresholds.scalar_type() == acc_dtype(pred.scalar_type()),
                    "spotlight: thresholds must be [", call.samples, "] of dtype ", acc_dtype(pred.scalar_type()));
  TORCH_CHECK_VALUE(sums.dim() == 2 && sums.size(0) == call.samples &&
                        sums.size(1) == spotlight::LossSums::kFields && sums.scalar_type() == at::kDouble,
                    "spotlight: sums must be float64 [", call.samples, ", ", spotlight::LossSums::kFields, "]");
  TORCH_CHECK(grad.device() == pred.device() && thresholds.device() == pred.device() &&
                  sums.device() == pred.device(),
              "spotlight: grad, thresholds and sums must be on the device of pred (", pred.device(), ")");
  return call;
}

}  // namespace spotlight_ops
