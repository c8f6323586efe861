// Otsu standardization (x - T) / std(x) per sample on the CPU (SPEC section 6).
#pragma once

#include <cmath>
#include <vector>

#include "spotlight/core/config.hpp"
#include "spotlight/cpu/executor.hpp"
#include "spotlight/cpu/otsu.hpp"
#include "spotlight/cpu/partition.hpp"

namespace spotlight::cpu {

struct SampleMoments {
  double mean = 0;
  double std = 1;  // ddof = 0; 1 for a constant sample
};

// Mean and population standard deviation of every sample. Each chunk's mean
// and squared deviations come from two passes over the chunk (the second from
// cache), and chunks are merged with Chan's formula in chunk order.
template <class T, class Exec = ThreadExecutor>
void sample_moments(const T* x, index_t samples, index_t voxels, SampleMoments* out, const Exec& exec = Exec{}) {
  using A = acc_t<T>;
  const Partition part(samples, voxels);
  std::vector<double> partial(static_cast<size_t>(part.tasks()) * 3);  // count, mean, m2
  exec(part.tasks(), [&](index_t t) {
    const index_t b = part.begin(t), e = part.end(t);
    double sum = 0;
    lane_sums<A, 1>(b, e, [&](index_t i, A* v) { v[0] = static_cast<A>(x[i]); }, &sum);
    const double count = static_cast<double>(e - b);
    const double mean = count > 0 ? sum / count : 0.0;
    const A m = static_cast<A>(mean);
    // Squared deviations from the float-rounded mean m, corrected by the
    // sum of deviations: sum (x - mean)^2 = sum (x - m)^2 - (sum (x - m))^2 / n.
    double dev[2] = {0, 0};
    lane_sums<A, 2>(b, e, [&](index_t i, A* v) {
      const A d = static_cast<A>(x[i]) - m;
      v[0] = d * d;
      v[1] = d;
    }, dev);
    const double m2 = count > 0 ? dev[0] - dev[1] * dev[1] / count : 0.0;
    partial[static_cast<size_t>(t) * 3 + 0] = count;
    partial[static_cast<size_t>(t) * 3 + 1] = mean;
    partial[static_cast<size_t>(t) * 3 + 2] = m2;
  });
  for (index_t s = 0; s < samples; ++s) {
    double n = 0, mean = 0, m2 = 0;
    for (index_t c = 0; c < part.chunks; ++c) {
      const double* p = partial.data() + static_cast<size_t>(s * part.chunks + c) * 3;
      if (p[0] == 0) continue;
      const double total = n + p[0];
      const double delta = p[1] - mean;
      mean += delta * p[0] / total;
      m2 += p[2] + delta * delta * n * p[0] / total;
      n = total;
    }
    const double var = n > 0 ? std::max(0.0, m2 / n) : 0.0;
    const double sd = std::sqrt(var);
    out[s] = SampleMoments{mean, sd > 0 || std::isnan(sd) ? sd : 1.0};
  }
}

// out = (x - T) / std(x) per sample, T the sample's Otsu threshold.
template <class T, class Exec = ThreadExecutor>
void otsu_standardize(const T* x, index_t samples, index_t voxels, int bins, T* out, const Exec& exec = Exec{}) {
  using A = acc_t<T>;
  std::vector<A> thresholds(static_cast<size_t>(samples));
  otsu_thresholds(x, samples, voxels, bins, thresholds.data(), exec);
  std::vector<SampleMoments> moments(static_cast<size_t>(samples));
  sample_moments(x, samples, voxels, moments.data(), exec);
  const Partition part(samples, voxels);
  exec(part.tasks(), [&](index_t t) {
    const index_t s = part.sample_of(t);
    const A thr = thresholds[static_cast<size_t>(s)];
    const A inv = static_cast<A>(1.0 / moments[static_cast<size_t>(s)].std);
    for (index_t i = part.begin(t), e = part.end(t); i < e; ++i) out[i] = static_cast<T>((static_cast<A>(x[i]) - thr) * inv);
  });
}

}  // namespace spotlight::cpu
