// The two loss terms as separate reductions (the ops masked_mse and
// soft_dice), for callers that build their own mask or soft mask.
#pragma once

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

}  // namespace spotlight::cpu
