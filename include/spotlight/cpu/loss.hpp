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

inline void to_loss_sums(const double* raw, index_t samples, LossSums* sums) {
  for (index_t s = 0; s < samples; ++s) {
    const double* r = raw + s * LossSums::kFields;
    sums[s] = LossSums{r[0], r[1], r[2], r[3], r[4]};
  }
}

// sums[s] = the LossSums of sample s against its threshold thresholds[s].
template <class T, class Exec = ThreadExecutor>
void loss_sums(const T* pred, const T* target, index_t samples, index_t voxels, const acc_t<T>* thresholds,
               double k, LossSums* sums, const Exec& exec = Exec{}) {
  using A = acc_t<T>;
  std::vector<double> raw(static_cast<size_t>(samples) * LossSums::kFields);
  per_sample_sums<A, LossSums::kFields>(
      samples, voxels, exec, [&](index_t s) { return LossStrip<T>{pred, target, thresholds[s], static_cast<A>(k)}; },
      raw.data());
  to_loss_sums(raw.data(), samples, sums);
}

// Otsu thresholds and LossSums of every sample, each sample whole in one
// task: its range, histogram and sums passes read the target from cache.
// The same bits as otsu_thresholds then loss_sums (see whole_samples).
template <class T, class Exec>
void otsu_loss_sums(const T* pred, const T* target, index_t samples, index_t voxels, int bins, double k,
                    acc_t<T>* thresholds, LossSums* sums, const Exec& exec) {
  using A = acc_t<T>;
  constexpr int F = LossSums::kFields;
  const Partition part(samples, voxels);
  std::vector<double> partial(static_cast<size_t>(part.tasks() * F), 0.0);
  exec(samples, [&](index_t s) {
    const A t = sample_threshold(target + s * voxels, voxels, bins);
    thresholds[s] = t;
    const LossStrip<T> strip{pred, target, t, static_cast<A>(k)};
    with_best_isa([&] {
      for (index_t task = s * part.chunks; task < (s + 1) * part.chunks; ++task)
        lane_sums_strips<A, F>(part.begin(task), part.end(task), strip, partial.data() + task * F);
    });
  });
  std::vector<double> raw(static_cast<size_t>(samples) * F);
  combine_chunks<F>(part, partial.data(), raw.data());
  to_loss_sums(raw.data(), samples, sums);
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
  } else if (whole_samples<T>(samples, voxels)) {
    otsu_loss_sums(pred, target, samples, voxels, opt.bins, opt.k, st.thresholds.data(), st.sums.data(), exec);
    finalize_losses(st.sums.data(), samples, voxels, opt, loss);
    return st;
  } else {
    otsu_thresholds(target, samples, voxels, opt.bins, st.thresholds.data(), exec);
  }
  loss_sums(pred, target, samples, voxels, st.thresholds.data(), opt.k, st.sums.data(), exec);
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

// Gradients from per-sample coefficients (see GradCoefficients): writes
// grad_pred, and grad_target when it is not null.
template <class T, class Exec = ThreadExecutor>
void loss_backward_apply(const T* pred, const T* target, index_t samples, index_t voxels,
                         const acc_t<T>* thresholds, const GradCoefficients* coef, double k, T* grad_pred,
                         T* grad_target, const Exec& exec = Exec{}) {
  using A = acc_t<T>;
  const Partition part(samples, voxels);
  exec(part.tasks(), [&](index_t task) {
    const index_t s = part.sample_of(task);
    const A t = thresholds[s], kk = static_cast<A>(k), c_mse = static_cast<A>(coef[s].c_mse),
            c_fg = static_cast<A>(coef[s].c_soft_fg), c_all = static_cast<A>(coef[s].c_soft);
    auto run = [&](auto strip) {
      with_best_isa([&] {
        for (index_t i = part.begin(task), end = part.end(task); i < end; i += kStrip)
          strip(i, static_cast<int>(std::min<index_t>(kStrip, end - i)));
      });
    };
    if (grad_target)
      run(LossGradStrip<T, true>{pred, target, grad_pred, grad_target, t, kk, c_mse, c_fg, c_all});
    else
      run(LossGradStrip<T, false>{pred, target, grad_pred, grad_target, t, kk, c_mse, c_fg, c_all});
  });
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
  loss_backward_apply(pred, target, samples, voxels, st.thresholds.data(), coef.data(), opt.k, grad_pred,
                      grad_target, exec);
}

}  // namespace spotlight::cpu
