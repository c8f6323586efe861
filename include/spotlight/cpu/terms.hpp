// The two loss terms as separate reductions (the ops masked_mse and
// soft_dice), for callers that build their own mask or soft mask, forward
// and backward. The forward writes the values and each sample's LossSums
// (caller-owned: the state the backward reads); the backward derives each
// pool's gradient coefficients from them (term_coefficients of
// loss_terms.hpp) and makes one pass: it reads the inputs and writes the
// gradients, with no reduction.
#pragma once

#include <type_traits>
#include <vector>

#include "spotlight/core/config.hpp"
#include "spotlight/core/options.hpp"
#include "spotlight/core/loss_terms.hpp"
#include "spotlight/core/math.hpp"
#include "spotlight/cpu/executor.hpp"
#include "spotlight/cpu/partition.hpp"

namespace spotlight::cpu {

// A bool mask read as bytes (0 or 1): GCC does not vectorise loads of bool.
inline const unsigned char* as_bytes(const bool* mask) { return reinterpret_cast<const unsigned char*>(mask); }

// M, M (Y - P)^2 and the poison of Y and P, for a strip (see lane_sums_strips).
template <class T>
struct MaskedMseStrip {
  using A = acc_t<T>;
  const T* pred;
  const T* target;
  const bool* mask;

  void operator()(index_t i, int n, A (*v)[kStrip]) const {
    A pb[kStrip], yb[kStrip];
    const A* p = strip_values<A>(pred + i, n, pb);
    const A* y = strip_values<A>(target + i, n, yb);
    const unsigned char* m = as_bytes(mask + i);
    for (int j = 0; j < n; ++j) {
      const A d = y[j] - p[j];
      v[0][j] = m[j] ? A(1) : A(0);
      v[1][j] = keep_if(m[j] != 0, d * d);
      v[2][j] = math::poison(y[j]) + math::poison(p[j]);
    }
  }
};

// M, S, S M and the poison of S, for a strip.
template <class T>
struct SoftDiceStrip {
  using A = acc_t<T>;
  const T* soft;
  const bool* mask;

  void operator()(index_t i, int n, A (*v)[kStrip]) const {
    A sb[kStrip];
    const A* s = strip_values<A>(soft + i, n, sb);
    const unsigned char* m = as_bytes(mask + i);
    for (int j = 0; j < n; ++j) {
      v[0][j] = m[j] ? A(1) : A(0);
      v[1][j] = s[j];
      v[2][j] = keep_if(m[j] != 0, s[j]);
      v[3][j] = math::poison(s[j]);
    }
  }
};

// sums[s].fg, .sq_err, .poison of sample s for masked_mse(pred, target, mask).
template <class T, class Exec = ThreadExecutor>
void masked_mse_sums(const T* pred, const T* target, const bool* mask, index_t samples, index_t voxels,
                     LossSums* sums, const Exec& exec = Exec{}) {
  check_batch(samples, voxels, "pred");
  using A = acc_t<T>;
  std::vector<double> raw(static_cast<size_t>(samples) * 3);
  per_sample_sums<A, 3>(
      samples, voxels, exec, [&](index_t) { return MaskedMseStrip<T>{pred, target, mask}; }, raw.data());
  for (index_t s = 0; s < samples; ++s) {
    sums[s] = LossSums{};
    sums[s].fg = raw[s * 3];
    sums[s].sq_err = raw[s * 3 + 1];
    sums[s].poison = raw[s * 3 + 2];
  }
}

// sums[s].fg, .soft, .soft_fg, .poison of sample s for soft_dice(soft, mask).
template <class T, class Exec = ThreadExecutor>
void soft_dice_sums(const T* soft, const bool* mask, index_t samples, index_t voxels, LossSums* sums,
                    const Exec& exec = Exec{}) {
  check_batch(samples, voxels, "soft");
  using A = acc_t<T>;
  std::vector<double> raw(static_cast<size_t>(samples) * 4);
  per_sample_sums<A, 4>(
      samples, voxels, exec, [&](index_t) { return SoftDiceStrip<T>{soft, mask}; }, raw.data());
  for (index_t s = 0; s < samples; ++s) {
    sums[s] = LossSums{};
    sums[s].fg = raw[s * 4];
    sums[s].soft = raw[s * 4 + 1];
    sums[s].soft_fg = raw[s * 4 + 2];
    sums[s].poison = raw[s * 4 + 3];
  }
}

// masked_mse forward: out holds loss_output_size(reduction, samples)
// values, sums[s] sample s's sums (the backward's state).
template <class T, class Out, class Exec = ThreadExecutor>
void masked_mse(const T* pred, const T* target, const bool* mask, index_t samples, index_t voxels,
                MseNormalization mse_normalization, Reduction reduction, Out* out, LossSums* sums,
                const Exec& exec = Exec{}) {
  masked_mse_sums(pred, target, mask, samples, voxels, sums, exec);
  finalize_losses(sums, samples, voxels, term_options(mse_normalization, reduction, 0.0), out, Term::kMmse);
}

// soft_dice forward: out and sums as for masked_mse.
template <class T, class Out, class Exec = ThreadExecutor>
void soft_dice(const T* soft, const bool* mask, index_t samples, index_t voxels, double eps, Reduction reduction,
               Out* out, LossSums* sums, const Exec& exec = Exec{}) {
  check_eps(eps);
  soft_dice_sums(soft, mask, samples, voxels, sums, exec);
  finalize_losses(sums, samples, voxels, term_options(MseNormalization::kForeground, reduction, eps), out,
                  Term::kDice);
}

// dL/dP = c M (P - Y) and dL/dY = -dL/dP for a strip (c: the sample's c_mse).
// M multiplies rather than selects, so a non-finite P or Y gives NaN there.
template <class T, bool kTarget>
struct MaskedMseGradStrip {
  using A = acc_t<T>;
  const T* pred;
  const T* target;
  const bool* mask;
  T* grad_pred;
  T* grad_target;
  A c;

