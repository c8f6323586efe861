// The tunable sigmoid op (SPEC section 3), its backward and the backward's
// derivative, on the CPU, in strips (see partition.hpp: the clamp or the
// select and the division in separate loops, which the compiler vectorises).
#pragma once

#include <type_traits>

#include "spotlight/core/config.hpp"
#include "spotlight/core/options.hpp"
#include "spotlight/core/math.hpp"
#include "spotlight/cpu/executor.hpp"
#include "spotlight/cpu/partition.hpp"

namespace spotlight::cpu {

// out[i] = sigma_k(clamp(x[i], -1, 1)).
template <class T, class Exec = ThreadExecutor>
void tunable_sigmoid(const T* x, index_t count, double k, T* out, const Exec& exec = Exec{}) {
  check_k(k);
  using A = acc_t<T>;
  const A kk = static_cast<A>(k);
  parallel_strips(count, exec, [&](index_t i, int n) {
    const A k_ = kk;  // a local: the stores below cannot change it
    A xb[kStrip], c[kStrip];
    const A* v = strip_values<A>(x + i, n, xb);
    // math::clamped_tunable_sigmoid, its clamp and its division in two loops.
    for (int j = 0; j < n; ++j) c[j] = math::clamp_unit(v[j]);
    for (int j = 0; j < n; ++j) out[i + j] = static_cast<T>(math::tunable_sigmoid(c[j], k_));
  });
}

// grad_x[i] = grad[i] * sigma_k'(x[i]) inside (-1, 1), 0 outside.
template <class T, class Exec = ThreadExecutor>
void tunable_sigmoid_backward(const T* grad, const T* x, index_t count, double k, T* grad_x,
                              const Exec& exec = Exec{}) {
  check_k(k);
  using A = acc_t<T>;
  const A kk = static_cast<A>(k);
  parallel_strips(count, exec, [&](index_t i, int n) {
    const A k_ = kk;
    A xb[kStrip], gb[kStrip], d[kStrip];
    const A* v = strip_values<A>(x + i, n, xb);
    const A* g = strip_values<A>(grad + i, n, gb);
    // math::clamped_tunable_sigmoid_grad, its division and its select in two loops.
    for (int j = 0; j < n; ++j) d[j] = math::tunable_sigmoid_grad(v[j], k_);
    for (int j = 0; j < n; ++j) {
      const bool inside = (v[j] > A(-1)) & (v[j] < A(1));
      grad_x[i + j] = static_cast<T>(g[j] * keep_if(inside, d[j]));
    }
  });
}

// The backward's derivative in x (the sigmoid's second derivative):
// grad_x[i] = grad_out[i] * grad[i] * sigma_k''(x[i]) inside (-1, 1), 0 outside.
template <class T, class Exec = ThreadExecutor>
void tunable_sigmoid_double_backward(const T* grad_out, const T* grad, const T* x, index_t count, double k,
                                     T* grad_x, const Exec& exec = Exec{}) {
  check_k(k);
  using A = acc_t<T>;
  const A kk = static_cast<A>(k);
  parallel_strips(count, exec, [&](index_t i, int n) {
    const A k_ = kk;
    A xb[kStrip], gb[kStrip], ob[kStrip], d[kStrip];
    const A* v = strip_values<A>(x + i, n, xb);
    const A* g = strip_values<A>(grad + i, n, gb);
    const A* o = strip_values<A>(grad_out + i, n, ob);
    // math::clamped_tunable_sigmoid_grad2, its division and its select in two loops.
    for (int j = 0; j < n; ++j) d[j] = math::tunable_sigmoid_grad2(v[j], k_);
    for (int j = 0; j < n; ++j) {
      const bool inside = (v[j] > A(-1)) & (v[j] < A(1));
      grad_x[i + j] = static_cast<T>(o[j] * g[j] * keep_if(inside, d[j]));
    }
  });
}

}  // namespace spotlight::cpu
