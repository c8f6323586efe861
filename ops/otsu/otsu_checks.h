// Argument checks of the Otsu ops, shared by every device.
#pragma once

#include <utility>

#include "ops/common.h"

namespace spotlight_ops {

inline std::pair<int64_t, int64_t> check_otsu_call(const Tensor& x, int64_t bins) {
  translate_errors([&] { spotlight::check_bins(bins); });
  check_floating(x, "x");
  return samples_and_voxels(x, "x");
}

}  // namespace spotlight_ops
