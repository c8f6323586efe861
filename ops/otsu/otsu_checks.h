// Argument checks of the Otsu ops, shared by every device.
#pragma once

#include <utility>

#include "ops/common.h"
#include "spotlight/core/moments.hpp"

namespace spotlight_ops {

inline std::pair<int64_t, int64_t> check_otsu_call(const Tensor& x, int64_t bins) {
  translate_errors([&] { spotlight::check_bins(bins); });
  check_floating(x, "x");
  return samples_and_voxels(x, "x");
}

// Values per sample of the standardization's saved stats (scale, scaled
// mean, inverse scaled std: spotlight::moments::StandardizeStats).
inline constexpr int64_t kStandardizeStatsFields = 3;
static_assert(sizeof(spotlight::moments::StandardizeStats<float>) == kStandardizeStatsFields * sizeof(float));
static_assert(sizeof(spotlight::moments::StandardizeStats<double>) == kStandardizeStatsFields * sizeof(double));

// _otsu_standardize_backward(grad, x, thresholds, stats): grad like x, and
// the forward's thresholds [N] and stats [N, 3] in the accumulation dtype.
inline std::pair<int64_t, int64_t> check_standardize_backward(const Tensor& grad, const Tensor& x,
                                                              const Tensor& thresholds, const Tensor& stats) {
  check_floating(x, "x");
  check_floating(grad, "grad");
  check_same(x, "x", grad, "grad");
  const auto [samples, voxels] = samples_and_voxels(x, "x");
  const auto acc = acc_dtype(x.scalar_type());
  TORCH_CHECK_VALUE(thresholds.dim() == 1 && thresholds.size(0) == samples && thresholds.scalar_type() == acc,
                    "spotlight: thresholds must be [", samples, "] of dtype ", acc, ", got ", thresholds.sizes(), " ",
                    thresholds.scalar_type());
  TORCH_CHECK_VALUE(stats.dim() == 2 && stats.size(0) == samples && stats.size(1) == kStandardizeStatsFields &&
                        stats.scalar_type() == acc,
                    "spotlight: stats must be [", samples, ", ", kStandardizeStatsFields, "] of dtype ", acc,
                    ", got ", stats.sizes(), " ", stats.scalar_type());
  TORCH_CHECK(thresholds.device() == x.device() && stats.device() == x.device(),
              "spotlight: thresholds and stats must be on the device of x (", x.device(), ")");
  return {samples, voxels};
}

}  // namespace spotlight_ops
