// The two loss terms as separate reductions (the ops masked_mse and
// soft_dice), for callers that build their own mask or soft mask.
#pragma once

#include <vector>

#include "spotlight/core/config.hpp"
#include "spotlight/core/loss_terms.hpp"
#include "spotlight/core/math.hpp"
#include "spotlight/cpu/executor.hpp"
#include "spotlight/cpu/partition.hpp"

namespace spotlight::cpu {

// sums[s].fg, .sq_err, .poison of sample s for masked_mse(pred, target, mask).
template <class T, class Exec = ThreadExecutor>
void masked_mse_sums(const T* pred, const T* target, const bool* mask, index_t samples, index_t voxels,
                     LossSums* sums, const Exec& exec = Exec{}) {
  using A = acc_t<T>;
  std::vector<double> raw(static_cast<size_t>(samples) * 3);
  per_sample_sums<A, 3>(
      samples, voxels, exec,
      [&](index_t) {
        return by_element<A, 3>([=](index_t i, A* v) {
          const A y = static_cast<A>(target[i]), p = static_cast<A>(pred[i]);
          const bool m = mask[i];
          const A d = y - p;
          v[0] = m ? A(1) : A(0);
          v[1] = keep_if(m, d * d);
          v[2] = math::poison(y) + math::poison(p);
        });
      },
      raw.data());
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
  using A = acc_t<T>;
  std::vector<double> raw(static_cast<size_t>(samples) * 4);
  per_sample_sums<A, 4>(
      samples, voxels, exec,
      [&](index_t) {
        return by_element<A, 4>([=](index_t i, A* v) {
          const A x = static_cast<A>(soft[i]);
          const bool m = mask[i];
          v[0] = m ? A(1) : A(0);
          v[1] = x;
          v[2] = keep_if(m, x);
          v[3] = math::poison(x);
        });
      },
      raw.data());
  for (index_t s = 0; s < samples; ++s) {
    sums[s] = LossSums{};
    sums[s].fg = raw[s * 4];
    sums[s].soft = raw[s * 4 + 1];
    sums[s].soft_fg = raw[s * 4 + 2];
    sums[s].poison = raw[s * 4 + 3];
  }
}

}  // namespace spotlight::cpu
