// Per-sample histogram Otsu threshold on the CPU (SPEC section 1):
// pass 1 finds each sample's range, pass 2 builds its histogram, then one
// serial scan of `bins` counts per sample picks the threshold.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "spotlight/core/config.hpp"
#include "spotlight/core/math.hpp"
#include "spotlight/cpu/executor.hpp"
#include "spotlight/cpu/partition.hpp"

namespace spotlight::cpu {

// Range of one sample. `poison` is NaN when the sample holds NaN or Inf.
template <class A>
struct SampleRange {
  A lo = std::numeric_limits<A>::infinity();
  A hi = -std::numeric_limits<A>::infinity();
  A poison = 0;
};

template <class T, class Exec = ThreadExecutor>
void sample_ranges(const T* x, index_t samples, index_t voxels, SampleRange<acc_t<T>>* out,
                   const Exec& exec = Exec{}) {
  using A = acc_t<T>;
  constexpr int kLanes = 16;
  const Partition part(samples, voxels);
  std::vector<SampleRange<A>> partial(static_cast<size_t>(part.tasks()));
  exec(part.tasks(), [&](index_t t) {
    A lo[kLanes], hi[kLanes], bad[kLanes];
    std::fill_n(lo, kLanes, std::numeric_limits<A>::infinity());
    std::fill_n(hi, kLanes, -std::numeric_limits<A>::infinity());
    std::fill_n(bad, kLanes, A(0));
    index_t i = part.begin(t);
    const index_t end = part.end(t);
    for (; i + kLanes <= end; i += kLanes) {
      for (int j = 0; j < kLanes; ++j) {
        const A v = static_cast<A>(x[i + j]);
        lo[j] = v < lo[j] ? v : lo[j];
        hi[j] = v > hi[j] ? v : hi[j];
        bad[j] += math::poison(v);
      }
    }
    for (; i < end; ++i) {
      const A v = static_cast<A>(x[i]);
      lo[0] = v < lo[0] ? v : lo[0];
      hi[0] = v > hi[0] ? v : hi[0];
      bad[0] += math::poison(v);
    }
    SampleRange<A> r;
    for (int j = 0; j < kLanes; ++j) {
      r.lo = std::min(r.lo, lo[j]);
      r.hi = std::max(r.hi, hi[j]);
      r.poison += bad[j];
    }
    partial[static_cast<size_t>(t)] = r;
  });
  for (index_t s = 0; s < samples; ++s) {
    SampleRange<A> r;
    for (index_t c = 0; c < part.chunks; ++c) {
      const auto& p = partial[static_cast<size_t>(s * part.chunks + c)];
      r.lo = std::min(r.lo, p.lo);
      r.hi = std::max(r.hi, p.hi);
      r.poison += p.poison;
    }
    out[s] = r;
  }
}

// Histograms of `bins` counts per sample over each sample's [lo, hi]:
// hist[s * bins + b]. Counts are integers, so the task split changes nothing.
template <class T, class Exec = ThreadExecutor>
void sample_histograms(const T* x, index_t samples, index_t voxels, int bins,
                       const SampleRange<acc_t<T>>* ranges, std::int64_t* hist, const Exec& exec = Exec{}) {
  using A = acc_t<T>;
  // Scratch of tasks x bins counts stays below 2^26 entries.
  const Partition part(samples, voxels, (index_t{1} << 26) / (samples * bins));
  constexpr int kSub = 4;  // interleaved sub-histograms: no store-to-load stall on runs of one bin
  constexpr int kStrip = 64;
  std::vector<std::uint32_t> partial(static_cast<size_t>(part.tasks()) * static_cast<size_t>(bins));
  exec(part.tasks(), [&](index_t t) {
    const auto& r = ranges[part.sample_of(t)];
    const A lo = r.lo, scale = math::histogram_scale(r.lo, r.hi, bins);
    std::vector<std::uint32_t> sub(static_cast<size_t>(kSub) * static_cast<size_t>(bins), 0u);
    int idx[kStrip];
    for (index_t i = part.begin(t), end = part.end(t); i < end; i += kStrip) {
      const int len = static_cast<int>(std::min<index_t>(kStrip, end - i));
      for (int j = 0; j < len; ++j) idx[j] = math::histogram_bin(static_cast<A>(x[i + j]), lo, scale, bins);
      int j = 0;
      for (; j + kSub <= len; j += kSub)
        for (int u = 0; u < kSub; ++u) ++sub[static_cast<size_t>(u) * bins + idx[j + u]];
      for (; j < len; ++j) ++sub[idx[j]];
    }
    std::uint32_t* out = partial.data() + static_cast<size_t>(t) * bins;
    for (int b = 0; b < bins; ++b) {
      std::uint32_t c = 0;
      for (int u = 0; u < kSub; ++u) c += sub[static_cast<size_t>(u) * bins + b];
      out[b] = c;
    }
  });
  std::fill_n(hist, samples * bins, std::int64_t{0});
  for (index_t t = 0; t < part.tasks(); ++t) {
    std::int64_t* h = hist + part.sample_of(t) * bins;
    const std::uint32_t* p = partial.data() + static_cast<size_t>(t) * bins;
    for (int b = 0; b < bins; ++b) h[b] += p[b];
  }
}

// The threshold of a sample from its range and histogram; NaN when poisoned.
template <class A>
A threshold_from_histogram(const SampleRange<A>& r, const std::int64_t* hist, int bins) {
  if (!(r.poison == A(0))) return std::numeric_limits<A>::quiet_NaN();
  const int b = math::otsu_bin([hist](int i) { return hist[i]; }, bins);
  return math::bin_centre(r.lo, r.hi, bins, b);
}

// thresholds[s] = Otsu threshold of sample s (SPEC section 1).
template <class T, class Exec = ThreadExecutor>
void otsu_thresholds(const T* x, index_t samples, index_t voxels, int bins, acc_t<T>* thresholds,
                     const Exec& exec = Exec{}) {
  using A = acc_t<T>;
  std::vector<SampleRange<A>> ranges(static_cast<size_t>(samples));
  sample_ranges(x, samples, voxels, ranges.data(), exec);
  std::vector<std::int64_t> hist(static_cast<size_t>(samples) * static_cast<size_t>(bins));
  sample_histograms(x, samples, voxels, bins, ranges.data(), hist.data(), exec);
  exec(samples, [&](index_t s) {
    thresholds[s] = threshold_from_histogram(ranges[static_cast<size_t>(s)], hist.data() + s * bins, bins);
  });
}

}  // namespace spotlight::cpu
