// From per-sample partial sums to losses and gradient coefficients
// (SPEC sections 4, 5 and 7). Shared by the CPU and CUDA kernels: the
// one-pass kernels only produce LossSums; everything after is here.
#pragma once

#include "spotlight/core/config.hpp"
#include "spotlight/core/options.hpp"

namespace spotlight {

// Sums over one pool of voxels. Always double: chunk partials are combined
// here in a fixed order, so the result is deterministic and does not lose
// the precision a float running sum would over millions of voxels.
struct LossSums {
  double fg = 0;       // D_fg = sum(M)
  double sq_err = 0;   // sum(M * (Y - P)^2)
  double soft = 0;     // sum(S)
  double soft_fg = 0;  // A = sum(S * M)
  double poison = 0;   // 0, or NaN when a pooled value is NaN or Inf

  static constexpr int kFields = 5;

  SPOTLIGHT_HD void add(const LossSums& o) {
    fg += o.fg;
    sq_err += o.sq_err;
    soft += o.soft;
    soft_fg += o.soft_fg;
    poison += o.poison;
  }
};

// The loss of one pool and the coefficients of its gradient:
//   dL/dP_i = c_mse * M_i * (P_i - Y_i) + (c_soft + c_soft_fg * M_i) * dS_i/dP_i
//   dL/dY_i = -c_mse * M_i * (P_i - Y_i)
// which is SPEC section 7 with c_mse = 2 lam / D, c_soft_fg = -2 (1 - lam) / B,
// c_soft = 2 (1 - lam) A / B^2.
struct PoolResult {
  double mmse = 0, dice = 0, loss = 0;
  double c_mse = 0, c_soft_fg = 0, c_soft = 0;
};

SPOTLIGHT_HD PoolResult pool_result(const LossSums& s, double voxels, double lam, double eps,
                                    MseNormalization norm) {
  PoolResult r;
  const double d = norm == MseNormalization::kForeground ? s.fg : voxels;
  const double b = s.soft + s.fg + eps;
  r.mmse = (d > 0 ? s.sq_err / d : 0.0) + s.poison;
  r.dice = 1.0 - 2.0 * s.soft_fg / b + s.poison;
  r.loss = lam * r.mmse + (1.0 - lam) * r.dice;
  r.c_mse = d > 0 ? 2.0 * lam / d : 0.0;
  r.c_soft_fg = -2.0 * (1.0 - lam) / b;
  r.c_soft = 2.0 * (1.0 - lam) * s.soft_fg / (b * b);
  return r;
}

// Gradient coefficients of one sample, already multiplied by the upstream
// gradient of the value the sample contributes to.
struct GradCoefficients {
  double c_mse = 0, c_soft_fg = 0, c_soft = 0;
};

// Number of values the loss op returns for a batch of `samples`.
inline index_t loss_output_size(Reduction reduction, index_t samples) {
  return reduction == Reduction::kNone ? samples : 1;
}

// Host-side finalisation shared by every CPU path: per-sample sums in,
// losses out (1 or N values), in the pooling `opt.reduction` asks for.
// `term` picks the value: the whole loss, or one of its two terms.
template <class Out>
void finalize_losses(const LossSums* sums, index_t samples, index_t voxels_per_sample,
                     const LossOptions& opt, Out* out, double PoolResult::*term = &PoolResult::loss) {
  const double n = static_cast<double>(voxels_per_sample);
  if (opt.reduction == Reduction::kBatch) {
    LossSums pooled;
    for (index_t s = 0; s < samples; ++s) pooled.add(sums[s]);
    out[0] = static_cast<Out>(
        pool_result(pooled, n * static_cast<double>(samples), opt.lam, opt.eps, opt.mse_normalization).*term);
    return;
  }
  double mean = 0;
  for (index_t s = 0; s < samples; ++s) {
    const double l = pool_result(sums[s], n, opt.lam, opt.eps, opt.mse_normalization).*term;
    if (opt.reduction == Reduction::kNone) out[s] = static_cast<Out>(l);
    mean += l;
  }
  if (opt.reduction == Reduction::kMean) out[0] = static_cast<Out>(mean / static_cast<double>(samples));
}

// Host-side gradient coefficients for every sample. `grad_out` holds the
// upstream gradient: one value for "batch" and "mean", N for "none".
template <class G>
void gradient_coefficients(const LossSums* sums, index_t samples, index_t voxels_per_sample,
                           const LossOptions& opt, const G* grad_out, GradCoefficients* coef) {
  const double n = static_cast<double>(voxels_per_sample);
  if (opt.reduction == Reduction::kBatch) {
    LossSums pooled;
    for (index_t s = 0; s < samples; ++s) pooled.add(sums[s]);
    const PoolResult r =
        pool_result(pooled, n * static_cast<double>(samples), opt.lam, opt.eps, opt.mse_normalization);
    const double g = static_cast<double>(grad_out[0]);
    for (index_t s = 0; s < samples; ++s) coef[s] = {g * r.c_mse, g * r.c_soft_fg, g * r.c_soft};
    return;
  }
  for (index_t s = 0; s < samples; ++s) {
    const PoolResult r = pool_result(sums[s], n, opt.lam, opt.eps, opt.mse_normalization);
    const double g = opt.reduction == Reduction::kNone
                         ? static_cast<double>(grad_out[s])
                         : static_cast<double>(grad_out[0]) / static_cast<double>(samples);
    coef[s] = {g * r.c_mse, g * r.c_soft_fg, g * r.c_soft};
  }
}

}  // namespace spotlight
