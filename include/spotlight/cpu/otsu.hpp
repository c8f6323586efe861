// Per-sample histogram Otsu threshold on the CPU (SPEC section 1):
// pass 1 finds each sample's range, pass 2 builds its histogram, then one
// serial scan of `bins` counts per sample picks the threshold.
//
// Small samples (see whole_samples) are given whole to one task, which makes
// both passes, the second from its cache; large ones are cut into chunks and
// each pass runs over all chunks of all samples. Both give the same bits:
// ranges and histogram counts do not depend on the order they are gathered in.
// The bins of float inputs are computed in float where that is provably the
// bin math::histogram_bin computes in double (see Histogram::float_bins).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <type_traits>
#include <vector>

#include "spotlight/core/config.hpp"
#include "spotlight/core/options.hpp"
#include "spotlight/core/math.hpp"
#include "spotlight/cpu/executor.hpp"
#include "spotlight/cpu/isa.hpp"
#include "spotlight/cpu/partition.hpp"

namespace spotlight::cpu {

// Range of one sample. `poison` is NaN when the sample holds NaN or Inf.
template <class A>
struct SampleRange {
  A lo = std::numeric_limits<A>::infinity();
  A hi = -std::numeric_limits<A>::infinity();
  A poison = 0;

  void add(const SampleRange& o) {
    lo = std::min(lo, o.lo);
    hi = std::max(hi, o.hi);
    poison += o.poison;
  }
};

// range_of, with or without the sum.
template <bool kSum, class T>
inline void range_lanes(const T* x, index_t begin, index_t end, SampleRange<acc_t<T>>& r, double* sum) {
  using A = acc_t<T>;
  A lo[kLanes], hi[kLanes], bad[kLanes], buf[kStrip];
  std::fill_n(lo, kLanes, r.lo);
  std::fill_n(hi, kLanes, r.hi);
  std::fill_n(bad, kLanes, A(0));
  for (index_t block = begin; block < end; block += kBlock) {
    const index_t stop = std::min(end, block + kBlock);
    A acc[kLanes] = {};
    for (index_t i = block; i < stop; i += kStrip) {
      const int n = static_cast<int>(std::min<index_t>(kStrip, stop - i));
      const A* v = strip_values<A>(x + i, n, buf);
      const int full = n / kLanes * kLanes;
      for (int j = 0; j < full; j += kLanes) {
        // Not unrolled before vectorisation: unrolled, the lanes would be
        // split into scalars, which the compiler does not put back into vectors.
        SPOTLIGHT_NO_UNROLL
        for (int l = 0; l < kLanes; ++l) {
          const A e = v[j + l];
          lo[l] = e < lo[l] ? e : lo[l];
          hi[l] = e > hi[l] ? e : hi[l];
          bad[l] += math::poison(e);
          if constexpr (kSum) acc[l] += e;
        }
      }
      for (int j = full; j < n; ++j) {
        const A e = v[j];
        lo[0] = e < lo[0] ? e : lo[0];
        hi[0] = e > hi[0] ? e : hi[0];
        bad[0] += math::poison(e);
        if constexpr (kSum) acc[0] += e;
      }
    }
    if constexpr (kSum) {
      double s = 0;
      for (int l = 0; l < kLanes; ++l) s += static_cast<double>(acc[l]);
      *sum += s;
    }
  }
  for (int l = 0; l < kLanes; ++l) r.add(SampleRange<A>{lo[l], hi[l], bad[l]});
}

// Folds the range of x[begin, end) into r, in kLanes lanes. With a non-null
// `sum`, also adds the sum of the values to *sum, in exactly the scheme of
// lane_sums (so that one pass gives the range and the mean).
template <class T>
inline void range_of(const T* x, index_t begin, index_t end, SampleRange<acc_t<T>>& r, double* sum = nullptr) {
  if (sum)
    range_lanes<true>(x, begin, end, r, sum);
  else
    range_lanes<false>(x, begin, end, r, nullptr);
}

// The histogram of a sample over its range [lo, hi]. Counts are 32-bit,
// kept for up to 4096 bins in kSub interleaved sub-histograms, count u of bin
// b at b * kSub + u, element j of a strip counting in u = j % kSub: runs of
// values in one bin, common in a microscopy background, then do not wait on
// the previous increment of the same counter.
class Histogram {
 public:
  static constexpr int kSub = 8;
  static constexpr int kMaxSubBins = 4096;