  void operator()(index_t i, int n) const {
    const A c_ = c;  // a local: the stores below cannot change it
    A pb[kStrip], yb[kStrip], g[kStrip];
    const A* p = strip_values<A>(pred + i, n, pb);
    const A* y = strip_values<A>(target + i, n, yb);
    const unsigned char* m = as_bytes(mask + i);
    for (int j = 0; j < n; ++j) g[j] = keep_if(m[j] != 0, c_) * (p[j] - y[j]);
    for (int j = 0; j < n; ++j) grad_pred[i + j] = static_cast<T>(g[j]);
    if constexpr (kTarget)
      for (int j = 0; j < n; ++j) grad_target[i + j] = static_cast<T>(-g[j]);
  }
};

// dL/dS = c_soft + c_soft_fg M for a strip.
template <class T>
struct SoftDiceGradStrip {
  using A = acc_t<T>;
  const bool* mask;
  T* grad_soft;
  A c_soft, c_soft_fg;

  void operator()(index_t i, int n) const {
    const A c_soft_ = c_soft, c_soft_fg_ = c_soft_fg;
    const unsigned char* m = as_bytes(mask + i);
    for (int j = 0; j < n; ++j) grad_soft[i + j] = static_cast<T>(c_soft_ + keep_if(m[j] != 0, c_soft_fg_));
  }
};

// Per-sample coefficients of a term op's gradient (term_gradient_coefficients).
template <class G>
std::vector<GradCoefficients> coefficients(const G* grad_out, index_t samples, index_t voxels, const LossSums* sums,
                                           Reduction reduction, const TermGradParams& params) {
  std::vector<GradCoefficients> coef(static_cast<size_t>(samples));
  term_gradient_coefficients(sums, samples, voxels, reduction, params, grad_out, coef.data());
  return coef;
}

// Backward of masked_mse: grad_out holds loss_output_size(reduction,
// samples) upstream gradients, sums the forward's; writes grad_pred, and
// grad_target unless it is null.
template <class T, class G, class Exec = ThreadExecutor>
void masked_mse_backward(const G* grad_out, const T* pred, const T* target, const bool* mask, index_t samples,
                         index_t voxels, const LossSums* sums, MseNormalization mse_normalization,
                         Reduction reduction, T* grad_pred, T* grad_target, const Exec& exec = Exec{}) {
  check_batch(samples, voxels, "pred");
  using A = acc_t<T>;
  const auto coef =
      coefficients(grad_out, samples, voxels, sums, reduction, TermGradParams::masked_mse(mse_normalization));
  const auto run = [&](auto target_tag) {
    constexpr bool kTarget = decltype(target_tag)::value;
    backward_strips(samples, voxels, exec, [&](index_t s) {
      return MaskedMseGradStrip<T, kTarget>{pred, target, mask, grad_pred, grad_target,
                                            static_cast<A>(coef[s].c_mse)};
    });
  };
  if (grad_target)
    run(std::true_type{});
  else
    run(std::false_type{});
}

// Backward of soft_dice: grad_out and sums as for masked_mse_backward.
template <class T, class G, class Exec = ThreadExecutor>
void soft_dice_backward(const G* grad_out, const bool* mask, index_t samples, index_t voxels, const LossSums* sums,
                        double eps, Reduction reduction, T* grad_soft, const Exec& exec = Exec{}) {
  check_batch(samples, voxels, "soft");
  check_eps(eps);
  using A = acc_t<T>;
  const auto coef = coefficients(grad_out, samples, voxels, sums, reduction, TermGradParams::soft_dice(eps));
  backward_strips(samples, voxels, exec, [&](index_t s) {
    return SoftDiceGradStrip<T>{mask, grad_soft, static_cast<A>(coef[s].c_soft), static_cast<A>(coef[s].c_soft_fg)};
  });
}

}  // namespace spotlight::cpu
