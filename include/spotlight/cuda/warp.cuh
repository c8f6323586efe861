// Warp-level building blocks.
#pragma once

#include "spotlight/cuda/config.cuh"

namespace spotlight::cuda {

__device__ __forceinline__ int lane_id() { return static_cast<int>(threadIdx.x) & (kWarpThreads - 1); }

// counters[bin] += 1 for every lane whose `valid` is set, with one atomic per
// distinct bin of the warp: lanes holding the same bin elect their lowest
// lane, which adds their number. When most voxels fall in one bin (the
// background of a fluorescence volume) this turns 32 colliding atomics into
// one. Integer counts: the result does not depend on the order of the adds.
// Warp-collective: all 32 lanes of the warp must call it together.
template <class Counter>
__device__ __forceinline__ void warp_aggregated_increment(Counter* counters, int bin, bool valid) {
  const unsigned peers = __match_any_sync(0xffffffffu, valid ? bin : -1);
  if (valid && lane_id() == __ffs(peers) - 1) atomicAdd(counters + bin, static_cast<Counter>(__popc(peers)));
}

}  // namespace spotlight::cuda
