// CPU kernels of spotlight::otsu_threshold, spotlight::otsu_standardize and
// the standardization's private forward and backward.
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <tuple>

#include "ops/common.h"
#include "ops/cpu_alloc.h"
#include "ops/otsu/otsu_checks.h"
#include "spotlight/cpu/otsu.hpp"
#include "spotlight/cpu/standardize.hpp"

namespace spotlight_ops {
namespace {

template <class A>
spotlight::moments::StandardizeStats<A>* stats_ptr(const Tensor& stats) {
  return reinterpret_cast<spotlight::moments::StandardizeStats<A>*>(stats.data_ptr<A>());
}

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

// (y, thresholds [N], stats [N, 3]), the last two in the accumulation dtype.
std::tuple<Tensor, Tensor, Tensor> otsu_standardize_forward_cpu(const Tensor& x, int64_t bins) {
  const auto [samples, voxels] = check_otsu_call(x, bins);
  const Tensor xc = x.contiguous();
  Tensor out = empty_streaming_like(xc);
  const auto acc = x.options().dtype(acc_dtype(x.scalar_type()));
  Tensor thresholds = at::empty({samples}, acc);
  Tensor stats = at::empty({samples, kStandardizeStatsFields}, acc);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "spotlight::otsu_standardize", [&] {
    using A = spotlight::acc_t<scalar_t>;
    spotlight::cpu::otsu_standardize_forward(xc.const_data_ptr<scalar_t>(), samples, voxels, static_cast<int>(bins),
                                             out.data_ptr<scalar_t>(), thresholds.data_ptr<A>(), stats_ptr<A>(stats),
                                             AtenExecutor{});
  });
  return {out, thresholds, stats};
}

Tensor otsu_standardize_cpu(const Tensor& x, int64_t bins) { return std::get<0>(otsu_standardize_forward_cpu(x, bins)); }

Tensor otsu_standardize_backward_cpu(const Tensor& grad, const Tensor& x, const Tensor& thresholds,
                                     const Tensor& stats) {
  const auto [samples, voxels] = check_standardize_backward(grad, x, thresholds, stats);
  const Tensor xc = x.contiguous(), gc = grad.contiguous(), tc = thresholds.contiguous(), sc = stats.contiguous();
  Tensor grad_x = empty_streaming_like(xc);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "spotlight::otsu_standardize", [&] {
    using A = spotlight::acc_t<scalar_t>;
    spotlight::cpu::otsu_standardize_backward(gc.const_data_ptr<scalar_t>(), xc.const_data_ptr<scalar_t>(), samples,
                                              voxels, tc.const_data_ptr<A>(), stats_ptr<A>(sc),
                                              grad_x.data_ptr<scalar_t>(), AtenExecutor{});
  });
  return grad_x;
}

}  // namespace

TORCH_LIBRARY_IMPL(spotlight, CPU, m) {
  m.impl("otsu_threshold", &otsu_threshold_cpu);
  m.impl("otsu_standardize", &otsu_standardize_cpu);
  m.impl("_otsu_standardize_forward", &otsu_standardize_forward_cpu);
  m.impl("_otsu_standardize_backward", &otsu_standardize_backward_cpu);
}

}  // namespace spotlight_ops
