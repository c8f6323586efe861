// Per-element and per-histogram math of SPEC sections 1, 3, 4 and 7, written
// once for host and device. Every kernel, CPU or CUDA, calls these.
#pragma once

#include "spotlight/core/config.hpp"

namespace spotlight::math {

// clamp to [-1, 1] that lets NaN through (fmin/fmax would swallow it).
template <class A>
SPOTLIGHT_HD A clamp_unit(A x) {
  return x < A(-1) ? A(-1) : (x > A(1) ? A(1) : x);
}

template <class A>
SPOTLIGHT_HD A abs_value(A x) {
  return x < A(0) ? -x : x;
}

// Normalized tunable sigmoid sigma_k(x) = (x - k x) / (k - 2 k |x| + 1) on
// [-1, 1]. For k in (-1, 1) the denominator stays >= 1 - |k| > 0.
template <class A>
SPOTLIGHT_HD A tunable_sigmoid(A x, A k) {
  return (x - k * x) / (k - A(2) * k * abs_value(x) + A(1));
}

// d sigma_k / dx = (1 - k^2) / (k - 2 k |x| + 1)^2.
template <class A>
SPOTLIGHT_HD A tunable_sigmoid_grad(A x, A k) {
  const A den = k - A(2) * k * abs_value(x) + A(1);
  return (A(1) - k * k) / (den * den);
}

// d^2 sigma_k / dx^2 = 4 k (1 - k^2) sign(x) / (k - 2 k |x| + 1)^3 (the
// derivative of (1 - k^2) den^-2 with d den/dx = -2 k sign(x)); 0 at x = 0,
// where |x| has its kink.
template <class A>
SPOTLIGHT_HD A tunable_sigmoid_grad2(A x, A k) {
  const A den = k - A(2) * k * abs_value(x) + A(1);
  const A sign = x > A(0) ? A(1) : (x < A(0) ? A(-1) : A(0));
  return A(4) * k * (A(1) - k * k) * sign / (den * den * den);
}

// sigma_k(clamp(x, -1, 1)): the op `tunable_sigmoid`.
template <class A>
SPOTLIGHT_HD A clamped_tunable_sigmoid(A x, A k) {
  return tunable_sigmoid(clamp_unit(x), k);
}

// Its derivative: the sigmoid's inside the open interval (-1, 1), 0 outside.
template <class A>
SPOTLIGHT_HD A clamped_tunable_sigmoid_grad(A x, A k) {
  return (x > A(-1) && x < A(1)) ? tunable_sigmoid_grad(x, k) : A(0);
}

// Its second derivative: the sigmoid's inside (-1, 1), 0 outside.
template <class A>
SPOTLIGHT_HD A clamped_tunable_sigmoid_grad2(A x, A k) {
  return (x > A(-1) && x < A(1)) ? tunable_sigmoid_grad2(x, k) : A(0);
}

// Soft mask S = (1 + sigma_k(clamp(p - t))) / 2, in [0, 1], 0.5 at t.
template <class A>
SPOTLIGHT_HD A soft_mask(A p, A t, A k) {
  return A(0.5) + A(0.5) * clamped_tunable_sigmoid(p - t, k);
}

// dS/dp.
template <class A>
SPOTLIGHT_HD A soft_mask_grad(A p, A t, A k) {
  return A(0.5) * clamped_tunable_sigmoid_grad(p - t, k);
}

// The published soft masks (SPEC section 11), x = P - T, k <= 0:
// the authors' (1 + sigma_k(x)) / 2 with no clamp (from about -0.013 to
// 1.013 at k = -0.95), and its derivative everywhere;
template <class A>
SPOTLIGHT_HD A unclamped_soft_mask(A x, A k) {
  return A(0.5) + A(0.5) * tunable_sigmoid(x, k);
}
template <class A>
SPOTLIGHT_HD A unclamped_soft_mask_grad(A x, A k) {
  return A(0.5) * tunable_sigmoid_grad(x, k);
}
// VisCy's clamp(sigma_k(x), 0, 1); its derivative is the sigmoid's where the
// sigmoid lies in the open interval (0, 1), and 0 at the ends and outside (as
// torch.clamp's backward in torch 2.14; the clamped soft mask has the same rule).
template <class A>
SPOTLIGHT_HD A viscy_soft_mask(A x, A k) {
  const A s = tunable_sigmoid(x, k);
  return s < A(0) ? A(0) : (s > A(1) ? A(1) : s);
}
template <class A>
SPOTLIGHT_HD A viscy_soft_mask_grad(A x, A k) {
  const A s = tunable_sigmoid(x, k);
  return (s > A(0) && s < A(1)) ? tunable_sigmoid_grad(x, k) : A(0);
}

// 0 for a finite value, NaN for NaN or +-Inf: summed into a "poison"
// accumulator, it turns a pool's loss into NaN with no branch and no sync.
template <class A>
SPOTLIGHT_HD A poison(A x) {
  return x - x;
}

// Whether hi - lo overflows double: a sample spanning more than DBL_MAX,
// such as [-1e308, 1e308] (possible for float64 input only: float ranges are
// exact in double). The histogram and bin-centre math below then run on
// halved values: v / 2 and lo / 2 are exact there (a range that wide has both
// ends far from the denormals), and every rounding commutes with a factor of
// two, so the bins and centres are those of double arithmetic with an
// unbounded exponent. Ranges that fit take the plain formulas, bit for bit.
SPOTLIGHT_HD bool wide_range(double lo, double hi) { return hi - lo > 1.7976931348623157e308; }

// v - lo, halved on a wide range (see wide_range).
SPOTLIGHT_HD double range_offset(double v, double lo, bool wide) { return wide ? v * 0.5 - lo * 0.5 : v - lo; }

// Histogram scale bins / (hi - lo), in double (bins / (hi/2 - lo/2) on a
// wide range, to multiply range_offset); 0 for a constant sample (every value
// in bin 0). Infinite when the range is below bins / DBL_MAX (double
// denormals): histogram_bin then divides instead.
SPOTLIGHT_HD double histogram_scale(double lo, double hi, int bins) {
  return hi > lo ? bins / range_offset(hi, lo, wide_range(lo, hi)) : 0.0;
}

// Otsu histogram bin of v for the range [lo, hi]: floor((v - lo) * bins /
// (hi - lo)), with the maximum in the last bin. In double whatever the input
// type: exact for float inputs, and no float overflow of the scale on tiny
// ranges. NaN goes to bin 0 (its sample's threshold is NaN anyway).
SPOTLIGHT_HD int histogram_bin(double v, double lo, double hi, double scale, int bins) {
  const double d = range_offset(v, lo, wide_range(lo, hi));
  const double f = scale <= 1.7976931348623157e308 ? d * scale : d / (hi - lo) * bins;
  if (f >= bins) return bins - 1;
  return f > 0 ? static_cast<int>(f) : 0;
}

// The centre of bin i of [lo, hi] with `bins` bins, lo + (i + 0.5) * width,
// width = (hi - lo) / bins; on a wide range, twice the centre of the halved
// range (see wide_range), which is finite. The kernels call exact_bin_centre
// (cpu/otsu.hpp, cuda/otsu.cuh), these operations with no contraction.
template <class A>
SPOTLIGHT_HD A bin_centre(A lo, A hi, int bins, int i) {
  const double l = static_cast<double>(lo), h = static_cast<double>(hi);
  if (wide_range(l, h)) return static_cast<A>(2.0 * (l * 0.5 + (i + 0.5) * ((h * 0.5 - l * 0.5) / bins)));
  return static_cast<A>(l + (i + 0.5) * ((h - l) / bins));
}

// Otsu's between-class criterion w1 * w2 * (m1 - m2)^2 for the split after a
// bin, in bin-index units: the class means are shifted and scaled bin centres,
// which changes every criterion by the same factor and keeps the argmax.
// w1, w2 are voxel counts; s1, s2 are sums of count * (2 i + 1). All four are
// integers below 2^53, so exact in double.
SPOTLIGHT_HD double otsu_criterion(double w1, double s1, double w2, double s2) {
  const double d = s1 / w1 - s2 / w2;
  return w1 * w2 * (d * d);
}

// Index of the first bin i in [0, bins - 2] maximising Otsu's criterion over a
// histogram of `bins` counts (any integer type, read through `count(i)`).
// Serial; a device kernel runs it in one thread per sample or replaces it by
// a parallel scan with the same criterion.
template <class CountAt>
SPOTLIGHT_HD int otsu_bin(CountAt count, int bins) {
  double total = 0.0, total_weighted = 0.0;
  for (int i = 0; i < bins; ++i) {
    const double c = static_cast<double>(count(i));
    total += c;
    total_weighted += c * (2.0 * i + 1.0);
  }
  double w1 = 0.0, s1 = 0.0, best = -1.0;
  int best_bin = 0;
  for (int i = 0; i + 1 < bins; ++i) {
    const double c = static_cast<double>(count(i));
    w1 += c;
    s1 += c * (2.0 * i + 1.0);
    const double w2 = total - w1;
    if (w1 == 0.0 || w2 == 0.0) continue;
    const double v = otsu_criterion(w1, s1, w2, total_weighted - s1);
    if (v > best) {
      best = v;
      best_bin = i;
    }
  }
  return best_bin;
}

}  // namespace spotlight::math
