// Argument checks and output allocation of the loss ops, shared by the CPU,
// CUDA and meta kernels: the same errors, in the same order, on every device,
// under torch.compile and torch.export too (the meta kernels run these checks
// on tensors whose sizes may be symbolic). The options were checked when
// they were read or unpacked (ops/loss/loss_options.h).
#pragma once

#include <ATen/ops/empty.h>

#include <optional>
#include <tuple>
#include <vector>

#include "ops/common.h"
#include "spotlight/core/loss_terms.hpp"

namespace spotlight_ops {

// Pools of a [N, C, ...] batch: N samples, or N * C (sample, channel) pairs, and the voxels of a pool.
struct LossShape {
  c10::SymInt samples, pools, voxels;
};

inline LossShape loss_shape(const Tensor& pred, bool per_channel) {
  auto [samples, voxels] = sym_samples_and_voxels(pred, "pred");
  if (!per_channel) return {samples, samples, voxels};
  TORCH_CHECK_VALUE(pred.dim() >= 2, "spotlight: per_channel needs pred of at least 2 dims [N, C, ...], got shape ",
                    pred.sym_sizes());
  const c10::SymInt channels = pred.sym_size(1);
  return {samples, samples * channels, voxels / channels};
}

// A given threshold: a real-valued 0-dim, [1] or [N] tensor on pred's device.
inline void check_threshold(const std::optional<Tensor>& threshold, const Tensor& pred, const c10::SymInt& samples) {
  if (!threshold.has_value() || !threshold->defined()) return;
  const Tensor& t = *threshold;
  TORCH_CHECK_TYPE(at::isFloatingType(t.scalar_type()) || at::isIntegralType(t.scalar_type(), false),
                   "spotlight: threshold must be a real-valued tensor, got ", t.scalar_type());
  TORCH_CHECK_VALUE(t.dim() == 0 || (t.dim() == 1 && (t.sym_size(0) == samples || t.sym_size(0) == 1)),
                    "spotlight: threshold must be a 0-dim tensor or hold 1 value or one value per sample (", samples,
                    "), got shape ", t.sym_sizes());
  TORCH_CHECK(t.device() == pred.device(), "spotlight: threshold must be on the device of pred (", pred.device(),
              "), got ", t.device());
}

// A given mask: bool, dense, of the target's shape and device.
inline void check_given_mask(const std::optional<Tensor>& mask, const Tensor& target) {
  if (!mask.has_value() || !mask->defined()) return;
  TORCH_CHECK(mask->layout() == at::kStrided, "spotlight: mask must be a dense (strided) tensor, got layout ",
              mask->layout());
  check_mask(*mask, target, "target");
}

// Every check of a forward call, before any work.
inline LossShape check_loss_call(const Tensor& pred, const Tensor& target, const std::optional<Tensor>& threshold,
                                 const std::optional<Tensor>& mask, const spotlight::LossOptions& opt) {
  check_floating(pred, "pred");
  check_floating(target, "target");
  check_same(pred, "pred", target, "target");
  const LossShape shape = loss_shape(pred, opt.per_channel);
  check_threshold(threshold, pred, shape.samples);
  check_given_mask(mask, target);
  return shape;
}

// Every check of a backward call: the forward's inputs and state.
inline LossShape check_loss_backward_call(const Tensor& grad, const Tensor& pred, const Tensor& target,
                                          const Tensor& thresholds, const Tensor& sums,
                                          const std::optional<Tensor>& mask, const spotlight::LossOptions& opt) {
  check_floating(pred, "pred");
  check_same(pred, "pred", target, "target");
  const LossShape shape = loss_shape(pred, opt.per_channel);
  const c10::SymInt outputs = opt.reduction == spotlight::Reduction::kNone ? shape.pools : c10::SymInt(1);
  TORCH_CHECK_VALUE(grad.sym_numel() == outputs, "spotlight: grad must hold ", outputs, " values, got shape ",
                    grad.sym_sizes());
  TORCH_CHECK_VALUE(thresholds.dim() == 1 && thresholds.sym_size(0) == shape.pools &&
                        thresholds.scalar_type() == acc_dtype(pred.scalar_type()),
                    "spotlight: thresholds must be [", shape.pools, "] of dtype ", acc_dtype(pred.scalar_type()));
  TORCH_CHECK_VALUE(sums.dim() == 2 && sums.sym_size(0) == shape.pools &&
                        sums.sym_size(1) == spotlight::LossSums::kFields && sums.scalar_type() == at::kDouble,
                    "spotlight: sums must be float64 [", shape.pools, ", ", spotlight::LossSums::kFields, "]");
  TORCH_CHECK(grad.device() == pred.device() && thresholds.device() == pred.device() &&
                  sums.device() == pred.device(),
              "spotlight: grad, thresholds and sums must be on the device of pred (", pred.device(), ")");
  check_given_mask(mask, target);
  return shape;
}

// (loss, thresholds, sums), empty: loss [] or, for "none", [N] ([N, C] per
// channel); thresholds [pools] in the accumulation dtype; sums [pools, F] float64.
inline std::tuple<Tensor, Tensor, Tensor> empty_loss_outputs(const Tensor& pred, const LossShape& shape,
                                                             const spotlight::LossOptions& opt) {
  const auto opts = pred.options();
  std::vector<c10::SymInt> loss_shape;
  if (opt.reduction == spotlight::Reduction::kNone) {
    loss_shape.push_back(pred.sym_size(0));
    if (opt.per_channel) loss_shape.push_back(pred.sym_size(1));
  }
  Tensor loss = at::empty_symint(loss_shape, opts);
  Tensor thresholds = at::empty_symint({shape.pools}, opts.dtype(acc_dtype(pred.scalar_type())));
  Tensor sums = at::empty_symint({shape.pools, c10::SymInt(spotlight::LossSums::kFields)}, opts.dtype(at::kDouble));
  return {loss, thresholds, sums};
}

// What the CPU and CUDA kernels run on, once checked: contiguous inputs, the
// pools' thresholds (given ones broadcast to [pools] in the accumulation
// dtype, or undefined for Otsu), and the options with the given mask's pointer.
struct LossCall {
  spotlight::LossOptions opt;
  int64_t pools = 0, voxels = 0;
  Tensor pred, target, thresholds, mask;
};

inline LossCall prepare_loss_call(const Tensor& pred, const Tensor& target, const std::optional<Tensor>& threshold,
                                  const std::optional<Tensor>& mask, const spotlight::LossOptions& opt,
                                  const LossShape& shape) {
  LossCall call;
  call.opt = opt;
  call.pools = shape.pools.expect_int();
  call.voxels = shape.voxels.expect_int();
  call.pred = pred.contiguous();
  call.target = target.contiguous();
  if (threshold.has_value() && threshold->defined()) {
    const int64_t samples = shape.samples.expect_int();
    call.thresholds =
        threshold->to(acc_dtype(pred.scalar_type())).reshape({-1}).expand({samples}).contiguous();
    if (opt.per_channel) call.thresholds = call.thresholds.repeat_interleave(call.pools / samples);
  }
  if (mask.has_value() && mask->defined()) call.mask = mask->contiguous();
  call.opt.mask = call.mask.defined() ? call.mask.const_data_ptr<bool>() : nullptr;
  return call;
}

}  // namespace spotlight_ops
