// Otsu standardization (x - T) / std(x) per sample on the CPU (SPEC section
// 6), forward and backward. The std algorithm is core/moments.hpp's: scale
// by a power of two known after the range pass, then chunk moments merged
// with Chan's formula.
//
// Forward, three passes over x: (1) range and per-chunk sums, (2) histogram
// and per-chunk squared deviations of the scaled values, (3) the output.
// Small samples are given whole to one task (see whole_samples), whose
// passes 2 and 3 then read x from cache. Backward, two passes over x and the
// incoming gradient: (1) per-sample sum of g * y, (2) the gradient.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <vector>

#include "spotlight/core/config.hpp"
#include "spotlight/core/moments.hpp"
#include "spotlight/core/options.hpp"
#include "spotlight/cpu/executor.hpp"
#include "spotlight/cpu/isa.hpp"
#include "spotlight/cpu/otsu.hpp"
#include "spotlight/cpu/partition.hpp"

namespace spotlight::cpu {

using moments::Moments;
using moments::StandardizeStats;

// Pass 2 over a chunk [b, e) whose range pass gave `sum` (of the unscaled
// values): the moments of the scaled values x * scale, deviations taken from
// the chunk's mean. When `sum` is not finite (it overflowed) the chunk's
// scaled values are summed first, from cache. Also counts the chunk into h
// when h is not null.
template <class T>
inline Moments chunk_moments(const T* x, index_t b, index_t e, double sum, acc_t<T> scale, Histogram* h) {
  using A = acc_t<T>;
  const double count = static_cast<double>(e - b);
  if (count == 0) return Moments{};
  double mean = moments::scaled_mean(sum / count, scale);
  if (mean != mean) {
    double scaled = 0;
    lane_sums<A, 1>(b, e, [&](index_t i, A* v) { v[0] = static_cast<A>(x[i]) * scale; }, &scaled);
    mean = scaled / count;
  }
  const A m = static_cast<A>(mean);
  double dev[2] = {0, 0};
  lane_sums_strips<A, 2>(
      b, e,
      [&](index_t i, int n, A (*v)[kStrip]) {
        A buf[kStrip];
        const A* s = strip_values<A>(x + i, n, buf);
        if (h) h->add(s, n);
        for (int j = 0; j < n; ++j) {
          const A d = s[j] * scale - m;
          v[0][j] = d * d;
          v[1][j] = d;
        }
      },
      dev);
  return moments::chunk_moments(count, static_cast<double>(m), dev[1], dev[0]);
}

// Passes 1 and 2 for every sample: stats[s] (scale, scaled mean, inverse
// scaled std) and, when `thresholds` is not null, the Otsu threshold of each
// sample with `bins` bins (the histogram is counted in pass 2).
template <class T, class Exec = ThreadExecutor>
void standardize_stats(const T* x, index_t samples, index_t voxels, int bins, acc_t<T>* thresholds,
                       StandardizeStats<acc_t<T>>* stats, const Exec& exec = Exec{}) {
  using A = acc_t<T>;
  const Partition part(samples, voxels);
  const bool otsu = thresholds != nullptr;

  if (whole_samples<T>(samples, voxels, executor_threads(exec))) {
    exec(samples, [&](index_t s) {
      with_best_isa([&] {
        const index_t first = s * part.chunks;
        std::vector<double> sums(static_cast<size_t>(part.chunks), 0.0);
        SampleRange<A> r;
        for (index_t c = 0; c < part.chunks; ++c)
          range_of(x, part.begin(first + c), part.end(first + c), r, &sums[static_cast<size_t>(c)]);
        const A scale = moments::scale_of_range(r.lo, r.hi);
        std::optional<Histogram> h;
        if (otsu) h.emplace(r, bins);
        Moments m;
        for (index_t c = 0; c < part.chunks; ++c)
          m.add(chunk_moments(x, part.begin(first + c), part.end(first + c), sums[static_cast<size_t>(c)], scale,
                              h ? &*h : nullptr));
        if (otsu) {
          std::vector<std::int64_t> hist(static_cast<size_t>(bins), 0);
          h->add_to(hist.data());
          thresholds[s] = threshold_from_histogram(r, hist.data(), bins);
        }
        stats[s] = moments::finish(m, scale);
      });
    });
    return;
  }

  // Pass 1: ranges and sums of every chunk.
  std::vector<SampleRange<A>> chunk_ranges(static_cast<size_t>(part.tasks()));
  std::vector<double> sums(static_cast<size_t>(part.tasks()), 0.0);
  exec(part.tasks(), [&](index_t t) {
    with_best_isa([&] {
      range_of(x, part.begin(t), part.end(t), chunk_ranges[static_cast<size_t>(t)], &sums[static_cast<size_t>(t)]);
    });
  });
  std::vector<SampleRange<A>> ranges(static_cast<size_t>(samples));
  for (index_t t = 0; t < part.tasks(); ++t)
    ranges[static_cast<size_t>(part.sample_of(t))].add(chunk_ranges[static_cast<size_t>(t)]);
  std::vector<A> scales(static_cast<size_t>(samples));
  for (index_t s = 0; s < samples; ++s)
    scales[static_cast<size_t>(s)] = moments::scale_of_range(ranges[static_cast<size_t>(s)].lo,
                                                             ranges[static_cast<size_t>(s)].hi);

  // Pass 2: histogram and moments of every chunk; with too many histograms
  // to keep one per chunk, the histograms get a pass of their own.
  const bool fused = otsu && part.tasks() * bins <= (index_t{1} << 26);
  std::vector<Moments> chunks(static_cast<size_t>(part.tasks()));
  std::vector<std::int64_t> hist(fused ? static_cast<size_t>(part.tasks()) * static_cast<size_t>(bins) : 0, 0);
  exec(part.tasks(), [&](index_t t) {
    const size_t s = static_cast<size_t>(part.sample_of(t));
    const double sum = sums[static_cast<size_t>(t)];
    if (!fused) {
      with_best_isa(
          [&] { chunks[static_cast<size_t>(t)] = chunk_moments(x, part.begin(t), part.end(t), sum, scales[s], nullptr); });
      return;
    }
    Histogram h(ranges[s], bins);
    with_best_isa(
        [&] { chunks[static_cast<size_t>(t)] = chunk_moments(x, part.begin(t), part.end(t), sum, scales[s], &h); });
    h.add_to(hist.data() + static_cast<size_t>(t) * static_cast<size_t>(bins));
  });
  if (otsu && !fused) {
    hist.assign(static_cast<size_t>(samples) * static_cast<size_t>(bins), 0);
    sample_histograms(x, samples, voxels, bins, ranges.data(), hist.data(), exec);
  }
  for (index_t s = 0; s < samples; ++s) {
    Moments m;
    for (index_t c = 0; c < part.chunks; ++c) m.add(chunks[static_cast<size_t>(s * part.chunks + c)]);
    stats[s] = moments::finish(m, scales[static_cast<size_t>(s)]);
    if (!otsu) continue;
    std::int64_t* h = hist.data() + static_cast<size_t>(fused ? s * part.chunks : s) * static_cast<size_t>(bins);
    for (index_t c = 1; fused && c < part.chunks; ++c)
      for (int b = 0; b < bins; ++b) h[b] += h[static_cast<size_t>(c) * static_cast<size_t>(bins) + b];
    thresholds[s] = threshold_from_histogram(ranges[static_cast<size_t>(s)], h, bins);
  }
}

// Mean and population std of every sample, as standardization computes
// them (scaled: mean = stats.mean / stats.scale, std = 1 / (stats.inv_std *
// stats.scale)). Two passes over x.
template <class T, class Exec = ThreadExecutor>
void sample_moments(const T* x, index_t samples, index_t voxels, StandardizeStats<acc_t<T>>* stats,
                    const Exec& exec = Exec{}) {
  check_batch(samples, voxels, "x");
  standardize_stats(x, samples, voxels, 0, static_cast<acc_t<T>*>(nullptr), stats, exec);
}

// out[b, e) = (x - thr) / std of one sample with the given stats.
template <class T>
inline void standardize_range(const T* x, index_t b, index_t e, acc_t<T> thr, const StandardizeStats<acc_t<T>>& st,
                              T* out) {
  using A = acc_t<T>;
  const StandardizeStats<A> s = st;
  const A t = thr * s.scale;
  for (index_t i = b; i < e; ++i) out[i] = static_cast<T>(moments::standardized(static_cast<A>(x[i]), t, s));
}

// out = (x - T) / std(x) per sample, T the sample's Otsu threshold; also
// writes what the backward needs: thresholds[s] (as otsu_thresholds) and
// stats[s].
template <class T, class Exec = ThreadExecutor>
void otsu_standardize_forward(const T* x, index_t samples, index_t voxels, int bins, T* out, acc_t<T>* thresholds,
                              StandardizeStats<acc_t<T>>* stats, const Exec& exec = Exec{}) {
  check_batch(samples, voxels, "x");
  check_bins(bins);
  check(thresholds != nullptr, "thresholds must not be null");
  check(stats != nullptr, "stats must not be null");
  standardize_stats(x, samples, voxels, bins, thresholds, stats, exec);
  if (whole_samples<T>(samples, voxels, executor_threads(exec))) {
    exec(samples, [&](index_t s) {
      with_best_isa([&] { standardize_range(x, s * voxels, (s + 1) * voxels, thresholds[s], stats[s], out); });
    });
    return;
  }
  const Partition part(samples, voxels);
  exec(part.tasks(), [&](index_t t) {
    const index_t s = part.sample_of(t);
    with_best_isa([&] { standardize_range(x, part.begin(t), part.end(t), thresholds[s], stats[s], out); });
  });
}

// out = (x - T) / std(x) per sample, T the sample's Otsu threshold.
template <class T, class Exec = ThreadExecutor>
void otsu_standardize(const T* x, index_t samples, index_t voxels, int bins, T* out, const Exec& exec = Exec{}) {
  check_batch(samples, voxels, "x");
  check_bins(bins);
  std::vector<acc_t<T>> thresholds(static_cast<size_t>(samples));
  std::vector<StandardizeStats<acc_t<T>>> stats(static_cast<size_t>(samples));
  otsu_standardize_forward(x, samples, voxels, bins, out, thresholds.data(), stats.data(), exec);
}

// The gradient of otsu_standardize with T held constant (see
// moments::standardize_grad): grad_x from the incoming gradient `grad` and
// the forward's thresholds and stats. Two passes over x and grad: the
// per-sample sum of grad * y, then grad_x.
template <class T, class Exec = ThreadExecutor>
void otsu_standardize_backward(const T* grad, const T* x, index_t samples, index_t voxels, const acc_t<T>* thresholds,
                               const StandardizeStats<acc_t<T>>* stats, T* grad_x, const Exec& exec = Exec{}) {
  check_batch(samples, voxels, "x");
  check(grad != nullptr, "grad must not be null");
  check(thresholds != nullptr, "thresholds must not be null");
  check(stats != nullptr, "stats must not be null");
  using A = acc_t<T>;
  std::vector<double> dot(static_cast<size_t>(samples), 0.0);
  per_sample_sums<A, 1>(
      samples, voxels, exec,
      [&](index_t s) {
        const StandardizeStats<A> st = stats[s];
        const A t = thresholds[s] * st.scale;
        return by_element<A, 1>([=](index_t i, A* v) {
          v[0] = static_cast<A>(grad[i]) * moments::standardized(static_cast<A>(x[i]), t, st);
        });
      },
      dot.data());
  const Partition part(samples, voxels);
  exec(part.tasks(), [&](index_t t) {
    const index_t s = part.sample_of(t);
    const StandardizeStats<A> st = stats[s];
    const A k = static_cast<A>(dot[static_cast<size_t>(s)] / static_cast<double>(voxels));
    with_best_isa([&] {
      for (index_t i = part.begin(t), e = part.end(t); i < e; ++i)
        grad_x[i] = static_cast<T>(moments::standardize_grad(static_cast<A>(grad[i]), static_cast<A>(x[i]), k, st));
    });
  });
}

}  // namespace spotlight::cpu
