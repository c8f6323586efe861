// Independent float64 references for the header tests: straightforward
// loops over the SPEC formulas, sharing no code with the kernels.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

namespace ref {

inline double otsu(const std::vector<double>& v, int bins) {
  const double lo = *std::min_element(v.begin(), v.end()), hi = *std::max_element(v.begin(), v.end());
  if (lo == hi) return lo;
  std::vector<double> counts(bins, 0.0), centres(bins);
  for (double x : v) counts[std::min(bins - 1, static_cast<int>(std::floor((x - lo) * bins / (hi - lo))))] += 1;
  for (int i = 0; i < bins; ++i) centres[i] = lo + (i + 0.5) * (hi - lo) / bins;
  double best = -1;
  int best_i = 0;
  for (int i = 0; i + 1 < bins; ++i) {
    double w1 = 0, s1 = 0, w2 = 0, s2 = 0;
    for (int j = 0; j <= i; ++j) w1 += counts[j], s1 += counts[j] * centres[j];
    for (int j = i + 1; j < bins; ++j) w2 += counts[j], s2 += counts[j] * centres[j];
    if (w1 == 0 || w2 == 0) continue;
    const double c = w1 * w2 * std::pow(s1 / w1 - s2 / w2, 2);
    if (c > best) best = c, best_i = i;
  }
  return centres[best_i];
}

inline double sigmoid(double x, double k) {
  x = std::clamp(x, -1.0, 1.0);
  return (x - k * x) / (k - 2 * k * std::abs(x) + 1);
}

struct Terms {
  double fg = 0, se = 0, soft = 0, soft_fg = 0;
};

inline Terms terms(const double* p, const double* y, std::int64_t n, double t, double k) {
  Terms r;
  for (std::int64_t i = 0; i < n; ++i) {
    const bool m = y[i] > t;
    const double s = 0.5 * (1 + sigmoid(p[i] - t, k));
    r.fg += m;
    r.se += m ? (y[i] - p[i]) * (y[i] - p[i]) : 0;
    r.soft += s;
    r.soft_fg += m ? s : 0;
  }
  return r;
}

inline double loss_of(const Terms& r, double voxels, double lam, double eps, bool fg_norm) {
  const double d = fg_norm ? r.fg : voxels;
  const double mmse = d > 0 ? r.se / d : 0;
  const double dice = 1 - 2 * r.soft_fg / (r.soft + r.fg + eps);
  return lam * mmse + (1 - lam) * dice;
}

// The published variants (SPEC section 11), per pool, from their formulas.
struct Variant {
  int soft_mask = 0;  // 0 clamped, 1 unclamped (authors), 2 VisCy
  bool greater_equal = false, squared = false, viscy_pools = false, fg_norm = true;
  const bool* mask = nullptr;
  bool plain = false;  // the MSE term over every voxel of the pool
};

inline double variant_soft(double x, double k, int soft_mask) {
  if (soft_mask == 0) return 0.5 * (1 + sigmoid(x, k));
  const double raw = (x - k * x) / (k - 2 * k * std::abs(x) + 1);
  return soft_mask == 1 ? 0.5 * (1 + raw) : std::clamp(raw, 0.0, 1.0);
}

struct PoolValue {
  double mse = 0, dice = 0, counts = 1;  // counts: 0 for a Dice that VisCy's policy leaves out
};

// One pool: elements [begin, end) of p, y, threshold t.
inline PoolValue variant_pool(const double* p, const double* y, std::int64_t begin, std::int64_t end, double t,
                              double k, double eps, const Variant& v) {
  double fg = 0, se = 0, se_all = 0, soft = 0, soft_fg = 0;
  for (std::int64_t i = begin; i < end; ++i) {
    const bool m = v.mask ? v.mask[i] : (v.greater_equal ? y[i] >= t : y[i] > t);
    const double s = variant_soft(p[i] - t, k, v.soft_mask);
    const double e = (y[i] - p[i]) * (y[i] - p[i]);
    fg += m;
    se += m ? e : 0;
    se_all += e;
    soft += v.squared ? s * s : s;
    soft_fg += m ? s : 0;
  }
  const double n = static_cast<double>(end - begin), d = v.fg_norm ? fg : n;
  PoolValue r;
  if (!v.viscy_pools) {
    r.mse = d > 0 ? se / d : 0;
  } else {
    r.mse = fg > 0 ? se / (d + eps) : se_all / n;
    r.counts = (fg > 0 && fg < n) ? 1 : 0;
  }
  if (v.plain) r.mse = se_all / n;
  r.dice = 1 - 2 * soft_fg / (soft + fg + eps);
  return r;
}

inline std::vector<double> random_volume(std::int64_t n, unsigned seed, double fg_fraction = 0.1) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> noise(0.0, 0.1);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<double> v(static_cast<size_t>(n));
  for (auto& x : v) x = (u(rng) < fg_fraction ? 2.0 : 0.0) + noise(rng);
  return v;
}

}  // namespace ref
