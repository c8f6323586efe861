// The fused Spotlight loss on the CPU (SPEC sections 2-7).
// Forward: one pass over pred and target gives every sample's LossSums
// (after the Otsu passes over the target when no threshold is given).
// Backward: one pass that reads pred and target and writes the gradient.
#pragma once

#include <algorithm>
#include <array>
#include <optional>
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

// The LossSums fields a strip computes: M, the squared error (masked, or of
// every voxel under MseTerm::kPlain), S, S M, the poison of Y and P, and,
// when kCount, P > T.
template <bool kPlain, bool kCount>
constexpr auto loss_strip_fields() {
  constexpr double LossSums::*sq = kPlain ? &LossSums::sq_err_all : &LossSums::sq_err;
  if constexpr (kCount)
    return std::array<double LossSums::*, 6>{&LossSums::fg,      sq, &LossSums::soft, &LossSums::soft_fg,
                                             &LossSums::poison, &LossSums::above};
  else
    return std::array<double LossSums::*, 5>{&LossSums::fg, sq, &LossSums::soft, &LossSums::soft_fg,
                                             &LossSums::poison};
}

// The LossSums of a strip of voxels against threshold t under the default
// per-voxel options (see lane_sums_strips), in the order of kFields.
template <class T, bool kPlain, bool kCount>
struct LossStrip {
  using A = acc_t<T>;
  static constexpr auto kFields = loss_strip_fields<kPlain, kCount>();
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
      v[1][j] = kPlain ? sq : keep_if(m, sq);
      v[2][j] = soft;
      v[3][j] = keep_if(m, soft);
      v[4][j] = math::poison(y[j]) + math::poison(p[j]);
      if constexpr (kCount) v[5][j] = x[j] > A(0) ? A(1) : A(0);  // the clamp keeps the sign of P - T
    }
  }
};

// Where a variant's foreground mask M comes from (SPEC sections 2 and 11): a
// given mask, or the target against T by LossOptions::mask_rule.
enum class MaskFrom { kGiven, kGreater, kGreaterEqual };

inline MaskFrom mask_from(const LossOptions& opt) {
  if (opt.mask != nullptr) return MaskFrom::kGiven;
  return opt.mask_rule == MaskRule::kGreaterEqual ? MaskFrom::kGreaterEqual : MaskFrom::kGreater;
}

// M of element i, whose target value is y.
template <MaskFrom kMask, class A>
inline bool mask_at(const bool* mask, index_t i, A y, A t) {
  if constexpr (kMask == MaskFrom::kGiven)
    return as_bytes(mask)[i] != 0;
  else if constexpr (kMask == MaskFrom::kGreaterEqual)
    return y >= t;
  else
    return y > t;
}

// Calls f(soft, mask, squared) with the options of `opt` that shape the
// per-voxel work of a variant as compile-time tags (std::integral_constant of
// SoftMask, MaskFrom and bool): each combination gets strips of its own, with
// no per-strip or per-element switch (as LossStrip has none).
template <class F>
void with_variant_tags(const LossOptions& opt, F&& f) {
  const auto by_squared = [&](auto soft, auto mask) {
    if (opt.dice_denominator == DiceDenominator::kSquared)
      f(soft, mask, std::true_type{});
    else
      f(soft, mask, std::false_type{});
  };
  const auto by_mask = [&](auto soft) {
    using M = MaskFrom;
    switch (mask_from(opt)) {
      case M::kGiven: return by_squared(soft, std::integral_constant<M, M::kGiven>{});
      case M::kGreaterEqual: return by_squared(soft, std::integral_constant<M, M::kGreaterEqual>{});
      case M::kGreater: return by_squared(soft, std::integral_constant<M, M::kGreater>{});
    }
  };
  using S = SoftMask;
  switch (opt.soft_mask) {
    case S::kUnclamped: return by_mask(std::integral_constant<S, S::kUnclamped>{});
    case S::kViscy: return by_mask(std::integral_constant<S, S::kViscy>{});
    case S::kClamped: return by_mask(std::integral_constant<S, S::kClamped>{});
  }
}

