// Block-level building blocks: the tile loop every streaming kernel runs,
// deterministic reductions (CUB's, whose order is fixed by the block size),
// and the "last block done" arrival that lets the final block of a group
// finish the group's work in the same kernel.
#pragma once

#include <cub/block/block_reduce.cuh>
#include <cub/util_type.cuh>

#include "spotlight/core/config.hpp"
#include "spotlight/cuda/config.cuh"

namespace spotlight::cuda {

struct Plus {
  template <class V>
  __device__ __forceinline__ V operator()(const V& a, const V& b) const {
    return a + b;
  }
};

// For aggregates with an add() member (LossSums and friends).
struct AddFields {
  template <class V>
  __device__ __forceinline__ V operator()(V a, const V& b) const {
    a.add(b);
    return a;
  }
};

// Reduces one value per thread over the block with `op` and returns the
// result to every thread. The combination order is fixed by kThreads, so
// floating-point results are identical run to run. Every thread of the block
// must call it; it may be called again right away.
template <int kThreads, class V, class Op>
__device__ __forceinline__ V block_reduce_all(const V& v, Op op) {
  using Reduce = cub::BlockReduce<V, kThreads>;
  __shared__ typename Reduce::TempStorage temp;
  __shared__ cub::Uninitialized<V> result;
  const V r = Reduce(temp).Reduce(v, op);
  if (threadIdx.x == 0) result.Alias() = r;
  __syncthreads();
  const V all = result.Alias();
  __syncthreads();
  return all;
}

// Streams the voxels [begin, end) through the block in tiles of
// kThreads * kItems: thread t owns items begin + tile + j * kThreads + t
// (coalesced). Per tile it first issues all its loads, `load(i)`, then calls
// `consume(value, valid, i)` for each item and `end_tile()`. Every thread
// runs the same iterations (`valid` is false past end), so consume() may use
// warp-collective operations.
template <int kThreads, int kItems, class Load, class Consume, class EndTile>
__device__ __forceinline__ void block_stream(index_t begin, index_t end, Load&& load, Consume&& consume,
                                             EndTile&& end_tile) {
  using Value = decltype(load(index_t{}));
  for (index_t base = begin; base < end; base += index_t{kThreads} * kItems) {
    Value values[kItems]{};
#pragma unroll
    for (int j = 0; j < kItems; ++j) {
      const index_t i = base + index_t{j} * kThreads + threadIdx.x;
      if (i < end) values[j] = load(i);
    }
#pragma unroll
    for (int j = 0; j < kItems; ++j) {
      const index_t i = base + index_t{j} * kThreads + threadIdx.x;
      consume(values[j], i < end, i);
    }
    end_tile();
  }
}

struct NoOp {
  __device__ __forceinline__ void operator()() const {}
};

// The "last block done" pattern: each of the `expected` blocks of a group
// calls this once, after its global writes (stores or atomics) of the
// group's partial results; it returns true, in every thread, only in the
// block that arrives last, which may then read every other block's writes
// (with __ldcg, through L2). Every thread of the block must call it.
// `counter` must be zero before the first block of the group arrives.
__device__ __forceinline__ bool block_arrives_last(unsigned int* counter, unsigned int expected) {
  __shared__ bool last;
  __threadfence();  // this thread's writes are visible device-wide before the ticket is taken
  __syncthreads();
  if (threadIdx.x == 0) last = atomicAdd(counter, 1u) == expected - 1u;
  __syncthreads();
  const bool is_last = last;
  if (is_last) __threadfence();  // order the reads that follow after every other block's ticket
  __syncthreads();               // `last` is reusable by a later call
  return is_last;
}

}  // namespace spotlight::cuda
