// The fused Spotlight loss on the CPU (SPEC sections 2-7).
// Forward: one pass over pred and target gives every sample's LossSums
// (after the Otsu passes over the target when no threshold is given).
// Backward: one pass that reads pred and target and writes the gradient.
#pragma once

#include <algorithm>
#include <type_traits>
#include <vector>

#include "spotlight/core/config.hpp"
#include "spotlight/core/loss_terms.hpp"
#include "spotlight/core/math.hpp"
#include "spotlight/core/options.hpp"
#include "spotlight/cpu/executor.hpp"
#include "spotlight/cpu/isa.hpp"
#include "spotlight/cpu/otsu.hpp"
#include "spotlight/cpu/partition.hpp"
#include "spotlight/cpu/terms.hpp"

namespace spotlight::cpu {

// The five LossSums values of a strip of voxels against threshold t (see
// lane_sums_strips): M, M (Y - P)^2, S, S M, and the poison of Y and P.
template <class T>
struct LossStrip {
  using A = acc_t<T>;
  const T* pred;
  const T* target;
  A t, k;

  void operator()(index_t i, int n, A (*v)[kStrip]) const {
    const A t = this->t, k = this->k;  // locals: see LossGradStrip
    A pb[kStrip], yb[kStrip], x[kStrip];
    const A* p = strip_values<A>(pred + i, n, pb);
    const A* y = strip_values<A>(target + i, n, yb);
    // S = math::soft_mask(p, t, k), its clamp and its division in two loops.
    for (int j = 0; j < n; ++j) x[j] = math::clamp_unit(p[j] - t);
    for (int j = 0; j < n; ++j) {
      const bool m = y[j] > t;
      const A d = y[j] - p[j];
      const A sq = d * d;
      const A soft = A(0.5) + A(0.5) * math::tunable_sigmoid(x[j], k);
      v[0][j] = m ? A(1) : A(0);
      v[1][j] = keep_if(m, sq);
      v[2][j] = soft;
      v[3][j] = keep_if(m, soft);
      v[4][j] = math::poison(y[j]) + math::poison(p[j]);
    }
  }
};

// The foreground mask of the strip of elements i .. i + n - 1 (SPEC sections
// 2 and 11), m[j] for j < n: the given mask when not null, else Y >= T or
// Y > T by `rule`; y holds the strip's target values.
template <class A>
inline void strip_mask(const bool* mask, MaskRule rule, index_t i, int n, const A* y, A t, unsigned char* m) {
  if (mask != nullptr) {
    const unsigned char* given = as_bytes(mask + i);
    for (int j = 0; j < n; ++j) m[j] = given[j] != 0;
  } else if (rule == MaskRule::kGreaterEqual) {
    for (int j = 0; j < n; ++j) m[j] = y[j] >= t;
  } else {
    for (int j = 0; j < n; ++j) m[j] = y[j] > t;
  }
}

// The published variants (SPEC section 11, any LossOptions): the six LossSums
// values of a strip. Each option is one switch per strip, outside the
// per-element loops; the default options take LossStrip instead.
template <class T>
struct VariantLossStrip {
  using A = acc_t<T>;
  static constexpr int kFields = LossSums::kFields;
  const T* pred;
  const T* target;
  const bool* mask;  // given, or null
  A t, k;
  SoftMask soft_mask;
  MaskRule mask_rule;
  bool squared;