// The published variants (SPEC section 11, any LossOptions): every LossSums
// value of a strip (P > T when kCount), specialised on the soft mask, the
// source of M and the Dice denominator (see with_variant_tags); the default
// options take LossStrip instead.
template <class T, bool kCount, SoftMask kSoft, MaskFrom kMask, bool kSquared>
struct VariantLossStrip {
  using A = acc_t<T>;
  static constexpr auto kFields = [] {
    constexpr std::array<double LossSums::*, 7> all{&LossSums::fg,     &LossSums::sq_err,     &LossSums::soft,
                                                    &LossSums::soft_fg, &LossSums::poison, &LossSums::sq_err_all,
                                                    &LossSums::above};
    std::array<double LossSums::*, kCount ? 7 : 6> out{};
    for (size_t f = 0; f < out.size(); ++f) out[f] = all[f];
    return out;
  }();
  const T* pred;
  const T* target;
  const bool* mask;  // given (kMask == MaskFrom::kGiven), or null
  A t, k;

  void operator()(index_t i, int n, A (*v)[kStrip]) const {
    const A t = this->t, k = this->k;
    A pb[kStrip], yb[kStrip], x[kStrip], soft[kStrip];
    const A* p = strip_values<A>(pred + i, n, pb);
    const A* y = strip_values<A>(target + i, n, yb);
    if constexpr (kSoft == SoftMask::kClamped) {
      for (int j = 0; j < n; ++j) x[j] = math::clamp_unit(p[j] - t);
      for (int j = 0; j < n; ++j) soft[j] = A(0.5) + A(0.5) * math::tunable_sigmoid(x[j], k);
    } else if constexpr (kSoft == SoftMask::kUnclamped) {
      for (int j = 0; j < n; ++j) soft[j] = math::unclamped_soft_mask(p[j] - t, k);
    } else {
      for (int j = 0; j < n; ++j) x[j] = math::tunable_sigmoid(p[j] - t, k);
      for (int j = 0; j < n; ++j) soft[j] = x[j] < A(0) ? A(0) : (x[j] > A(1) ? A(1) : x[j]);
    }
    for (int j = 0; j < n; ++j) {
      const bool mj = mask_at<kMask>(mask, i + j, y[j], t);
      const A d = y[j] - p[j];
      const A sq = d * d;
      v[0][j] = mj ? A(1) : A(0);
      v[1][j] = keep_if(mj, sq);
      v[2][j] = kSquared ? soft[j] * soft[j] : soft[j];
      v[3][j] = keep_if(mj, soft[j]);
      v[4][j] = math::poison(y[j]) + math::poison(p[j]);
      v[5][j] = sq;
      if constexpr (kCount) v[6][j] = p[j] > t ? A(1) : A(0);
    }
  }
};

// Calls f(strip_of) with the strip maker of `opt`: strip_of(t) is the strip
// functor of a sample with threshold t (LossStrip for the default per-voxel
// options, with either MSE term; VariantLossStrip otherwise; counting P > T
// when opt.count_above).
template <class T, class F>
void with_loss_strip(const T* pred, const T* target, const LossOptions& opt, F&& f) {
  using A = acc_t<T>;
  const A k = static_cast<A>(opt.k);
  const auto pick = [&](auto count_tag) {
    constexpr bool kCount = decltype(count_tag)::value;
    if (!opt.default_variant())
      with_variant_tags(opt, [&](auto soft, auto mask, auto squared) {
        f([&](A t) {
          return VariantLossStrip<T, kCount, soft.value, mask.value, squared.value>{pred, target, opt.mask, t, k};
        });
      });
    else if (opt.mse_term == MseTerm::kPlain)
      f([&](A t) { return LossStrip<T, true, kCount>{pred, target, t, k}; });
    else
      f([&](A t) { return LossStrip<T, false, kCount>{pred, target, t, k}; });
  };
  if (opt.count_above)
    pick(std::true_type{});
  else
    pick(std::false_type{});
}