  template <class A>
  Histogram(const SampleRange<A>& r, int bins)
      : lo_(r.lo), hi_(r.hi), scale_(math::histogram_scale(lo_, hi_, bins)), bins_(bins),
        sub_(bins <= kMaxSubBins ? kSub : 1), counts_(static_cast<size_t>(bins) * sub_, 0u) {
    // float_bins needs finite values in [lo, hi] (the range of a sample with
    // no poison: every value is finite), a finite float hi - lo, a normal
    // float scale and few bins.
    const float scale32 = static_cast<float>(scale_);
    float_path_ = r.poison == A(0) && bins <= (1 << 16) &&
                  std::isfinite(static_cast<float>(hi_) - static_cast<float>(lo_)) &&
                  scale32 >= std::numeric_limits<float>::min() && scale32 <= std::numeric_limits<float>::max();
  }

  // Counts the n <= kStrip values v[0 .. n).
  template <class A>
  void add(const A* v, int n) {
    std::uint32_t at[kStrip];  // bin * sub_
    std::uint32_t* counts = counts_.data();
    if (sub_ != kSub) {
      bins_of<1>(v, n, at);
      for (int j = 0; j < n; ++j) ++counts[at[j]];
      return;
    }
    bins_of<kSub>(v, n, at);
    int j = 0;
    // The index widened before u is added: then u is the displacement of the
    // increment's address, and an increment is one load and one add to memory.
    for (; j + kSub <= n; j += kSub)
      for (int u = 0; u < kSub; ++u) ++counts[std::size_t{at[j + u]} + u];
    for (; j < n; ++j) ++counts[at[j]];
  }

  // Adds the counts to hist[0 .. bins).
  template <class C>
  void add_to(C* hist) const {
    for (int b = 0; b < bins_; ++b) {
      std::uint32_t c = 0;
      for (std::uint32_t u = 0; u < sub_; ++u) c += counts_[static_cast<size_t>(b) * sub_ + u];
      hist[b] += static_cast<C>(c);
    }
  }

 private:
  // at[j] = kMul * math::histogram_bin(v[j], lo, hi, scale, bins) for j < n
  // (kMul = sub_, a constant: a shift, not a multiplication, per vector).
  template <std::uint32_t kMul, class A>
  void bins_of(const A* v, int n, std::uint32_t* at) const {
    if constexpr (std::is_same_v<A, float>) {
      if (float_path_ && float_bins<kMul>(v, n, at)) {
        for (int j = 0; j < n; ++j)
          if (near_edge(v[j])) at[j] = exact_bin(v[j]) * kMul;
      }
      if (float_path_) return;
    }
    if (scale_ <= std::numeric_limits<double>::max()) {
      // math::histogram_bin for a finite scale, its two clamps done in double
      // before the conversion: the same bins, in a loop that vectorises.
      if (math::wide_range(lo_, hi_))
        scaled_bins<true, kMul>(v, n, at);
      else
        scaled_bins<false, kMul>(v, n, at);
    } else {  // a range of double denormals
      for (int j = 0; j < n; ++j) at[j] = exact_bin(v[j]) * kMul;
    }
  }

  // The loop of bins_of for a finite scale; with kWide, a range wider than
  // DBL_MAX, on halved values (see math::wide_range: exact, and
  // math::histogram_scale has then doubled the scale to match).
  template <bool kWide, std::uint32_t kMul, class A>
  void scaled_bins(const A* v, int n, std::uint32_t* at) const {
    constexpr double half = kWide ? 0.5 : 1.0;
    const double lo = lo_ * half, scale = scale_, top = bins_ - 1, bins = bins_;
    for (int j = 0; j < n; ++j) {
      const double f = (static_cast<double>(v[j]) * half - lo) * scale;
      const double c = f > 0 ? f : 0.0;  // NaN goes to bin 0
      at[j] = static_cast<std::uint32_t>(f >= bins ? top : c) * kMul;
    }
  }

  template <class A>
  std::uint32_t exact_bin(A v) const {
    return static_cast<std::uint32_t>(math::histogram_bin(static_cast<double>(v), lo_, hi_, scale_, bins_));
  }

  // Float inputs: the bins in float arithmetic, F = (v - lo) * scale with
  // v - lo, the scale and the product each rounded to float, against the
  // exact D = (v - lo) * scale of math::histogram_bin (v - lo is exact in
  // double, then one rounding). The three float roundings put F within
  // 3 * 2^-24 * D < bins * 2^-22 of D, so wherever the fraction of F is at
  // least eps = bins * 2^-21 away from 0 and from 1, floor(F) = floor(D) and
  // both lie in [0, bins). Elsewhere (a value on or near a bin edge, the
  // minimum, the maximum) near_edge is true and the bin is computed in double.
  // As every value is finite and in [lo, hi] (see the constructor), F lies in
  // [0, bins + bins * 2^-22]: no clamp is needed, and at[j] is out of range
  // only for a value near the maximum, which is near an edge. Returns whether
  // any value of the strip is near an edge.
  template <std::uint32_t kMul>
  bool float_bins(const float* __restrict v, int n, std::uint32_t* __restrict at) const {
    int any = 0;
    for (int j = 0; j < n; ++j) {
      const float f = float_position(v[j]);
      const int b = static_cast<int>(f);
      any += near_integer(f, b);
      at[j] = static_cast<std::uint32_t>(b) * kMul;
    }
    return any != 0;
  }

