// Argument checks of masked_mse and soft_dice and their private forward and
// backward ops, shared by every device.
#pragma once

#include <ATen/ops/empty.h>

#include "ops/common.h"
#include "spotlight/core/loss_terms.hpp"

namespace spotlight_ops {

struct TermsCall {
  spotlight::MseNormalization mse_normalization = spotlight::MseNormalization::kForeground;
  spotlight::Reduction reduction = spotlight::Reduction::kBatch;
  double eps = 0;
  int64_t samples = 0, voxels = 0;
};

inline TermsCall check_masked_mse_call(const Tensor& pred, const Tensor& target, const Tensor& mask,
                                       c10::string_view mse_normalization, c10::string_view reduction) {
  TermsCall call;
  call.mse_normalization = parse<spotlight::MseNormalization>(mse_normalization);
  call.reduction = parse<spotlight::Reduction>(reduction);
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
  call.reduction = parse<spotlight::Reduction>(reduction);
  check_eps(eps);
  call.eps = eps;
  check_floating(soft, "soft");
  check_mask(mask, soft, "soft");
  std::tie(call.samples, call.voxels) = samples_and_voxels(soft, "soft");
  return call;
}

// The backward's upstream gradient and saved sums (of the forward on `like`).
inline void check_term_state(const Tensor& grad, const Tensor& sums, const Tensor& like, const char* like_name,
                             const TermsCall& call) {
  TORCH_CHECK(grad.defined() && sums.defined(), "spotlight: grad and sums must be tensors, got None");
  const int64_t outputs = spotlight::loss_output_size(call.reduction, call.samples);
  TORCH_CHECK_VALUE(grad.numel() == outputs, "spotlight: grad must hold ", outputs, " values, got shape ",
                    grad.sizes());
  TORCH_CHECK_VALUE(sums.dim() == 2 && sums.size(0) == call.samples &&
                        sums.size(1) == spotlight::LossSums::kFields && sums.scalar_type() == at::kDouble,
                    "spotlight: sums must be the forward's, float64 [", call.samples, ", ",
                    spotlight::LossSums::kFields, "], got ", sums.sizes(),
                    sums.scalar_type() == at::kDouble ? "" : " of another dtype");
  TORCH_CHECK(grad.device() == like.device() && sums.device() == like.device(),
              "spotlight: grad and sums must be on the device of ", like_name, " (", like.device(), ")");
}

// The value: [N] for reduction "none", else 0-dim.
inline Tensor empty_term_output(const Tensor& like, const TermsCall& call) {
  return call.reduction == spotlight::Reduction::kNone ? at::empty({call.samples}, like.options())
                                                       : at::empty({}, like.options());
}

// The per-sample sums the forward saves, [N, LossSums::kFields] float64 (spotlight::LossSums).
inline Tensor empty_term_sums(const Tensor& like, const TermsCall& call) {
  return at::empty({call.samples, spotlight::LossSums::kFields}, like.options().dtype(at::kDouble));
}

static_assert(sizeof(spotlight::LossSums) == spotlight::LossSums::kFields * sizeof(double));

inline spotlight::LossSums* sums_ptr(Tensor& sums) {
  return reinterpret_cast<spotlight::LossSums*>(sums.data_ptr<double>());
}
inline const spotlight::LossSums* sums_ptr(const Tensor& sums) {
  return reinterpret_cast<const spotlight::LossSums*>(sums.const_data_ptr<double>());
}

}  // namespace spotlight_ops