// LossSums from per-sample raw sums of a strip's fields (Strip::kFields).
template <class Strip>
inline void to_loss_sums(const double* raw, index_t samples, LossSums* sums) {
  constexpr auto& fields = Strip::kFields;
  constexpr int F = static_cast<int>(fields.size());
  for (index_t s = 0; s < samples; ++s) {
    sums[s] = LossSums{};
    for (int f = 0; f < F; ++f) sums[s].*fields[f] = raw[s * F + f];
  }
}

// sums[s] = the LossSums of sample s against its threshold thresholds[s],
// under every option of `opt` (SPEC section 11; opt.mask, when given, is
// read in place of target > T).
template <class T, class Exec = ThreadExecutor>
void loss_sums(const T* pred, const T* target, index_t samples, index_t voxels, const acc_t<T>* thresholds,
               const LossOptions& opt, LossSums* sums, const Exec& exec = Exec{}) {
  using A = acc_t<T>;
  with_loss_strip(pred, target, opt, [&](auto strip_of) {
    using Strip = decltype(strip_of(A(0)));
    constexpr int F = static_cast<int>(Strip::kFields.size());
    std::vector<double> raw(static_cast<size_t>(samples) * F);
    per_sample_sums<A, F>(samples, voxels, exec, [&](index_t s) { return strip_of(thresholds[s]); }, raw.data());
    to_loss_sums<Strip>(raw.data(), samples, sums);
  });
}

// A strip functor that also counts the same voxels of the next sample into
// its histogram: the histogram's scattered increments (load and store ports)
// then run beside the sums' arithmetic (vector units) instead of after it.
template <class Strip, class T>
struct StripCountingNext {
  Strip strip;
  SampleOtsu<T>* next;
  index_t offset;  // the first voxel of this strip's sample

  void operator()(index_t i, int n, acc_t<T> (*v)[kStrip]) const {
    strip(i, n, v);
    next->count(i - offset, n);
  }
};

