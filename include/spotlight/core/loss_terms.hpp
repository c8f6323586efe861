// From per-sample partial sums to losses and gradient coefficients
// (SPEC sections 4, 5 and 7). Shared by the CPU and CUDA kernels: the
// one-pass kernels only produce LossSums; everything after is here.
#pragma once

#include "spotlight/core/config.hpp"
#include "spotlight/core/options.hpp"

namespace spotlight {

// The per-pool sums of a loss, in V. LossSums (V = double) are a pool's
// sums; the CUDA kernels add one thread's tile of voxels in the
// accumulation type (V = float for float inputs) and widen it to LossSums.
template <class V>
struct BasicLossSums {
  V fg = V(0);          // D_fg = sum(M)
  V sq_err = V(0);      // sum(M * (Y - P)^2): the masked MSE term (0 under MseTerm::kPlain's default path)
  V soft = V(0);        // sum(S), or sum(S^2) for DiceDenominator::kSquared
  V soft_fg = V(0);     // A = sum(S * M)
  V poison = V(0);      // 0, or NaN when a pooled value is NaN or Inf
  V sq_err_all = V(0);  // sum((Y - P)^2) over the pool: MseTerm::kPlain and EmptyPools::kViscy, else 0
  V above = V(0);       // sum(P > T): the voxels predicted above T (the collapse guard's count)

  static constexpr int kFields = 7;