  void operator()(index_t i, int n, A (*v)[kStrip]) const {
    const A t = this->t, k = this->k;
    A pb[kStrip], yb[kStrip], x[kStrip], soft[kStrip];
    unsigned char m[kStrip];
    const A* p = strip_values<A>(pred + i, n, pb);
    const A* y = strip_values<A>(target + i, n, yb);
    strip_mask(mask, mask_rule, i, n, y, t, m);
    if (soft_mask == SoftMask::kClamped) {
      for (int j = 0; j < n; ++j) x[j] = math::clamp_unit(p[j] - t);
      for (int j = 0; j < n; ++j) soft[j] = A(0.5) + A(0.5) * math::tunable_sigmoid(x[j], k);
    } else if (soft_mask == SoftMask::kUnclamped) {
      for (int j = 0; j < n; ++j) soft[j] = math::unclamped_soft_mask(p[j] - t, k);
    } else {
      for (int j = 0; j < n; ++j) x[j] = math::tunable_sigmoid(p[j] - t, k);
      for (int j = 0; j < n; ++j) soft[j] = x[j] < A(0) ? A(0) : (x[j] > A(1) ? A(1) : x[j]);
    }
    for (int j = 0; j < n; ++j) {
      const bool mj = m[j] != 0;
      const A d = y[j] - p[j];
      const A sq = d * d;
      v[0][j] = mj ? A(1) : A(0);
      v[1][j] = keep_if(mj, sq);
      v[2][j] = squared ? soft[j] * soft[j] : soft[j];
      v[3][j] = keep_if(mj, soft[j]);
      v[4][j] = math::poison(y[j]) + math::poison(p[j]);
      v[5][j] = sq;
    }
  }
};

template <class T>
VariantLossStrip<T> variant_loss_strip(const T* pred, const T* target, acc_t<T> t, const LossOptions& opt) {
  return {pred,          target,        opt.mask,
          t,             static_cast<acc_t<T>>(opt.k), opt.soft_mask,
          opt.mask_rule, opt.dice_denominator == DiceDenominator::kSquared};
}

// LossSums from per-sample raw sums of F fields (5 for LossStrip, 6 for VariantLossStrip).
template <int F = LossSums::kFields>
inline void to_loss_sums(const double* raw, index_t samples, LossSums* sums) {
  for (index_t s = 0; s < samples; ++s) {
    const double* r = raw + s * F;
    sums[s] = LossSums{r[0], r[1], r[2], r[3], r[4]};
    if constexpr (F > 5) sums[s].sq_err_all = r[5];
  }
}

// sums[s] = the LossSums of sample s against its threshold thresholds[s].
template <class T, class Exec = ThreadExecutor>
void loss_sums(const T* pred, const T* target, index_t samples, index_t voxels, const acc_t<T>* thresholds,
               double k, LossSums* sums, const Exec& exec = Exec{}) {
  using A = acc_t<T>;
  constexpr int F = 5;
  std::vector<double> raw(static_cast<size_t>(samples) * F);
  per_sample_sums<A, F>(
      samples, voxels, exec, [&](index_t s) { return LossStrip<T>{pred, target, thresholds[s], static_cast<A>(k)}; },
      raw.data());
  to_loss_sums<F>(raw.data(), samples, sums);
}

// The same with every option of `opt` (SPEC section 11; opt.mask, when given,
// is read in place of target > T).
template <class T, class Exec = ThreadExecutor>
void loss_sums(const T* pred, const T* target, index_t samples, index_t voxels, const acc_t<T>* thresholds,
               const LossOptions& opt, LossSums* sums, const Exec& exec = Exec{}) {
  if (opt.default_variant()) return loss_sums(pred, target, samples, voxels, thresholds, opt.k, sums, exec);
  using A = acc_t<T>;
  constexpr int F = LossSums::kFields;
  std::vector<double> raw(static_cast<size_t>(samples) * F);
  per_sample_sums<A, F>(
      samples, voxels, exec, [&](index_t s) { return variant_loss_strip(pred, target, thresholds[s], opt); },
      raw.data());
  to_loss_sums<F>(raw.data(), samples, sums);
}

// Otsu thresholds and LossSums of every sample, each sample whole in one
// task: its range, histogram and sums passes read the target from cache.
// The same bits as otsu_thresholds then loss_sums (see whole_samples).
template <class T, class Exec>
void otsu_loss_sums(const T* pred, const T* target, index_t samples, index_t voxels, const LossOptions& opt,
                    acc_t<T>* thresholds, LossSums* sums, const Exec& exec) {
  using A = acc_t<T>;
  const auto run = [&](auto fields, auto strip_at) {
    constexpr int F = decltype(fields)::value;
    const Partition part(samples, voxels);
    std::vector<double> partial(static_cast<size_t>(part.tasks() * F), 0.0);
    exec(samples, [&](index_t s) {
      const A t = sample_threshold(target + s * voxels, voxels, opt.bins);
      thresholds[s] = t;
      const auto strip = strip_at(t);
      with_best_isa([&] {
        for (index_t task = s * part.chunks; task < (s + 1) * part.chunks; ++task)
          lane_sums_strips<A, F>(part.begin(task), part.end(task), strip, partial.data() + task * F);
      });
    });
    std::vector<double> raw(static_cast<size_t>(samples) * F);
    combine_chunks<F>(part, partial.data(), raw.data());
    to_loss_sums<F>(raw.data(), samples, sums);
  };
  if (opt.default_variant())
    run(std::integral_constant<int, 5>{}, [&](A t) { return LossStrip<T>{pred, target, t, static_cast<A>(opt.k)}; });
  else
    run(std::integral_constant<int, LossSums::kFields>{}, [&](A t) { return variant_loss_strip(pred, target, t, opt); });
}

template <class T, class Exec>
void otsu_loss_sums(const T* pred, const T* target, index_t samples, index_t voxels, int bins, double k,
                    acc_t<T>* thresholds, LossSums* sums, const Exec& exec) {
  LossOptions opt;
  opt.bins = bins;
  opt.k = k;
  otsu_loss_sums(pred, target, samples, voxels, opt, thresholds, sums, exec);
}

// Everything the backward pass needs from the forward pass.
template <class A>
struct LossForwardState {
  std::vector<A> thresholds;   // per sample
  std::vector<LossSums> sums;  // per sample
};

// The whole forward: thresholds (Otsu per sample when `given_thresholds` is
// null, else those N values), sums, and the loss values written to `loss`
// (1 value, or N for Reduction::kNone; see loss_output_size).
template <class T, class Out, class Exec = ThreadExecutor>
LossForwardState<acc_t<T>> loss_forward(const T* pred, const T* target, index_t samples, index_t voxels,
                                        const acc_t<T>* given_thresholds, const LossOptions& opt, Out* loss,
                                        const Exec& exec = Exec{}) {
  opt.validate();
  check_batch(samples, voxels, "pred");
  LossForwardState<acc_t<T>> st;
  st.thresholds.resize(static_cast<size_t>(samples));
  st.sums.resize(static_cast<size_t>(samples));
  if (given_thresholds) {
    std::copy_n(given_thresholds, samples, st.thresholds.begin());
  } else if (whole_samples<T>(samples, voxels, executor_threads(exec))) {
    otsu_loss_sums(pred, target, samples, voxels, opt, st.thresholds.data(), st.sums.data(), exec);
    finalize_losses(st.sums.data(), samples, voxels, opt, loss);
    return st;
  } else {
    otsu_thresholds(target, samples, voxels, opt.bins, st.thresholds.data(), exec);
  }
  loss_sums(pred, target, samples, voxels, st.thresholds.data(), opt, st.sums.data(), exec);
  finalize_losses(st.sums.data(), samples, voxels, opt, loss);
  return st;
}

// The gradients of a strip of voxels (see GradCoefficients), written to
// grad_pred, and to grad_target when kTarget.
template <class T, bool kTarget>
struct LossGradStrip {
  using A = acc_t<T>;
  const T* pred;
  const T* target;
  T* grad_pred;
  T* grad_target;
  A t, k, c_mse, c_fg, c_all;

