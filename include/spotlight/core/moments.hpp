// The standard deviation of Otsu standardization (SPEC section 6), written
// once for host and device: the CPU and CUDA kernels differ only in how they
// cut a sample into chunks and in what order they merge the chunks.
//
// Scale first, then moments. Once the range pass knows a sample's largest
// magnitude, every value is multiplied by a power of two `scale` that brings
// it to about [0.5, 1): exact (a change of exponent) while the product stays
// a normal number, so squares can neither overflow (float data at 1e20,
// double data at 1e160) nor underflow (denormal data). Each chunk's squared
// deviations are taken from the chunk's mean (known from the range pass, or
// from a first read of the chunk when that sum overflowed), corrected by the
// sum of deviations, and chunks are merged with Chan's formula: no
// cancellation on offset data. On data that needs no scaling the results
// are those of the unscaled computation, bit for bit: a power of two
// commutes with every rounding.
//
// A sample's result is kept scaled (StandardizeStats): its std may be a
// number whose inverse overflows (denormal data) while the standardized
// values (x * scale - t * scale) * inv_std are ordinary numbers.
#pragma once

#include <cmath>

#include "spotlight/core/config.hpp"

namespace spotlight::moments {

// 2^e as a double, for e in [-1022, 1023].
SPOTLIGHT_HD double pow2(int e) { return ldexp(1.0, e); }

// The power of two that brings max(|lo|, |hi|) into [0.5, 1), kept a normal
// number of A (so the scaled maximum lies in [2^-22, 4) for float at the
// ends of its range, [2^-51, 4) for double); 1 for a range that is empty,
// all zero or not finite (a sample holding Inf or NaN: its result is NaN
// whatever the scale).
template <class A>
SPOTLIGHT_HD A scale_of_range(A lo, A hi) {
  const double a = lo < A(0) ? -static_cast<double>(lo) : static_cast<double>(lo);
  const double b = hi < A(0) ? -static_cast<double>(hi) : static_cast<double>(hi);
  const double m = a > b ? a : b;
  if (!(m > 0.0) || !(m <= 1.7976931348623157e308)) return A(1);
  int e = 0;
  frexp(m, &e);  // m = f * 2^e, f in [0.5, 1)
  constexpr int kMinExponent = sizeof(A) == 4 ? -126 : -1022;  // smallest normal 2^k
  constexpr int kMaxExponent = sizeof(A) == 4 ? 127 : 1023;    // largest power of two
  int p = -e;
  p = p < kMinExponent ? kMinExponent : (p > kMaxExponent ? kMaxExponent : p);
  return static_cast<A>(pow2(p));
}

// Count, mean and sum of squared deviations from the mean of a set of
// scaled values. add() merges another set (Chan's formula); merging chunks
// in a fixed order or tree gives the same bits run to run.
struct Moments {
  double count = 0, mean = 0, m2 = 0;

  SPOTLIGHT_HD void add(const Moments& o) {
    if (o.count == 0) return;
    if (count == 0) {
      *this = o;
      return;
    }
    const double total = count + o.count;
    const double delta = o.mean - mean;
    mean += delta * o.count / total;
    m2 += o.m2 + delta * delta * count * o.count / total;
    count = total;
  }
};

// The moments of a chunk of `count` values whose deviations d = v - shift
// from a shift near their mean sum to `dev` and their squares to `dev_sq`:
// sum (v - mean)^2 = sum d^2 - (sum d)^2 / count.
SPOTLIGHT_HD Moments chunk_moments(double count, double shift, double dev, double dev_sq) {
  if (count == 0) return Moments{};
  return Moments{count, shift + dev / count, dev_sq - dev * dev / count};
}

// The shift of a chunk's deviations, in scaled units: the chunk's mean as
// the range pass summed it, times the scale; NaN when that mean is not
// finite (the sum overflowed, or the chunk holds Inf or NaN): the kernel then
// sums the chunk's scaled values first.
template <class A>
SPOTLIGHT_HD double scaled_mean(double mean, A scale) {
  const double m = mean * static_cast<double>(scale);
  return m - m == 0.0 ? m : static_cast<double>(NAN);
}

// What the forward keeps of a sample for the elementwise pass and the
// backward, all in the accumulation type: the power of two `scale`, the mean
// of the scaled values and the inverse of their std (ddof 0). A constant
// sample (std 0) divides by 1: scale 1, inv_std 1. A sample holding NaN or
// Inf has NaN mean and inv_std.
template <class A>
struct StandardizeStats {
  A scale = 1, mean = 0, inv_std = 1;
};

template <class A>
SPOTLIGHT_HD StandardizeStats<A> finish(const Moments& m, A scale) {
  const double var = m.count > 0 ? m.m2 / m.count : 0.0;
  const double sd = sqrt(var > 0.0 ? var : 0.0);  // maps NaN to 0: poison is checked below
  if (m.mean - m.mean != 0.0 || m.m2 - m.m2 != 0.0)
    return StandardizeStats<A>{scale, static_cast<A>(NAN), static_cast<A>(NAN)};
  if (sd > 0.0) return StandardizeStats<A>{scale, static_cast<A>(m.mean), static_cast<A>(1.0 / sd)};
  return StandardizeStats<A>{A(1), static_cast<A>(m.mean / static_cast<double>(scale)), A(1)};
}

// y = (x - T) / std, as (x * scale - T * scale) * inv_std; `t_scaled` is
// T * scale. The products by the power of two are exact, so a contracted
// multiply-add gives the same bits.
template <class A>
SPOTLIGHT_HD A standardized(A x, A t_scaled, const StandardizeStats<A>& st) {
  return (x * st.scale - t_scaled) * st.inv_std;
}

// The backward with T held constant (SPEC 6, docs/design.md):
//   dL/dx_j = g_j / s - (sum_i g_i (x_i - T)) (x_j - mean) / (n s^3)
//           = (g_j - z_j * k) / s,  z_j = (x_j - mean) / s,  k = sum_i g_i y_i / n,
// in scaled units: (g_j - z_j * k) * inv_std * scale. `k` comes from one
// reduction pass, sum of g_i * standardized(x_i); the last product by the
// power of two is exact unless the true gradient overflows.
template <class A>
SPOTLIGHT_HD A standardize_grad(A g, A x, A k, const StandardizeStats<A>& st) {
  const A z = (x * st.scale - st.mean) * st.inv_std;
  return (g - z * k) * st.inv_std * st.scale;
}

}  // namespace spotlight::moments
