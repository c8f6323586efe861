// How a batch of `samples` x `voxels` is cut into tasks, and the lane-blocked
// summation every reduction kernel uses.
#pragma once

#include <algorithm>
#include <vector>

#include "spotlight/core/config.hpp"

namespace spotlight::cpu {

// Each sample is cut into equal chunks; one chunk is one task. The cut
// depends on the shape alone (never on the thread count), which is what
// makes every sum deterministic.
struct Partition {
  static constexpr index_t kMinChunk = index_t{1} << 15;  // voxels: amortises a task
  static constexpr index_t kMaxChunks = 1024;             // per sample: bounds scratch

  index_t samples = 0, voxels = 0, chunks = 1, chunk = 0;

  Partition(index_t samples_, index_t voxels_, index_t max_chunks = kMaxChunks)
      : samples(samples_), voxels(voxels_) {
    chunks = std::clamp<index_t>((voxels + kMinChunk - 1) / kMinChunk, 1, std::max<index_t>(1, max_chunks));
    chunk = (voxels + chunks - 1) / chunks;
  }
  index_t tasks() const { return samples * chunks; }
  index_t sample_of(index_t task) const { return task / chunks; }
  // Voxel range [begin, end) of a task, as offsets into the whole batch.
  index_t begin(index_t task) const {
    return sample_of(task) * voxels + std::min(voxels, (task % chunks) * chunk);
  }
  index_t end(index_t task) const {
    return sample_of(task) * voxels + std::min(voxels, (task % chunks + 1) * chunk);
  }
};

// Sums F values per element over [begin, end) into out[0..F). Elements are
// summed in `A` (float for float inputs) in kLanes independent lanes, which
// the compiler vectorises, over blocks of kBlock elements; block totals are
// added in double, so the float error is bounded by the block length however
// long the range. `element(i, v)` writes the F values of element i into v.
template <class A, int F, class Element>
inline void lane_sums(index_t begin, index_t end, const Element& element, double* out) {
  constexpr int kLanes = 16;
  constexpr index_t kBlock = 4096;
  for (index_t block = begin; block < end; block += kBlock) {
    const index_t stop = std::min(end, block + kBlock);
    A acc[F][kLanes] = {};
    index_t i = block;
    for (; i + kLanes <= stop; i += kLanes) {
      for (int j = 0; j < kLanes; ++j) {
        A v[F];
        element(i + j, v);
        for (int f = 0; f < F; ++f) acc[f][j] += v[f];
      }
    }
    for (; i < stop; ++i) {
      A v[F];
      element(i, v);
      for (int f = 0; f < F; ++f) acc[f][0] += v[f];
    }
    for (int f = 0; f < F; ++f) {
      double s = 0;
      for (int j = 0; j < kLanes; ++j) s += static_cast<double>(acc[f][j]);
      out[f] += s;
    }
  }
}

// Per-sample sums of F values per element: out[s * F + f]. `element_of(s)`
// returns the element functor of sample s (it captures the sample's
// threshold, say). Chunks are summed in parallel, then combined in chunk
// order.
template <class A, int F, class Exec, class ElementOf>
inline void per_sample_sums(index_t samples, index_t voxels, const Exec& exec,
                            const ElementOf& element_of, double* out) {
  const Partition part(samples, voxels);
  std::vector<double> partial(static_cast<size_t>(part.tasks() * F), 0.0);
  exec(part.tasks(), [&](index_t t) {
    const auto element = element_of(part.sample_of(t));
    lane_sums<A, F>(part.begin(t), part.end(t), element, partial.data() + t * F);
  });
  for (index_t s = 0; s < samples; ++s) {
    for (int f = 0; f < F; ++f) {
      double total = 0;
      for (index_t c = 0; c < part.chunks; ++c) total += partial[static_cast<size_t>((s * part.chunks + c) * F + f)];
      out[s * F + f] = total;
    }
  }
}

// Runs f(i) for every element of [0, count), split into tasks.
template <class Exec, class F>
inline void parallel_elements(index_t count, const Exec& exec, const F& f) {
  const Partition part(1, count);
  exec(part.tasks(), [&](index_t t) {
    for (index_t i = part.begin(t); i < part.end(t); ++i) f(i);
  });
}

}  // namespace spotlight::cpu
