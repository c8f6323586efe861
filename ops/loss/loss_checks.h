// Argument checks and output allocation shared by the CPU and CUDA kernels
// of the loss ops: the same errors, in the same order, on every device.
#pragma once

#include <ATen/ops/empty.h>

#include <optional>
#include <string_view>
#include <tuple>

#include "ops/common.h"
#include "spotlight/core/loss_terms.hpp"

namespace spotlight_ops {

inline std::string_view view(c10::string_view s) { return {s.data(), s.size()}; }

// The keyword-only arguments of the loss ops (SPEC section 11), as the
// schema spells them.
struct LossVariantArgs {
  c10::string_view soft_mask = spotlight::option_name(spotlight::defaults::kSoftMask);
  const std::optional<Tensor>* mask = nullptr;
  c10::string_view mask_rule = spotlight::option_name(spotlight::defaults::kMaskRule);
  c10::string_view dice_denominator = spotlight::option_name(spotlight::defaults::kDiceDenominator);
  c10::string_view empty_pools = spotlight::option_name(spotlight::defaults::kEmptyPools);
  bool per_channel = spotlight::defaults::kPerChannel;
};

// Sets the variant fields of opt (all but the mask pointer) and validates opt.
inline void apply_variant(spotlight::LossOptions& opt, const LossVariantArgs& v) {
  translate_errors([&] {
    opt.soft_mask = spotlight::parse_soft_mask(view(v.soft_mask));
    opt.mask_rule = spotlight::parse_mask_rule(view(v.mask_rule));
    opt.dice_denominator = spotlight::parse_dice_denominator(view(v.dice_denominator));
    opt.empty_pools = spotlight::parse_empty_pools(view(v.empty_pools));
    opt.validate();
    return 0;
  });
}

// Pools of a [N, C, ...] batch: N samples, or N * C (sample, channel) pairs.
inline std::pair<int64_t, int64_t> pools_and_voxels(const Tensor& pred, bool per_channel) {
  auto [samples, voxels] = samples_and_voxels(pred, "pred");
  if (!per_channel) return {samples, voxels};
  TORCH_CHECK_VALUE(pred.dim() >= 2, "spotlight: per_channel needs pred of at least 2 dims [N, C, ...], got shape ",
                    pred.sizes());
  const int64_t channels = pred.size(1);
  return {samples * channels, voxels / channels};
}

// A given mask: bool, of the target's shape and device; null when none.
inline Tensor given_mask(const LossVariantArgs& v, const Tensor& target) {
  if (v.mask == nullptr || !v.mask->has_value() || !(*v.mask)->defined()) return Tensor();
  const Tensor& m = **v.mask;
  TORCH_CHECK(m.layout() == at::kStrided, "spotlight: mask must be a dense (strided) tensor, got layout ", m.layout());
  check_mask(m, target, "target");
  return m.contiguous();
}

struct LossCall {
  spotlight::LossOptions opt;
  int64_t samples = 0, voxels = 0;  // pools and voxels per pool (per channel: N * C pools)
  Tensor thresholds;                // [pools] in the accumulation dtype, or undefined for Otsu
  Tensor mask;                      // the given mask, contiguous, or undefined
};

inline LossCall check_loss_call(const Tensor& pred, const Tensor& target, const std::optional<Tensor>& threshold,
                                double lam, double k, double eps, int64_t bins, c10::string_view mse_normalization,
                                c10::string_view reduction, const LossVariantArgs& variant = {}) {
  LossCall call;
  call.opt = loss_options(lam, k, eps, bins, mse_normalization, reduction);
  apply_variant(call.opt, variant);
  check_floating(pred, "pred");
  check_floating(target, "target");
  check_same(pred, "pred", target, "target");
  std::tie(call.samples, call.voxels) = pools_and_voxels(pred, variant.per_channel);
  call.thresholds = given_thresholds(threshold, pred, pred.size(0));
  if (call.thresholds.defined() && variant.per_channel)
    call.thresholds = call.thresholds.repeat_interleave(pred.size(1));
  call.mask = given_mask(variant, target);
  call.opt.mask = call.mask.defined() ? call.mask.const_data_ptr<bool>() : nullptr;
  return call;
}

// Shape of the loss output: [] or, for "none", [N] ([N, C] per channel).
inline std::vector<int64_t> loss_output_shape(const Tensor& pred, const LossCall& call, bool per_channel) {
  if (call.opt.reduction != spotlight::Reduction::kNone) return {};
  if (per_channel) return {pred.size(0), pred.size(1)};
  return {call.samples};
}

// (loss, thresholds, sums), empty, on pred's device.
inline std::tuple<Tensor, Tensor, Tensor> empty_loss_outputs(const Tensor& pred, const LossCall& call,
                                                             bool per_channel = false) {
  const auto opts = pred.options();
  Tensor loss = at::empty(loss_output_shape(pred, call, per_channel), opts);
  Tensor thresholds = at::empty({call.samples}, opts.dtype(acc_dtype(pred.scalar_type())));
  Tensor sums = at::empty({call.samples, spotlight::LossSums::kFields}, opts.dtype(at::kDouble));
  return {loss, thresholds, sums};
}

struct LossBackwardCall {
  spotlight::LossOptions opt;
  int64_t samples = 0, voxels = 0;
  Tensor mask;
};

inline LossBackwardCall check_loss_backward_call(const Tensor& grad, const Tensor& pred, const Tensor& target,
                                                 const Tensor& thresholds, const Tensor& sums, double lam, double k,
                                                 double eps, c10::string_view mse_normalization,
                                                 c10::string_view reduction, const LossVariantArgs& variant = {}) {
  LossBackwardCall call;
  call.opt = loss_options(lam, k, eps, spotlight::defaults::kBins, mse_normalization, reduction);  // bins unused here
  apply_variant(call.opt, variant);
  check_floating(pred, "pred");
  check_same(pred, "pred", target, "target");
  std::tie(call.samples, call.voxels) = pools_and_voxels(pred, variant.per_channel);
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
  call.mask = given_mask(variant, target);
  call.opt.mask = call.mask.defined() ? call.mask.const_data_ptr<bool>() : nullptr;
  return call;
}

}  // namespace spotlight_ops