  float float_position(float v) const {
    return (v - static_cast<float>(lo_)) * static_cast<float>(scale_);
  }

  // Whether the fraction f - b of f is within eps of 0 or 1, as
  // |frac - 1/2| > 1/2 - eps: one comparison, exact but for an ulp of 1/2,
  // far inside the margin of eps.
  int near_integer(float f, int b) const {
    return std::fabs(f - static_cast<float>(b) - 0.5f) > 0.5f - static_cast<float>(bins_) * 0x1p-21f;
  }

  bool near_edge(float v) const {
    const float f = float_position(v);
    return near_integer(f, static_cast<int>(f));
  }

  double lo_, hi_, scale_;
  int bins_;
  bool float_path_ = false;
  std::uint32_t sub_;  // kSub or 1
  std::vector<std::uint32_t> counts_;
};

// Counts x[begin, end) into h.
template <class T>
inline void histogram_of(const T* x, index_t begin, index_t end, Histogram& h) {
  acc_t<T> buf[kStrip];
  for (index_t i = begin; i < end; i += kStrip)
    strip_at(i, end, [&](const int n) { h.add(strip_values<acc_t<T>>(x + i, n, buf), n); });
}

template <class T, class Exec = ThreadExecutor>
void sample_ranges(const T* x, index_t samples, index_t voxels, SampleRange<acc_t<T>>* out,
                   const Exec& exec = Exec{}) {
  using A = acc_t<T>;
  const Partition part(samples, voxels);
  std::vector<SampleRange<A>> partial(static_cast<size_t>(part.tasks()));
  exec(part.tasks(), [&](index_t t) {
    with_best_isa([&] { range_of(x, part.begin(t), part.end(t), partial[static_cast<size_t>(t)]); });
  });
  for (index_t s = 0; s < samples; ++s) {
    SampleRange<A> r;
    for (index_t c = 0; c < part.chunks; ++c) r.add(partial[static_cast<size_t>(s * part.chunks + c)]);
    out[s] = r;
  }
}

// Histograms of `bins` counts per sample over each sample's [lo, hi]:
// hist[s * bins + b]. Counts are integers, so the task split changes nothing.
template <class T, class Exec = ThreadExecutor>
void sample_histograms(const T* x, index_t samples, index_t voxels, int bins,
                       const SampleRange<acc_t<T>>* ranges, std::int64_t* hist, const Exec& exec = Exec{}) {
  // Counts do not depend on the cut: chunks of at least 2^18 voxels amortise
  // each task's histogram, and scratch of tasks x bins counts stays below
  // 2^26 entries.
  constexpr index_t kVoxelsPerTask = index_t{1} << 18;
  const index_t max_chunks = std::max<index_t>(1, (voxels + kVoxelsPerTask - 1) / kVoxelsPerTask);
  const Partition part(samples, voxels, std::min(max_chunks, (index_t{1} << 26) / (samples * bins)));
  std::vector<std::int64_t> partial(static_cast<size_t>(part.tasks()) * static_cast<size_t>(bins), 0);
  exec(part.tasks(), [&](index_t t) {
    Histogram h(ranges[part.sample_of(t)], bins);
    with_best_isa([&] { histogram_of(x, part.begin(t), part.end(t), h); });
    h.add_to(partial.data() + static_cast<size_t>(t) * static_cast<size_t>(bins));
  });
  std::fill_n(hist, samples * bins, std::int64_t{0});
  for (index_t t = 0; t < part.tasks(); ++t) {
    std::int64_t* h = hist + part.sample_of(t) * bins;
    const std::int64_t* p = partial.data() + static_cast<size_t>(t) * static_cast<size_t>(bins);
    for (int b = 0; b < bins; ++b) h[b] += p[b];
  }
}

// math::bin_centre, lo + (i + 0.5) * width, with both roundings forced: the
// product is rounded to double before the sum. A compiler allowed to
// contract (GCC's default -ffp-contract=fast outside ISO mode, with an FMA
// target such as -march=native, or an aarch64 host) would fuse the two into
// one fma, which rounds once and can differ in the last bit from the CUDA
// kernel's __dmul_rn/__dadd_rn. A header-only library cannot rely on its
// consumer's flags: reading the product back from a volatile makes it a
// rounded double in any build (one store per sample).
// tests/cpp/test_bin_centre.cpp checks it built with -march=native -ffp-contract=fast.
// On a range wider than DBL_MAX every term is halved first and the centre
// doubled (see math::wide_range); the products by `half` are exact, so a
// contraction of them changes nothing, and a range that fits computes with
// half = 1 exactly as the plain formula.
template <class A>
A exact_bin_centre(A lo, A hi, int bins, int i) {
  const double l = static_cast<double>(lo), h = static_cast<double>(hi);
  const double half = math::wide_range(l, h) ? 0.5 : 1.0;
  const double width = (h * half - l * half) / bins;
  const volatile double offset = (i + 0.5) * width;
  return static_cast<A>((l * half + offset) / half);
}

// The threshold of a sample from its range and histogram; NaN when poisoned.
template <class A>
A threshold_from_histogram(const SampleRange<A>& r, const std::int64_t* hist, int bins) {
  if (!(r.poison == A(0))) return std::numeric_limits<A>::quiet_NaN();
  const int b = math::otsu_bin([hist](int i) { return hist[i]; }, bins);
  return exact_bin_centre(r.lo, r.hi, bins, b);
}

// The Otsu threshold of one sample x[0, voxels), counted in pieces: the
// constructor finds the range (one pass), count(i, n) adds the n <= kStrip
// voxels from i to the histogram, in any order and split (counts are
// integers), and threshold() scans it once every voxel is counted. Construct
// and count inside with_best_isa. A sample with NaN or Inf needs no counting.
template <class T>
class SampleOtsu {
 public:
  using A = acc_t<T>;

