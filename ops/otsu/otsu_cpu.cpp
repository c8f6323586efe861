// CPU kernels of spotlight::otsu_threshold and spotlight::otsu_standardize.
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "ops/common.h"
#include "ops/cpu_alloc.h"
#include "ops/otsu/otsu_checks.h"
#include "spotlight/cpu/otsu.hpp"
#include "spotlight/cpu/standardize.hpp"

namespace spotlight_ops {
namespace {

Tensor otsu_threshold_cpu(const Tensor& x, int64_t bins) {
  const auto [samples, voxels] = check_otsu_call(x, bins);
  const Tensor xc = x.contiguous();
  // In the accumulation dtype: the exact threshold the fused loss uses, so
  // loss(p, y) == loss(p, y, otsu_threshold(y)) for half inputs too.
  Tensor out = at::empty({samples}, x.options().dtype(acc_dtype(x.scalar_type())));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "spotlight::otsu_threshold", [&] {
    spotlight::cpu::otsu_thresholds(xc.const_data_ptr<scalar_t>(), samples, voxels, static_cast<int>(bins),
                                    out.data_ptr<spotlight::acc_t<scalar_t>>(), AtenExecutor{});
  });
  return out;
}

Tensor otsu_standardize_cpu(const Tensor& x, int64_t bins) {
  const auto [samples, voxels] = check_otsu_call(x, bins);
  const Tensor xc = x.contiguous();
  Tensor out = empty_streaming_like(xc);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "spotlight::otsu_standardize", [&] {
    spotlight::cpu::otsu_standardize(xc.const_data_ptr<scalar_t>(), samples, voxels, static_cast<int>(bins),
                                     out.data_ptr<scalar_t>(), AtenExecutor{});
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(spotlight, CPU, m) {
  m.impl("otsu_threshold", &otsu_threshold_cpu);
  m.impl("otsu_standardize", &otsu_standardize_cpu);
}

}  // namespace spotlight_ops
