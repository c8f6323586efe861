// The tunable sigmoid op (SPEC section 3) and its backward, on the CPU.
#pragma once

#include "spotlight/core/config.hpp"
#include "spotlight/core/math.hpp"
#include "spotlight/cpu/executor.hpp"
#include "spotlight/cpu/partition.hpp"

namespace spotlight::cpu {

// out[i] = sigma_k(clamp(x[i], -1, 1)).
template <class T, class Exec = ThreadExecutor>
void tunable_sigmoid(const T* x, index_t count, double k, T* out, const Exec& exec = Exec{}) {
  using A = acc_t<T>;
  const A kk = static_cast<A>(k);
  parallel_elements(count, exec, [&](index_t i) {
    out[i] = static_cast<T>(math::clamped_tunable_sigmoid(static_cast<A>(x[i]), kk));
  });
}

// grad_x[i] = grad[i] * sigma_k'(x[i]) inside (-1, 1), 0 outside.
template <class T, class Exec = ThreadExecutor>
void tunable_sigmoid_backward(const T* grad, const T* x, index_t count, double k, T* grad_x,
                              const Exec& exec = Exec{}) {
  using A = acc_t<T>;
  const A kk = static_cast<A>(k);
  parallel_elements(count, exec, [&](index_t i) {
    grad_x[i] = static_cast<T>(static_cast<A>(grad[i]) * math::clamped_tunable_sigmoid_grad(static_cast<A>(x[i]), kk));
  });
}

}  // namespace spotlight::cpu