  SampleOtsu(const T* x, index_t voxels, int bins) : x_(x), voxels_(voxels), bins_(bins) {
    range_of(x, 0, voxels, range_);
    if (needs_counts()) hist_.emplace(range_, bins);
  }

  bool needs_counts() const { return range_.poison == A(0); }

  void count(index_t i, int n) {
    A buf[kStrip];
    hist_->add(strip_values<A>(x_ + i, n, buf), n);
  }

  void count_all() {
    for (index_t i = 0; i < voxels_; i += kStrip) strip_at(i, voxels_, [&](const int n) { count(i, n); });
  }

  A threshold() const {
    if (!needs_counts()) return std::numeric_limits<A>::quiet_NaN();
    std::vector<std::int64_t> hist(static_cast<size_t>(bins_), 0);
    hist_->add_to(hist.data());
    return threshold_from_histogram(range_, hist.data(), bins_);
  }

 private:
  const T* x_;
  index_t voxels_;
  int bins_;
  SampleRange<A> range_;
  std::optional<Histogram> hist_;
};

// The Otsu threshold of one sample x[0, voxels), both passes in the calling
// thread (the second reads x from cache when the sample fits there).
template <class T>
acc_t<T> sample_threshold(const T* x, index_t voxels, int bins) {
  std::optional<SampleOtsu<T>> otsu;
  with_best_isa([&] {
    otsu.emplace(x, voxels, bins);
    if (otsu->needs_counts()) otsu->count_all();
  });
  return otsu->threshold();
}

// thresholds[s] = Otsu threshold of sample s (SPEC section 1).
template <class T, class Exec = ThreadExecutor>
void otsu_thresholds(const T* x, index_t samples, index_t voxels, int bins, acc_t<T>* thresholds,
                     const Exec& exec = Exec{}) {
  check_batch(samples, voxels, "x");
  check_bins(bins);
  using A = acc_t<T>;
  if (whole_samples<T>(samples, voxels, executor_threads(exec))) {
    exec(samples, [&](index_t s) { thresholds[s] = sample_threshold(x + s * voxels, voxels, bins); });
    return;
  }
  std::vector<SampleRange<A>> ranges(static_cast<size_t>(samples));
  sample_ranges(x, samples, voxels, ranges.data(), exec);
  std::vector<std::int64_t> hist(static_cast<size_t>(samples) * static_cast<size_t>(bins));
  sample_histograms(x, samples, voxels, bins, ranges.data(), hist.data(), exec);
  for (index_t s = 0; s < samples; ++s)
    thresholds[s] = threshold_from_histogram(ranges[static_cast<size_t>(s)], hist.data() + s * bins, bins);
}

}  // namespace spotlight::cpu