  SPOTLIGHT_HD void add(const BasicLossSums& o) {
    fg += o.fg;
    sq_err += o.sq_err;
    soft += o.soft;
    soft_fg += o.soft_fg;
    poison += o.poison;
    sq_err_all += o.sq_err_all;
    above += o.above;
  }
};

// Sums over one pool of voxels. Always double: chunk partials are combined
// here in a fixed order, so the result is deterministic and does not lose
// the precision a float running sum would over millions of voxels.
using LossSums = BasicLossSums<double>;

// The loss of one pool and the coefficients of its gradient:
//   dL/dP_i = c_mse * M_i * (P_i - Y_i) + c_mse_all * (P_i - Y_i)
//             + (c_soft * dB/dS_i + c_soft_fg * M_i) * dS_i/dP_i
//   dL/dY_i = -(c_mse * M_i + c_mse_all) * (P_i - Y_i)
// with dB/dS_i = 1 (linear Dice denominator) or 2 S_i (squared). For the
// defaults this is SPEC section 7 with c_mse = 2 lam / D, c_mse_all = 0,
// c_soft_fg = -2 (1 - lam) / B, c_soft = 2 (1 - lam) A / B^2; the plain MSE
// term (MseTerm::kPlain) has c_mse = 0 and c_mse_all = 2 lam / n.
// dice_weight is 1, or 0 for a pool whose Dice the loss leaves out (VisCy's
// policy: a mask that is empty or full); loss = lam mse + (1 - lam) dice_weight dice.
struct PoolResult {
  double mmse = 0, dice = 0, loss = 0;  // mmse: the MSE term, masked or plain
  double c_mse = 0, c_soft_fg = 0, c_soft = 0;
  double c_mse_all = 0;
  double dice_weight = 1;
};

SPOTLIGHT_HD PoolResult pool_result(const LossSums& s, double voxels, double lam, double eps, MseNormalization norm,
                                    EmptyPools empty = EmptyPools::kSpotlight, MseTerm mse_term = MseTerm::kMasked) {
  PoolResult r;
  const double d = norm == MseNormalization::kForeground ? s.fg : voxels;
  const double b = s.soft + s.fg + eps;
  if (mse_term == MseTerm::kPlain || (empty == EmptyPools::kViscy && !(s.fg > 0))) {
    // the MSE over every voxel of the pool (VisCy: a pool with no foreground)
    r.mmse = s.sq_err_all / voxels + s.poison;
    r.c_mse_all = 2.0 * lam / voxels;
  } else if (empty == EmptyPools::kSpotlight) {
    r.mmse = (d > 0 ? s.sq_err / d : 0.0) + s.poison;
    r.c_mse = d > 0 ? 2.0 * lam / d : 0.0;
  } else {  // VisCy, with foreground: D + eps
    r.mmse = s.sq_err / (d + eps) + s.poison;
    r.c_mse = 2.0 * lam / (d + eps);
  }
  if (empty == EmptyPools::kViscy) r.dice_weight = (s.fg > 0 && s.fg < voxels) ? 1.0 : 0.0;
  r.dice = 1.0 - 2.0 * s.soft_fg / b + s.poison;
  r.loss = lam * r.mmse + (1.0 - lam) * (empty == EmptyPools::kViscy ? r.dice_weight * r.dice : r.dice);
  const double w = (1.0 - lam) * r.dice_weight;
  r.c_soft_fg = -2.0 * w / b;
  r.c_soft = 2.0 * w * s.soft_fg / (b * b);
  return r;
}

SPOTLIGHT_HD PoolResult pool_result(const LossSums& s, double voxels, const LossOptions& opt) {
  return pool_result(s, voxels, opt.lam, opt.eps, opt.mse_normalization, opt.empty_pools, opt.mse_term);
}

// Which value of a pool an op returns: the loss, or one of its two terms.
enum class Term : int { kLoss = 0, kMmse = 1, kDice = 2 };

SPOTLIGHT_HD double term_of(const PoolResult& r, Term term) {
  return term == Term::kMmse ? r.mmse : (term == Term::kDice ? r.dice : r.loss);
}

// Gradient coefficients of one sample, already multiplied by the upstream
// gradient of the value the sample contributes to.
struct GradCoefficients {
  double c_mse = 0, c_soft_fg = 0, c_soft = 0;
  double c_mse_all = 0;
};

// A pool's coefficients, its MSE part scaled by g_mse and its Dice part by g_dice.
SPOTLIGHT_HD GradCoefficients scaled_coefficients(const PoolResult& r, double g_mse, double g_dice) {
  return {g_mse * r.c_mse, g_dice * r.c_soft_fg, g_dice * r.c_soft, g_mse * r.c_mse_all};
}

// Running totals over pools, for "mean" and "sum".
struct PoolTotals {
  double value = 0;  // the chosen value (loss or term) of every pool, summed
  double mse = 0;    // lam * mmse, summed (the loss under EmptyPools::kViscy)
  double dice = 0;   // (1 - lam) * dice_weight * dice, summed
  double real = 0;   // the pools whose Dice counts (dice_weight 1)