// Otsu thresholds and LossSums of every sample, each sample whole in one
// thread: the executor's threads take runs of consecutive samples, and the
// histogram of each sample but a run's first is counted during the sums
// pass of the one before it (StripCountingNext); the range and histogram
// passes read the target from cache. The same bits as otsu_thresholds then
// loss_sums: counts do not depend on when they are made, and every sum is
// made in the same lanes and order (see whole_samples).
template <class T, class Exec>
void otsu_loss_sums(const T* pred, const T* target, index_t samples, index_t voxels, const LossOptions& opt,
                    acc_t<T>* thresholds, LossSums* sums, const Exec& exec) {
  using A = acc_t<T>;
  with_loss_strip(pred, target, opt, [&](auto strip_of) {
    using Strip = decltype(strip_of(A(0)));
    constexpr int F = static_cast<int>(Strip::kFields.size());
    const Partition part(samples, voxels);
    std::vector<double> partial(static_cast<size_t>(part.tasks() * F), 0.0);
    const index_t runs = std::clamp<index_t>(executor_threads(exec), 1, samples);
    exec(runs, [&](index_t run) {
      const index_t first = run * samples / runs, last = (run + 1) * samples / runs;
      std::optional<SampleOtsu<T>> otsu, next;
      with_best_isa([&] {
        otsu.emplace(target + first * voxels, voxels, opt.bins);
        if (otsu->needs_counts()) otsu->count_all();
      });
      for (index_t s = first; s < last; ++s) {
        const A t = otsu->threshold();
        thresholds[s] = t;
        const Strip strip = strip_of(t);
        with_best_isa([&] {
          if (s + 1 < last) next.emplace(target + (s + 1) * voxels, voxels, opt.bins);
          for (index_t task = s * part.chunks; task < (s + 1) * part.chunks; ++task) {
            double* out = partial.data() + task * F;
            if (next && next->needs_counts())
              lane_sums_strips<A, F>(part.begin(task), part.end(task),
                                     StripCountingNext<Strip, T>{strip, &*next, s * voxels}, out);
            else
              lane_sums_strips<A, F>(part.begin(task), part.end(task), strip, out);
          }
        });
        otsu = std::move(next);
        next.reset();
      }
    });
    std::vector<double> raw(static_cast<size_t>(samples) * F);
    combine_chunks<F>(part, partial.data(), raw.data());
    to_loss_sums<Strip>(raw.data(), samples, sums);
  });
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

// The gradients of a strip of voxels under the default per-voxel options
// (see GradCoefficients), written to grad_pred, and to grad_target when
// kTarget; the MSE part over the mask, or every voxel when kPlain.
template <class T, bool kTarget, bool kPlain>
struct LossGradStrip {
  using A = acc_t<T>;
  const T* pred;
  const T* target;
  T* grad_pred;
  T* grad_target;
  A t, k, c_mse, c_soft_fg, c_soft;

  void operator()(index_t i, int n) const {
    // Locals, not members: the compiler then knows the stores below leave
    // them alone, and keeps them in registers.
    const A t_ = t, k_ = k, c_mse_ = c_mse, c_soft_ = c_soft, c_both = c_soft + c_soft_fg;
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
      const A mse = kPlain ? c_mse_ * (p[j] - y[j]) : keep_if(m, c_mse_ * (p[j] - y[j]));
      out_p[j] = mse + (m ? c_both : c_soft_) * ds;
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
// PoolResult for the formula), specialised as VariantLossStrip is.
template <class T, bool kTarget, SoftMask kSoft, MaskFrom kMask, bool kSquared>
struct VariantLossGradStrip {
  using A = acc_t<T>;
  const T* pred;
  const T* target;
  const bool* mask;
  T* grad_pred;
  T* grad_target;
  A t, k, c_mse, c_soft_fg, c_soft, c_mse_all;

  void operator()(index_t i, int n) const {
    const A t_ = t, k_ = k, c_mse_ = c_mse, c_soft_fg_ = c_soft_fg, c_soft_ = c_soft, c_mse_all_ = c_mse_all;
    A pb[kStrip], yb[kStrip], x[kStrip], ds[kStrip], soft[kStrip], g[kStrip], gp[kStrip], gt[kStrip];
    const A* p = strip_values<A>(pred + i, n, pb);
    const A* y = strip_values<A>(target + i, n, yb);
    for (int j = 0; j < n; ++j) x[j] = p[j] - t_;
    for (int j = 0; j < n; ++j) g[j] = math::tunable_sigmoid_grad(x[j], k_);
    // ds = dS/dP; soft = S, needed by the squared denominator only (dB/dS = 2 S).
    if constexpr (kSoft == SoftMask::kClamped) {
      for (int j = 0; j < n; ++j) ds[j] = A(0.5) * keep_if((x[j] > A(-1)) & (x[j] < A(1)), g[j]);
      if constexpr (kSquared) {
        for (int j = 0; j < n; ++j) soft[j] = math::clamp_unit(x[j]);
        for (int j = 0; j < n; ++j) soft[j] = A(0.5) + A(0.5) * math::tunable_sigmoid(soft[j], k_);
      }
    } else if constexpr (kSoft == SoftMask::kUnclamped) {
      for (int j = 0; j < n; ++j) ds[j] = A(0.5) * g[j];
      if constexpr (kSquared)
        for (int j = 0; j < n; ++j) soft[j] = math::unclamped_soft_mask(x[j], k_);
    } else {
      for (int j = 0; j < n; ++j) soft[j] = math::tunable_sigmoid(x[j], k_);
      for (int j = 0; j < n; ++j) ds[j] = keep_if((soft[j] > A(0)) & (soft[j] < A(1)), g[j]);
      if constexpr (kSquared)
        for (int j = 0; j < n; ++j) soft[j] = soft[j] < A(0) ? A(0) : (soft[j] > A(1) ? A(1) : soft[j]);
    }
    A* out_p = gp;
    A* out_t = gt;
    if constexpr (std::is_same_v<T, A>) {
      out_p = grad_pred + i;
      if constexpr (kTarget) out_t = grad_target + i;
    }
    for (int j = 0; j < n; ++j) {
      const bool mj = mask_at<kMask>(mask, i + j, y[j], t_);
      const A e = p[j] - y[j];
      const A mse = keep_if(mj, c_mse_ * e) + c_mse_all_ * e;
      // The soft term's weight c_soft dB/dS: c_soft * (2 S), or exactly c_soft
      // for the linear denominator (dB/dS = 1).
      const A w = kSquared ? c_soft_ * (A(2) * soft[j]) : c_soft_;
      out_p[j] = mse + (w + keep_if(mj, c_soft_fg_)) * ds[j];
      if constexpr (kTarget) out_t[j] = -mse;
    }
    if constexpr (!std::is_same_v<T, A>) {
      for (int j = 0; j < n; ++j) grad_pred[i + j] = static_cast<T>(gp[j]);
      if constexpr (kTarget)
        for (int j = 0; j < n; ++j) grad_target[i + j] = static_cast<T>(gt[j]);
    }
  }
};

// Gradients from per-sample coefficients (see GradCoefficients) under any
// LossOptions: writes grad_pred, and grad_target when it is not null.
template <class T, class Exec = ThreadExecutor>
void loss_backward_apply(const T* pred, const T* target, index_t samples, index_t voxels,
                         const acc_t<T>* thresholds, const GradCoefficients* coef, const LossOptions& opt,
                         T* grad_pred, T* grad_target, const Exec& exec = Exec{}) {
  using A = acc_t<T>;
  const A k = static_cast<A>(opt.k);
  const bool plain = opt.mse_term == MseTerm::kPlain;
  const auto run = [&](auto target_tag, auto plain_tag) {
    constexpr bool kTarget = decltype(target_tag)::value, kPlain = decltype(plain_tag)::value;
    backward_strips(samples, voxels, exec, [&](index_t s) {
      const GradCoefficients& c = coef[s];
      if constexpr (kPlain) {  // the default per-voxel options: the MSE coefficient is c_mse_all
        return LossGradStrip<T, kTarget, true>{pred, target, grad_pred, grad_target, thresholds[s], k,
                                               static_cast<A>(c.c_mse_all), static_cast<A>(c.c_soft_fg),
                                               static_cast<A>(c.c_soft)};
      } else {
        return LossGradStrip<T, kTarget, false>{pred, target, grad_pred, grad_target, thresholds[s], k,
                                                static_cast<A>(c.c_mse), static_cast<A>(c.c_soft_fg),
                                                static_cast<A>(c.c_soft)};
      }
    });
  };
  const auto run_variant = [&](auto target_tag) {
    constexpr bool kTarget = decltype(target_tag)::value;
    with_variant_tags(opt, [&](auto soft, auto mask, auto squared) {
      backward_strips(samples, voxels, exec, [&](index_t s) {
        const GradCoefficients& c = coef[s];
        return VariantLossGradStrip<T, kTarget, soft.value, mask.value, squared.value>{
            pred,
            target,
            opt.mask,
            grad_pred,
            grad_target,
            thresholds[s],
            k,
            static_cast<A>(c.c_mse),
            static_cast<A>(c.c_soft_fg),
            static_cast<A>(c.c_soft),
            static_cast<A>(c.c_mse_all)};
      });
    });
  };
  using Yes = std::true_type;
  using No = std::false_type;
  if (!opt.default_variant()) {
    grad_target ? run_variant(Yes{}) : run_variant(No{});
  } else if (plain) {
    grad_target ? run(Yes{}, Yes{}) : run(No{}, Yes{});
  } else {
    grad_target ? run(Yes{}, No{}) : run(No{}, No{});
  }
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