  void operator()(index_t i, int n) const {
    // Locals, not members: the compiler then knows the stores below leave
    // them alone, and keeps them in registers.
    const A t_ = t, k_ = k, c_mse_ = c_mse, c_all_ = c_all, c_both = c_all + c_fg;
    A pb[kStrip], yb[kStrip], x[kStrip], g[kStrip], gp[kStrip], gt[kStrip];
    const A* p = strip_values<A>(pred + i, n, pb);
    const A* y = strip_values<A>(target + i, n, yb);
    // dS/dP = math::soft_mask_grad(p, t, k), its division and its select in
    // separate loops.
    for (int j = 0; j < n; ++j) x[j] = p[j] - t_;
    for (int j = 0; j < n; ++j) g[j] = math::tunable_sigmoid_grad(x[j], k_);
    A* out_p = gp;
    A* out_t = gt;
    if constexpr (std::is_same_v<T, A>) {
      out_p = grad_pred + i;
      if constexpr (kTarget) out_t = grad_target + i;
    }
    for (int j = 0; j < n; ++j) {
      const bool inside = (x[j] > A(-1)) & (x[j] < A(1));
      const A ds = A(0.5) * keep_if(inside, g[j]);
      const bool m = y[j] > t_;
      const A mse = keep_if(m, c_mse_ * (p[j] - y[j]));
      out_p[j] = mse + (m ? c_both : c_all_) * ds;
      if constexpr (kTarget) out_t[j] = -mse;
    }
    if constexpr (!std::is_same_v<T, A>) {
      for (int j = 0; j < n; ++j) grad_pred[i + j] = static_cast<T>(gp[j]);
      if constexpr (kTarget)
        for (int j = 0; j < n; ++j) grad_target[i + j] = static_cast<T>(gt[j]);
    }
  }
};

// The gradients of a strip under any LossOptions (SPEC section 11; see
// PoolResult for the formula): one switch per option and strip.
template <class T, bool kTarget>
struct VariantLossGradStrip {
  using A = acc_t<T>;
  const T* pred;
  const T* target;
  const bool* mask;
  T* grad_pred;
  T* grad_target;
  A t, k, c_mse, c_fg, c_all, c_mse_all;
  SoftMask soft_mask;
  MaskRule mask_rule;
  bool squared;

