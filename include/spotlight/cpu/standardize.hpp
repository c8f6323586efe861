// Otsu standardization (x - T) / std(x) per sample on the CPU (SPEC section 6).
//
// Three passes over x: (1) range and per-chunk sums, (2) histogram and
// per-chunk squared deviations from the chunk's mean, (3) the output. The
// moments of passes 1 and 2 are those of sample_moments, bit for bit. Small
// samples are given whole to one task (see whole_samples), whose passes 2
// and 3 then read x from cache.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "spotlight/core/config.hpp"
#include "spotlight/core/options.hpp"
#include "spotlight/cpu/executor.hpp"
#include "spotlight/cpu/isa.hpp"
#include "spotlight/cpu/otsu.hpp"
#include "spotlight/cpu/partition.hpp"

namespace spotlight::cpu {

struct SampleMoments {
  double mean = 0;
  double std = 1;  // ddof = 0; 1 for a constant sample
};

// One chunk's count, mean and sum of squared deviations from its mean.
struct ChunkMoments {
  double count = 0, mean = 0, m2 = 0;
};

// Second pass over a chunk [b, e) whose first pass gave `sum`: squared
// deviations from the float-rounded mean m, corrected by the sum of
// deviations, sum (x - mean)^2 = sum (x - m)^2 - (sum (x - m))^2 / n. Also
// counts the chunk into h when h is not null.
template <class T>
inline ChunkMoments chunk_moments(const T* x, index_t b, index_t e, double sum, Histogram* h) {
  using A = acc_t<T>;
  const double count = static_cast<double>(e - b);
  const double mean = count > 0 ? sum / count : 0.0;
  const A m = static_cast<A>(mean);
  double dev[2] = {0, 0};
  lane_sums_strips<A, 2>(
      b, e,
      [&](index_t i, int n, A (*v)[kStrip]) {
        A buf[kStrip];
        const A* s = strip_values<A>(x + i, n, buf);
        if (h) h->add(s, n);
        for (int j = 0; j < n; ++j) {
          const A d = s[j] - m;
          v[0][j] = d * d;
          v[1][j] = d;
        }
      },
      dev);
  return ChunkMoments{count, mean, count > 0 ? dev[0] - dev[1] * dev[1] / count : 0.0};
}

// Merges a sample's chunk moments in chunk order (Chan's formula): mean and
// population standard deviation, 1 for a constant sample.
inline SampleMoments merge_moments(const ChunkMoments* chunks, index_t count) {
  double n = 0, mean = 0, m2 = 0;
  for (index_t c = 0; c < count; ++c) {
    const ChunkMoments& p = chunks[c];
    if (p.count == 0) continue;
    const double total = n + p.count;
    const double delta = p.mean - mean;
    mean += delta * p.count / total;
    m2 += p.m2 + delta * delta * n * p.count / total;
    n = total;
  }
  const double var = n > 0 ? std::max(0.0, m2 / n) : 0.0;
  const double sd = std::sqrt(var);
  return SampleMoments{mean, sd > 0 || std::isnan(sd) ? sd : 1.0};
}

// Mean and population standard deviation of every sample. Each chunk's mean
// and squared deviations come from two passes over the chunk (the second from
// cache), and chunks are merged with Chan's formula in chunk order.
template <class T, class Exec = ThreadExecutor>
void sample_moments(const T* x, index_t samples, index_t voxels, SampleMoments* out, const Exec& exec = Exec{}) {
  using A = acc_t<T>;
  const Partition part(samples, voxels);
  std::vector<ChunkMoments> chunks(static_cast<size_t>(part.tasks()));
  exec(part.tasks(), [&](index_t t) {
    with_best_isa([&] {
      double sum = 0;
      lane_sums<A, 1>(part.begin(t), part.end(t), [&](index_t i, A* v) { v[0] = static_cast<A>(x[i]); }, &sum);
      chunks[static_cast<size_t>(t)] = chunk_moments(x, part.begin(t), part.end(t), sum, nullptr);
    });
  });
  for (index_t s = 0; s < samples; ++s) out[s] = merge_moments(chunks.data() + s * part.chunks, part.chunks);
}

// out[b, e) = (x - thr) * inv.
template <class T>
inline void standardize_range(const T* x, index_t b, index_t e, acc_t<T> thr, acc_t<T> inv, T* out) {
  using A = acc_t<T>;
  for (index_t i = b; i < e; ++i) out[i] = static_cast<T>((static_cast<A>(x[i]) - thr) * inv);
}

// out = (x - T) / std(x) per sample, T the sample's Otsu threshold.
template <class T, class Exec = ThreadExecutor>
void otsu_standardize(const T* x, index_t samples, index_t voxels, int bins, T* out, const Exec& exec = Exec{}) {
  check_batch(samples, voxels, "x");
  check_bins(bins);
  using A = acc_t<T>;
  const Partition part(samples, voxels);
  auto inverse_std = [](const SampleMoments& m) { return static_cast<A>(1.0 / m.std); };

  if (whole_samples<T>(samples, voxels)) {
    exec(samples, [&](index_t s) {
      with_best_isa([&] {
        const index_t first = s * part.chunks;
        std::vector<double> sums(static_cast<size_t>(part.chunks), 0.0);
        std::vector<ChunkMoments> chunks(static_cast<size_t>(part.chunks));
        SampleRange<A> r;
        for (index_t c = 0; c < part.chunks; ++c)
          range_of(x, part.begin(first + c), part.end(first + c), r, &sums[static_cast<size_t>(c)]);
        Histogram h(r, bins);
        for (index_t c = 0; c < part.chunks; ++c)
          chunks[static_cast<size_t>(c)] =
              chunk_moments(x, part.begin(first + c), part.end(first + c), sums[static_cast<size_t>(c)], &h);
        std::vector<std::int64_t> hist(static_cast<size_t>(bins), 0);
        h.add_to(hist.data());
        const A thr = threshold_from_histogram(r, hist.data(), bins);
        const A inv = inverse_std(merge_moments(chunks.data(), part.chunks));
        standardize_range(x, s * voxels, (s + 1) * voxels, thr, inv, out);
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

  // Pass 2: histogram and squared deviations of every chunk; with too many
  // histograms to keep one per chunk, the histograms get a pass of their own.
  const bool fused = part.tasks() * bins <= (index_t{1} << 26);
  std::vector<ChunkMoments> chunks(static_cast<size_t>(part.tasks()));
  std::vector<std::int64_t> hist(fused ? static_cast<size_t>(part.tasks()) * static_cast<size_t>(bins) : 0, 0);
  exec(part.tasks(), [&](index_t t) {
    const double sum = sums[static_cast<size_t>(t)];
    if (!fused) {
      with_best_isa([&] { chunks[static_cast<size_t>(t)] = chunk_moments(x, part.begin(t), part.end(t), sum, nullptr); });
      return;
    }
    Histogram h(ranges[static_cast<size_t>(part.sample_of(t))], bins);
    with_best_isa([&] { chunks[static_cast<size_t>(t)] = chunk_moments(x, part.begin(t), part.end(t), sum, &h); });
    h.add_to(hist.data() + static_cast<size_t>(t) * static_cast<size_t>(bins));
  });
  if (!fused) {
    hist.assign(static_cast<size_t>(samples) * static_cast<size_t>(bins), 0);
    sample_histograms(x, samples, voxels, bins, ranges.data(), hist.data(), exec);
  }
  std::vector<A> thr(static_cast<size_t>(samples)), inv(static_cast<size_t>(samples));
  for (index_t s = 0; s < samples; ++s) {
    std::int64_t* h = hist.data() + static_cast<size_t>(fused ? s * part.chunks : s) * static_cast<size_t>(bins);
    for (index_t c = 1; fused && c < part.chunks; ++c)
      for (int b = 0; b < bins; ++b) h[b] += h[static_cast<size_t>(c) * static_cast<size_t>(bins) + b];
    thr[static_cast<size_t>(s)] = threshold_from_histogram(ranges[static_cast<size_t>(s)], h, bins);
    inv[static_cast<size_t>(s)] = inverse_std(merge_moments(chunks.data() + s * part.chunks, part.chunks));
  }

  // Pass 3: the output.
  exec(part.tasks(), [&](index_t t) {
    const size_t s = static_cast<size_t>(part.sample_of(t));
    with_best_isa([&] { standardize_range(x, part.begin(t), part.end(t), thr[s], inv[s], out); });
  });
}

}  // namespace spotlight::cpu