  SPOTLIGHT_HD void add(const PoolTotals& o) {
    value += o.value;
    mse += o.mse;
    dice += o.dice;
    real += o.real;
  }
  SPOTLIGHT_HD void add_pool(const PoolResult& r, double value_of_pool, double lam) {
    value += value_of_pool;
    mse += lam * r.mmse;
    dice += (1.0 - lam) * r.dice_weight * r.dice;
    real += r.dice_weight;
  }
};

// The op's value for reduction "mean" or "sum" over `pools` pools. Under
// VisCy's policy "mean" averages the MSE over every pool and the Dice over the
// pools whose mask is neither empty nor full (0 when there is none).
SPOTLIGHT_HD double reduce_pools(const PoolTotals& t, Reduction reduction, EmptyPools empty, double pools) {
  if (reduction == Reduction::kSum) return t.value;
  if (empty == EmptyPools::kViscy) return t.mse / pools + t.dice / (t.real > 0 ? t.real : 1.0);
  return t.value / pools;
}

// The scales of a pool's MSE and Dice coefficients for the upstream gradient
// g of the op's value (g of pool s for "none"); real: the pools whose Dice
// counts (VisCy's "mean" only).
struct GradScales {
  double mse = 0, dice = 0;
};
SPOTLIGHT_HD GradScales pool_grad_scales(Reduction reduction, EmptyPools empty, double g, double pools, double real) {
  if (reduction != Reduction::kMean) return {g, g};
  if (empty == EmptyPools::kViscy) return {g / pools, g / (real > 0 ? real : 1.0)};
  return {g / pools, g / pools};
}

// Whether the gradient of a pool needs the count of pools whose Dice counts
// (VisCy's "mean"); the backward then pools pool_result(...).dice_weight first.
SPOTLIGHT_HD bool needs_real_pools(const LossOptions& opt) {
  return opt.reduction == Reduction::kMean && opt.empty_pools == EmptyPools::kViscy;
}

// The gradient coefficients of one pool (its PoolResult r) for the upstream
// gradient g (of this pool for "none", of the op's value otherwise), among
// `pools` pools of which `real` count their Dice (needs_real_pools). The
// pooled batch of "batch" is one pool. Host and device backwards both call this.
SPOTLIGHT_HD GradCoefficients pool_coefficients(const PoolResult& r, const LossOptions& opt, double g, double pools,
                                                double real) {
  const GradScales k = pool_grad_scales(opt.reduction, opt.empty_pools, g, pools, real);
  return scaled_coefficients(r, k.mse, k.dice);
}

// Number of values the loss op returns for a batch of `samples`.
inline index_t loss_output_size(Reduction reduction, index_t samples) {
  return reduction == Reduction::kNone ? samples : 1;
}

// Host-side finalisation shared by every CPU path: per-sample sums in,
// losses out (1 or N values), in the pooling `opt.reduction` asks for.
// `term` picks the value: the whole loss, or one of its two terms. The
// device's is block_pooled_value (cuda/sums.cuh), from the same functions.
template <class Out>
void finalize_losses(const LossSums* sums, index_t samples, index_t voxels_per_sample, const LossOptions& opt,
                     Out* out, Term term = Term::kLoss) {
  const double n = static_cast<double>(voxels_per_sample);
  if (opt.reduction == Reduction::kBatch) {
    LossSums pooled;
    for (index_t s = 0; s < samples; ++s) pooled.add(sums[s]);
    out[0] = static_cast<Out>(term_of(pool_result(pooled, n * static_cast<double>(samples), opt), term));
    return;
  }
  PoolTotals totals;
  for (index_t s = 0; s < samples; ++s) {
    const PoolResult r = pool_result(sums[s], n, opt);
    if (opt.reduction == Reduction::kNone) out[s] = static_cast<Out>(term_of(r, term));
    totals.add_pool(r, term_of(r, term), opt.lam);
  }
  if (opt.reduction != Reduction::kNone)
    out[0] = static_cast<Out>(reduce_pools(totals, opt.reduction, opt.empty_pools, static_cast<double>(samples)));
}

// Host-side gradient coefficients for every sample. `grad_out` holds the
// upstream gradient: one value for "batch", "mean" and "sum", N for "none".
template <class G>
void gradient_coefficients(const LossSums* sums, index_t samples, index_t voxels_per_sample,
                           const LossOptions& opt, const G* grad_out, GradCoefficients* coef) {
  const double n = static_cast<double>(voxels_per_sample);
  if (opt.reduction == Reduction::kBatch) {
    LossSums pooled;
    for (index_t s = 0; s < samples; ++s) pooled.add(sums[s]);
    const PoolResult r = pool_result(pooled, n * static_cast<double>(samples), opt);
    const GradCoefficients c = pool_coefficients(r, opt, static_cast<double>(grad_out[0]), 1.0, 1.0);
    for (index_t s = 0; s < samples; ++s) coef[s] = c;
    return;
  }
  double real = 0;
  if (needs_real_pools(opt))
    for (index_t s = 0; s < samples; ++s) real += pool_result(sums[s], n, opt).dice_weight;
  for (index_t s = 0; s < samples; ++s) {
    const double g = static_cast<double>(grad_out[opt.reduction == Reduction::kNone ? s : 0]);
    coef[s] = pool_coefficients(pool_result(sums[s], n, opt), opt, g, static_cast<double>(samples), real);
  }
}

// The term ops' gradients (masked_mse, soft_dice; SPEC section 7 with
// lam = 1 and lam = 0), from their forward's per-pool sums, so that the
// backward makes one pass over the voxels and no reduction:
//   masked_mse: dL/dP_i = c_mse M_i (P_i - Y_i), dL/dY_i = -dL/dP_i,
//               c_mse = 2 g / D (0 when D = 0);
//   soft_dice:  dL/dS_i = c_soft + c_soft_fg M_i, c_soft_fg = -2 g / B,
//               c_soft = 2 g A / B^2 plus the pool's poison,
// with g the upstream gradient of the pool's value. A NaN or Inf soft value
// poisons its pool's gradient as it poisons the pool's Dice (A and B hold
// it); masked_mse's gradient is not finite where P or Y is not (as torch's MSE's).
enum class TermOp : int { kMaskedMse = 0, kSoftDice = 1 };

struct TermGradParams {
  TermOp op = TermOp::kMaskedMse;
  MseNormalization mse_normalization = MseNormalization::kForeground;  // masked_mse
  double eps = 0;                                                      // soft_dice