  void operator()(index_t i, int n) const {
    const A t_ = t, k_ = k, c_mse_ = c_mse, c_fg_ = c_fg, c_all_ = c_all, c_mse_all_ = c_mse_all;
    A pb[kStrip], yb[kStrip], x[kStrip], ds[kStrip], soft[kStrip], g[kStrip];
    unsigned char m[kStrip];
    const A* p = strip_values<A>(pred + i, n, pb);
    const A* y = strip_values<A>(target + i, n, yb);
    strip_mask(mask, mask_rule, i, n, y, t_, m);
    for (int j = 0; j < n; ++j) x[j] = p[j] - t_;
    for (int j = 0; j < n; ++j) g[j] = math::tunable_sigmoid_grad(x[j], k_);
    if (soft_mask == SoftMask::kClamped) {
      for (int j = 0; j < n; ++j) ds[j] = A(0.5) * keep_if((x[j] > A(-1)) & (x[j] < A(1)), g[j]);
      if (squared) {
        for (int j = 0; j < n; ++j) soft[j] = math::clamp_unit(x[j]);
        for (int j = 0; j < n; ++j) soft[j] = A(0.5) + A(0.5) * math::tunable_sigmoid(soft[j], k_);
      }
    } else if (soft_mask == SoftMask::kUnclamped) {
      for (int j = 0; j < n; ++j) ds[j] = A(0.5) * g[j];
      if (squared)
        for (int j = 0; j < n; ++j) soft[j] = math::unclamped_soft_mask(x[j], k_);
    } else {
      for (int j = 0; j < n; ++j) soft[j] = math::tunable_sigmoid(x[j], k_);
      for (int j = 0; j < n; ++j) ds[j] = keep_if((soft[j] > A(0)) & (soft[j] < A(1)), g[j]);
      for (int j = 0; j < n; ++j) soft[j] = soft[j] < A(0) ? A(0) : (soft[j] > A(1) ? A(1) : soft[j]);
    }
    if (!squared)
      for (int j = 0; j < n; ++j) soft[j] = A(0.5);  // dB/dS = 2 soft = 1
    A gp[kStrip], gt[kStrip];
    for (int j = 0; j < n; ++j) {
      const bool mj = m[j] != 0;
      const A e = p[j] - y[j];
      const A mse = keep_if(mj, c_mse_ * e) + c_mse_all_ * e;
      gp[j] = mse + (c_all_ * (A(2) * soft[j]) + keep_if(mj, c_fg_)) * ds[j];
      gt[j] = -mse;
    }
    for (int j = 0; j < n; ++j) grad_pred[i + j] = static_cast<T>(gp[j]);
    if constexpr (kTarget)
      for (int j = 0; j < n; ++j) grad_target[i + j] = static_cast<T>(gt[j]);
  }
};

// Gradients from per-sample coefficients (see GradCoefficients): writes
// grad_pred, and grad_target when it is not null. The default options.
template <class T, class Exec = ThreadExecutor>
void loss_backward_apply(const T* pred, const T* target, index_t samples, index_t voxels,
                         const acc_t<T>* thresholds, const GradCoefficients* coef, double k, T* grad_pred,
                         T* grad_target, const Exec& exec = Exec{}) {
  using A = acc_t<T>;
  const A kk = static_cast<A>(k);
  const auto run = [&](auto target_tag) {
    constexpr bool kTarget = decltype(target_tag)::value;
    backward_strips(samples, voxels, exec, [&](index_t s) {
      return LossGradStrip<T, kTarget>{pred,
                                       target,
                                       grad_pred,
                                       grad_target,
                                       thresholds[s],
                                       kk,
                                       static_cast<A>(coef[s].c_mse),
                                       static_cast<A>(coef[s].c_soft_fg),
                                       static_cast<A>(coef[s].c_soft)};
    });
  };
  if (grad_target)
    run(std::true_type{});
  else
    run(std::false_type{});
}

// The same under any LossOptions (SPEC section 11).
template <class T, class Exec = ThreadExecutor>
void loss_backward_apply(const T* pred, const T* target, index_t samples, index_t voxels,
                         const acc_t<T>* thresholds, const GradCoefficients* coef, const LossOptions& opt,
                         T* grad_pred, T* grad_target, const Exec& exec = Exec{}) {
  if (opt.default_variant())
    return loss_backward_apply(pred, target, samples, voxels, thresholds, coef, opt.k, grad_pred, grad_target, exec);
  using A = acc_t<T>;
  const auto run = [&](auto target_tag) {
    constexpr bool kTarget = decltype(target_tag)::value;
    backward_strips(samples, voxels, exec, [&](index_t s) {
      return VariantLossGradStrip<T, kTarget>{pred,
                                              target,
                                              opt.mask,
                                              grad_pred,
                                              grad_target,
                                              thresholds[s],
                                              static_cast<A>(opt.k),
                                              static_cast<A>(coef[s].c_mse),
                                              static_cast<A>(coef[s].c_soft_fg),
                                              static_cast<A>(coef[s].c_soft),
                                              static_cast<A>(coef[s].c_mse_all),
                                              opt.soft_mask,
                                              opt.mask_rule,
                                              opt.dice_denominator == DiceDenominator::kSquared};
    });
  };
  if (grad_target)
    run(std::true_type{});
  else
    run(std::false_type{});
}

// Backward of loss_forward: `grad_out` holds loss_output_size(...) upstream
// gradients.
template <class T, class G, class Exec = ThreadExecutor>
void loss_backward(const T* pred, const T* target, index_t samples, index_t voxels,
                   const LossForwardState<acc_t<T>>& st, const LossOptions& opt, const G* grad_out, T* grad_pred,
                   T* grad_target, const Exec& exec = Exec{}) {
  opt.validate();
  check_batch(samples, voxels, "pred");
  check(st.thresholds.size() == static_cast<size_t>(samples) && st.sums.size() == static_cast<size_t>(samples),
        "state must come from loss_forward on ", samples, " samples");
  std::vector<GradCoefficients> coef(static_cast<size_t>(samples));
  gradient_coefficients(st.sums.data(), samples, voxels, opt, grad_out, coef.data());
  loss_backward_apply(pred, target, samples, voxels, st.thresholds.data(), coef.data(), opt, grad_pred,
                      grad_target, exec);
}

}  // namespace spotlight::cpu
