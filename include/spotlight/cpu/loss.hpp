// The fused Spotlight loss on the CPU (SPEC sections 2-7).
// Forward: one pass over pred and target gives every sample's LossSums
// (after the Otsu passes over the target when no threshold is given).
// Backward: one pass that reads pred and target and writes the gradient.
#pragma once

#include <vector>

#include "spotlight/core/config.hpp"
#include "spotlight/core/loss_terms.hpp"
#include "spotlight/core/math.hpp"
#include "spotlight/core/options.hpp"
#include "spotlight/cpu/executor.hpp"
#include "spotlight/cpu/otsu.hpp"
#include "spotlight/cpu/partition.hpp"

namespace spotlight::cpu {

// sums[s] = the LossSums of sample s against its threshold thresholds[s].
template <class T, class Exec = ThreadExecutor>
void loss_sums(const T* pred, const T* target, index_t samples, index_t voxels, const acc_t<T>* thresholds,
               double k, LossSums* sums, const Exec& exec = Exec{}) {
  using A = acc_t<T>;
  std::vector<double> raw(static_cast<size_t>(samples) * LossSums::kFields);
  const A kk = static_cast<A>(k);
  per_sample_sums<A, LossSums::kFields>(
      samples, voxels, exec,
      [&](index_t s) {
        const A t = thresholds[s];
        return [=](index_t i, A* v) {
          const A y = static_cast<A>(target[i]), p = static_cast<A>(pred[i]);
          const bool m = y > t;
          const A d = y - p;
          const A soft = math::soft_mask(p, t, kk);
          v[0] = m ? A(1) : A(0);
          v[1] = m ? d * d : A(0);
          v[2] = soft;
          v[3] = m ? soft : A(0);
          v[4] = math::poison(y) + math::poison(p);
        };
      },
      raw.data());
  for (index_t s = 0; s < samples; ++s) {
    const double* r = raw.data() + s * LossSums::kFields;
    sums[s] = LossSums{r[0], r[1], r[2], r[3], r[4]};
  }
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
  check(samples > 0 && voxels > 0, "pred and target must hold at least one sample of at least one voxel");
  LossForwardState<acc_t<T>> st;
  st.thresholds.resize(static_cast<size_t>(samples));
  if (given_thresholds) {
    std::copy_n(given_thresholds, samples, st.thresholds.begin());
  } else {
    otsu_thresholds(target, samples, voxels, opt.bins, st.thresholds.data(), exec);
  }
  st.sums.resize(static_cast<size_t>(samples));
  loss_sums(pred, target, samples, voxels, st.thresholds.data(), opt.k, st.sums.data(), exec);
  finalize_losses(st.sums.data(), samples, voxels, opt, loss);
  return st;
}

// Gradients from per-sample coefficients (see GradCoefficients): writes
// grad_pred, and grad_target when it is not null.
template <class T, class Exec = ThreadExecutor>
void loss_backward_apply(const T* pred, const T* target, index_t samples, index_t voxels,
                         const acc_t<T>* thresholds, const GradCoefficients* coef, double k, T* grad_pred,
                         T* grad_target, const Exec& exec = Exec{}) {
  using A = acc_t<T>;
  const Partition part(samples, voxels);
  const A kk = static_cast<A>(k);
  exec(part.tasks(), [&](index_t task) {
    const index_t s = part.sample_of(task);
    const A t = thresholds[s];
    const A c_mse = static_cast<A>(coef[s].c_mse), c_fg = static_cast<A>(coef[s].c_soft_fg),
            c_all = static_cast<A>(coef[s].c_soft);
    const index_t end = part.end(task);
    if (grad_target) {
      for (index_t i = part.begin(task); i < end; ++i) {
        const A y = static_cast<A>(target[i]), p = static_cast<A>(pred[i]);
        const bool m = y > t;
        const A mse = m ? c_mse * (p - y) : A(0);
        grad_pred[i] = static_cast<T>(mse + (m ? c_all + c_fg : c_all) * math::soft_mask_grad(p, t, kk));
        grad_target[i] = static_cast<T>(-mse);
      }
    } else {
      for (index_t i = part.begin(task); i < end; ++i) {
        const A y = static_cast<A>(target[i]), p = static_cast<A>(pred[i]);
        const bool m = y > t;
        const A mse = m ? c_mse * (p - y) : A(0);
        grad_pred[i] = static_cast<T>(mse + (m ? c_all + c_fg : c_all) * math::soft_mask_grad(p, t, kk));
      }
    }
  });
}

// Backward of loss_forward: `grad_out` holds loss_output_size(...) upstream
// gradients.
template <class T, class G, class Exec = ThreadExecutor>
void loss_backward(const T* pred, const T* target, index_t samples, index_t voxels,
                   const LossForwardState<acc_t<T>>& st, const LossOptions& opt, const G* grad_out, T* grad_pred,
                   T* grad_target, const Exec& exec = Exec{}) {
  std::vector<GradCoefficients> coef(static_cast<size_t>(samples));
  gradient_coefficients(st.sums.data(), samples, voxels, opt, grad_out, coef.data());
  loss_backward_apply(pred, target, samples, voxels, st.thresholds.data(), coef.data(), opt.k, grad_pred,
                      grad_target, exec);
}

}  // namespace spotlight::cpu
