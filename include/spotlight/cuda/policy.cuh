// The dispatch layer's tuning: block size and items per thread of each
// kind of kernel, and how a batch is cut into blocks. Every cut depends on
// the shape and dtype alone, never on the GPU, so every sum is reproducible
// on any device, run after run.
#pragma once

#include <climits>

#include "spotlight/core/config.hpp"
#include "spotlight/cuda/config.cuh"

namespace spotlight::cuda {

// Kernels that stream over the voxels of a (sample, chunk) per block:
// ranges, histograms, loss sums, the loss backward, standardization.
template <class T>
struct StreamingPolicy {
  static constexpr int kBlockThreads = 256;
  // 8 independent loads in flight per thread (4 for 8-byte types): enough
  // bytes in flight to saturate HBM without spilling registers.
  static constexpr int kItemsPerThread = sizeof(T) >= 8 ? 4 : 8;
  static constexpr index_t kTile = index_t{kBlockThreads} * kItemsPerThread;
  // A block streams at least 4 tiles: amortises its per-sample prologue.
  static constexpr index_t kMinChunk = 4 * kTile;
  // At most this many blocks per sample: bounds the workspace and the
  // per-sample combine; 2048 blocks of 256 threads fill any current GPU.
  static constexpr index_t kMaxChunks = 2048;
  // A block never streams more than 2^30 voxels: its 32-bit shared-memory
  // histogram counts cannot overflow.
  static constexpr index_t kMaxChunk = index_t{1} << 30;
};

// Histograms with at most this many bins are privatized in shared memory
// (32 KiB of 32-bit counts); larger ones count straight into global memory.
inline constexpr int kMaxSharedBins = 8192;

// The batch pooling of the loss backward is recomputed by every block
// (a block reduction over the N per-sample sums) up to this many samples;
// beyond, one extra single-block kernel computes it once.
inline constexpr index_t kMaxInlinePoolSamples = 1024;

// Elementwise kernels (tunable sigmoid): grid-stride over 16-byte vectors.
struct ElementwisePolicy {
  static constexpr int kBlockThreads = 256;
  static constexpr int kVectorBytes = 16;
  static constexpr index_t kMaxBlocks = index_t{1} << 16;
};

// One block per (sample, chunk): block `task` streams voxels [begin, end)
// of sample task / chunks. Chunks are whole tiles; none is empty.
struct Grid {
  index_t samples = 0, voxels = 0, chunks = 1, chunk = 1;

  SPOTLIGHT_HD index_t tasks() const { return samples * chunks; }
  SPOTLIGHT_HD index_t sample_of(index_t task) const { return task / chunks; }
  SPOTLIGHT_HD index_t chunk_of(index_t task) const { return task % chunks; }
  // Offsets into the whole batch.
  SPOTLIGHT_HD index_t begin(index_t task) const { return sample_of(task) * voxels + chunk_of(task) * chunk; }
  SPOTLIGHT_HD index_t end(index_t task) const {
    const index_t stop = (chunk_of(task) + 1) * chunk;
    return sample_of(task) * voxels + (stop < voxels ? stop : voxels);
  }
  // A 1-D grid of tasks blocks must fit gridDim.x.
  bool launchable() const { return samples > 0 && voxels > 0 && tasks() <= INT_MAX; }
};

template <class Policy>
Grid make_grid(index_t samples, index_t voxels) {
  Grid g;
  g.samples = samples;
  g.voxels = voxels;
  index_t chunk = ceil_div(voxels, Policy::kMaxChunks);
  chunk = chunk < Policy::kMinChunk ? Policy::kMinChunk : chunk;
  chunk = chunk > Policy::kMaxChunk ? Policy::kMaxChunk : chunk;
  g.chunk = ceil_div(chunk, Policy::kTile) * Policy::kTile;
  g.chunks = voxels > 0 ? ceil_div(voxels, g.chunk) : 1;
  return g;
}

}  // namespace spotlight::cuda