  static TermGradParams masked_mse(MseNormalization mse_normalization) {
    return {TermOp::kMaskedMse, mse_normalization, 0.0};
  }
  static TermGradParams soft_dice(double eps) { return {TermOp::kSoftDice, MseNormalization::kForeground, eps}; }
};

SPOTLIGHT_HD GradCoefficients term_coefficients(const LossSums& pool, double pool_voxels, const TermGradParams& p,
                                                double g) {
  const bool dice = p.op == TermOp::kSoftDice;
  const PoolResult r = pool_result(pool, pool_voxels, dice ? 0.0 : 1.0, p.eps, p.mse_normalization);
  GradCoefficients c = scaled_coefficients(r, g, g);
  if (dice) c.c_soft += pool.poison;
  return c;
}

// The upstream gradient of pool s's value: grad_out holds
// loss_output_size(reduction, samples) values.
template <class G>
SPOTLIGHT_HD double pool_upstream(Reduction reduction, const G* grad_out, index_t s, index_t samples) {
  if (reduction == Reduction::kNone) return static_cast<double>(grad_out[s]);
  const double g = static_cast<double>(grad_out[0]);
  return reduction == Reduction::kMean ? g / static_cast<double>(samples) : g;
}

// Host side: the term op's coefficients for every sample (the pooled sums'
// for reduction "batch").
template <class G>
void term_gradient_coefficients(const LossSums* sums, index_t samples, index_t voxels_per_sample, Reduction reduction,
                                const TermGradParams& p, const G* grad_out, GradCoefficients* coef) {
  const double n = static_cast<double>(voxels_per_sample);
  if (reduction == Reduction::kBatch) {
    LossSums pooled;
    for (index_t s = 0; s < samples; ++s) pooled.add(sums[s]);
    const GradCoefficients c = term_coefficients(pooled, n * static_cast<double>(samples), p,
                                                 pool_upstream(reduction, grad_out, 0, samples));
    for (index_t s = 0; s < samples; ++s) coef[s] = c;
    return;
  }
  for (index_t s = 0; s < samples; ++s)
    coef[s] = term_coefficients(sums[s], n, p, pool_upstream(reduction, grad_out, s, samples));
}

// The LossOptions a term op's finalize_losses reads.
inline LossOptions term_options(MseNormalization mse_normalization, Reduction reduction, double eps) {
  LossOptions opt;
  opt.mse_normalization = mse_normalization;
  opt.reduction = reduction;
  opt.eps = eps;
  return opt;
}

}  // namespace spotlight
