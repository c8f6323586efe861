// Otsu standardization (x - T) / std(x) per sample on the device (SPEC
// section 6), forward and backward, with core/moments.hpp's std algorithm
// (as the CPU kernel: scale by a power of two known after the range pass,
// chunk moments about the chunk's mean, Chan's merge).
//
// Forward, three kernels and no host sync:
//   1. otsu.cuh's range kernel: each chunk's range and its sum (shifted by
//      the sample's first value), and zeroes the histograms and tickets;
//   2. stats kernel, same blocks: the sample's range and scale, the chunk's
//      histogram (privatized in shared memory) and the moments of its scaled
//      values about the chunk's mean; the last block of each sample runs
//      Otsu's scan and merges the chunk moments (a fixed tree of Chan merges)
//      into the sample's threshold and StandardizeStats;
//   3. the elementwise output.
// Backward, two kernels: per-chunk sums of g * y, then each block sums its
// sample's chunk sums (in a fixed order) and writes its chunk's gradient.
#pragma once

#include "spotlight/core/config.hpp"
#include "spotlight/core/math.hpp"
#include "spotlight/core/moments.hpp"
#include "spotlight/cuda/block.cuh"
#include "spotlight/cuda/config.cuh"
#include "spotlight/cuda/numeric.cuh"
#include "spotlight/cuda/otsu.cuh"
#include "spotlight/cuda/policy.cuh"
#include "spotlight/cuda/warp.cuh"
#include "spotlight/cuda/workspace.cuh"

namespace spotlight::cuda {

using moments::Moments;
using moments::StandardizeStats;

namespace detail {

template <class A>
struct StandardizeBuffers {
  OtsuBuffers<A> otsu;               // ranges, shifted sums, histograms, tickets
  Moments* chunk_moments = nullptr;  // [tasks]
  A* thresholds = nullptr;           // [samples], when the caller keeps none
  StandardizeStats<A>* stats = nullptr;
};

template <class A>
StandardizeBuffers<A> carve_standardize(WorkspaceCarver& w, const Grid& g, int bins) {
  StandardizeBuffers<A> b;
  unsigned int* tickets = w.take<unsigned int>(g.samples);
  b.otsu = carve_otsu<A>(w, g, bins, true);
  b.otsu.tickets = tickets;
  b.chunk_moments = w.take<Moments>(g.tasks());
  b.thresholds = w.take<A>(g.samples);
  b.stats = w.take<StandardizeStats<A>>(g.samples);
  return b;
}

// Moments written by other blocks, read through L2 (see block_arrives_last).
__device__ __forceinline__ Moments load_moments(const Moments* p) {
  return Moments{__ldcg(&p->count), __ldcg(&p->mean), __ldcg(&p->m2)};
}

// A gradient and an input value, loaded together by block_stream.
template <class A>
struct GradAndValue {
  A g, x;
};

}  // namespace detail

// Pass 2 of the forward (see the top); writes thresholds[s] and stats[s].
template <class Policy, class T>
__global__ void __launch_bounds__(Policy::kBlockThreads)
    standardize_stats_kernel(const T* __restrict__ x, Grid grid, int bins, bool shared_bins,
                             detail::StandardizeBuffers<acc_t<T>> buf, acc_t<T>* __restrict__ thresholds,
                             StandardizeStats<acc_t<T>>* __restrict__ stats) {
  using A = acc_t<T>;
  constexpr int kThreads = Policy::kBlockThreads;
  extern __shared__ unsigned int standardize_bin_counts[];
  const index_t task = blockIdx.x, s = grid.sample_of(task);

  RangePartial<A> range = empty_range<A>();
  for (index_t c = threadIdx.x; c < grid.chunks; c += kThreads)
    range = MergeRanges<A>{}(range, buf.otsu.ranges[s * grid.chunks + c]);
  range = block_reduce_all<kThreads>(range, MergeRanges<A>{});
  const double lo = range.lo, hi = range.hi, bin_scale = math::histogram_scale(lo, hi, bins);
  const A scale = moments::scale_of_range(range.lo, range.hi);

  // The chunk's mean: from the range kernel's shifted sum, or, where that
  // is not finite, from a first read of the chunk's scaled values.
  const index_t begin = grid.begin(task), end = grid.end(task);
  const double count = static_cast<double>(end - begin);
  const double shift = convert<double>(x[s * grid.voxels]);
  double mean = moments::scaled_mean(shift + buf.otsu.moments[task].sum / count, scale);
  if (mean != mean) {  // uniform over the block
    double sum = 0;
    block_stream<kThreads, Policy::kItemsPerThread>(
        begin, end, [&](index_t i) { return convert<A>(x[i]); },
        [&](A v, bool valid, index_t) {
          if (valid) sum += static_cast<double>(v * scale);
        },
        NoOp{});
    mean = block_reduce_all<kThreads>(sum, Plus{}) / count;
  }
  const A m = static_cast<A>(mean);

  unsigned long long* sample_hist = buf.otsu.hist + s * bins;
  if (shared_bins) {
    for (int b = threadIdx.x; b < bins; b += kThreads) standardize_bin_counts[b] = 0u;
    __syncthreads();
  }
  MomentPartial dev{0.0, 0.0};
  block_stream<kThreads, Policy::kItemsPerThread>(
      begin, end, [&](index_t i) { return convert<A>(x[i]); },
      [&](A v, bool valid, index_t) {
        const int bin = valid ? math::histogram_bin(v, lo, hi, bin_scale, bins) : 0;
        if (shared_bins) {
          warp_aggregated_increment(standardize_bin_counts, bin, valid);
        } else {
          warp_aggregated_increment(sample_hist, bin, valid);
        }
        if (valid) {
          const double d = static_cast<double>(v * scale - m);
          dev.sum += d;
          dev.sum_sq += d * d;
        }
      },
      NoOp{});
  if (shared_bins) {
    __syncthreads();
    for (int b = threadIdx.x; b < bins; b += kThreads) {
      const unsigned int c = standardize_bin_counts[b];
      if (c != 0u) atomicAdd(sample_hist + b, static_cast<unsigned long long>(c));
    }
  }
  dev = block_reduce_all<kThreads>(dev, AddFields{});
  if (threadIdx.x == 0)
    buf.chunk_moments[task] = moments::chunk_moments(count, static_cast<double>(m), dev.sum, dev.sum_sq);

  if (!block_arrives_last(buf.otsu.tickets + s, static_cast<unsigned int>(grid.chunks))) return;
  // The last block of sample s: its histogram and chunk moments are complete.
  const int best = block_otsu_bin<kThreads>(sample_hist, bins);
  Moments total;
  for (index_t c = threadIdx.x; c < grid.chunks; c += kThreads)
    total.add(detail::load_moments(buf.chunk_moments + s * grid.chunks + c));
  total = block_reduce_all<kThreads>(total, AddFields{});
  if (threadIdx.x == 0) {
    thresholds[s] = range.poison == A(0) ? exact_bin_centre(range.lo, range.hi, bins, best) : quiet_nan<A>();
    stats[s] = moments::finish(total, scale);
  }
}

// Pass 3: out = (x - T) / std.
template <class Policy, class T>
__global__ void __launch_bounds__(Policy::kBlockThreads)
    standardize_kernel(const T* __restrict__ x, Grid grid, const acc_t<T>* __restrict__ thresholds,
                       const StandardizeStats<acc_t<T>>* __restrict__ stats, T* __restrict__ out) {
  using A = acc_t<T>;
  const index_t task = blockIdx.x, s = grid.sample_of(task);
  const StandardizeStats<A> st = stats[s];
  const A t = thresholds[s] * st.scale;
  block_stream<Policy::kBlockThreads, Policy::kItemsPerThread>(
      grid.begin(task), grid.end(task), [&](index_t i) { return convert<A>(x[i]); },
      [&](A v, bool valid, index_t i) {
        if (valid) out[i] = convert<T>(moments::standardized(v, t, st));
      },
      NoOp{});
}

template <class T>
size_t otsu_standardize_workspace_bytes(index_t samples, index_t voxels, int bins) {
  WorkspaceCarver w;
  detail::carve_standardize<acc_t<T>>(w, make_grid<StreamingPolicy<T>>(samples, voxels), bins);
  return w.bytes();
}

// out = (x - T_s) / std(x_s) for every sample s of x [samples, voxels], and
// what the backward needs: thresholds[s] (as otsu_thresholds) and stats[s]
// (either may be null: then they stay in the workspace).
template <class T>
cudaError_t otsu_standardize_forward(const T* x, index_t samples, index_t voxels, int bins, T* out,
                                     acc_t<T>* thresholds, StandardizeStats<acc_t<T>>* stats, void* workspace,
                                     size_t workspace_bytes, cudaStream_t stream) {
  using A = acc_t<T>;
  using Policy = StreamingPolicy<T>;
  const Grid g = make_grid<Policy>(samples, voxels);
  if (!g.launchable() || bins < 2) return cudaErrorInvalidValue;
  WorkspaceCarver w(workspace);
  const detail::StandardizeBuffers<A> b = detail::carve_standardize<A>(w, g, bins);
  if (w.bytes() > workspace_bytes) return cudaErrorInvalidValue;
  if (!thresholds) thresholds = b.thresholds;
  if (!stats) stats = b.stats;
  const unsigned int blocks = static_cast<unsigned int>(g.tasks());
  const ZeroFill zero{b.otsu.hist, samples * bins, b.otsu.tickets, samples};
  range_kernel<Policy, true><<<blocks, Policy::kBlockThreads, 0, stream>>>(x, g, b.otsu.ranges, b.otsu.moments, zero);
  SPOTLIGHT_CUDA_TRY(launch_error());
  const bool shared_bins = bins <= kMaxSharedBins;
  const size_t shared_bytes = shared_bins ? static_cast<size_t>(bins) * sizeof(unsigned int) : 0;
  standardize_stats_kernel<Policy>
      <<<blocks, Policy::kBlockThreads, shared_bytes, stream>>>(x, g, bins, shared_bins, b, thresholds, stats);
  SPOTLIGHT_CUDA_TRY(launch_error());
  standardize_kernel<Policy><<<blocks, Policy::kBlockThreads, 0, stream>>>(x, g, thresholds, stats, out);
  return launch_error();
}

// out = (x - T_s) / std(x_s) for every sample s of x [samples, voxels].
template <class T>
cudaError_t otsu_standardize(const T* x, index_t samples, index_t voxels, int bins, T* out, void* workspace,
                             size_t workspace_bytes, cudaStream_t stream) {
  return otsu_standardize_forward(x, samples, voxels, bins, out, static_cast<acc_t<T>*>(nullptr),
                                  static_cast<StandardizeStats<acc_t<T>>*>(nullptr), workspace, workspace_bytes,
                                  stream);
}

// Backward pass 1: partial[task] = sum over the chunk of g * y.
template <class Policy, class T>
__global__ void __launch_bounds__(Policy::kBlockThreads)
    standardize_dot_kernel(const T* __restrict__ grad, const T* __restrict__ x, Grid grid,
                           const acc_t<T>* __restrict__ thresholds, const StandardizeStats<acc_t<T>>* __restrict__ stats,
                           double* __restrict__ partial) {
  using A = acc_t<T>;
  constexpr int kThreads = Policy::kBlockThreads;
  const index_t task = blockIdx.x, s = grid.sample_of(task);
  const StandardizeStats<A> st = stats[s];
  const A t = thresholds[s] * st.scale;
  double dot = 0;
  block_stream<kThreads, Policy::kItemsPerThread>(
      grid.begin(task), grid.end(task),
      [&](index_t i) { return detail::GradAndValue<A>{convert<A>(grad[i]), convert<A>(x[i])}; },
      [&](detail::GradAndValue<A> v, bool valid, index_t) {
        if (valid) dot += static_cast<double>(v.g * moments::standardized(v.x, t, st));
      },
      NoOp{});
  dot = block_reduce_all<kThreads>(dot, Plus{});
  if (threadIdx.x == 0) partial[task] = dot;
}

// Backward pass 2: grad_x of the block's chunk; the block first sums its
// sample's chunk partials (the same fixed order in every block).
template <class Policy, class T>
__global__ void __launch_bounds__(Policy::kBlockThreads)
    standardize_grad_kernel(const T* __restrict__ grad, const T* __restrict__ x, Grid grid,
                            const StandardizeStats<acc_t<T>>* __restrict__ stats, const double* __restrict__ partial,
                            T* __restrict__ grad_x) {
  using A = acc_t<T>;
  constexpr int kThreads = Policy::kBlockThreads;
  const index_t task = blockIdx.x, s = grid.sample_of(task);
  double dot = 0;
  for (index_t c = threadIdx.x; c < grid.chunks; c += kThreads) dot += partial[s * grid.chunks + c];
  dot = block_reduce_all<kThreads>(dot, Plus{});
  const A k = static_cast<A>(dot / static_cast<double>(grid.voxels));
  const StandardizeStats<A> st = stats[s];
  block_stream<kThreads, Policy::kItemsPerThread>(
      grid.begin(task), grid.end(task),
      [&](index_t i) { return detail::GradAndValue<A>{convert<A>(grad[i]), convert<A>(x[i])}; },
      [&](detail::GradAndValue<A> v, bool valid, index_t i) {
        if (valid) grad_x[i] = convert<T>(moments::standardize_grad(v.g, v.x, k, st));
      },
      NoOp{});
}

template <class T>
size_t otsu_standardize_backward_workspace_bytes(index_t samples, index_t voxels) {
  WorkspaceCarver w;
  w.take<double>(make_grid<StreamingPolicy<T>>(samples, voxels).tasks());
  return w.bytes();
}

// grad_x = d(sum grad * y)/dx for y = otsu_standardize(x), T held constant,
// from the forward's thresholds and stats. Two kernels on `stream`.
template <class T>
cudaError_t otsu_standardize_backward(const T* grad, const T* x, index_t samples, index_t voxels,
                                      const acc_t<T>* thresholds, const StandardizeStats<acc_t<T>>* stats, T* grad_x,
                                      void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  using Policy = StreamingPolicy<T>;
  const Grid g = make_grid<Policy>(samples, voxels);
  if (!g.launchable()) return cudaErrorInvalidValue;
  WorkspaceCarver w(workspace);
  double* partial = w.take<double>(g.tasks());
  if (w.bytes() > workspace_bytes) return cudaErrorInvalidValue;
  const unsigned int blocks = static_cast<unsigned int>(g.tasks());
  standardize_dot_kernel<Policy>
      <<<blocks, Policy::kBlockThreads, 0, stream>>>(grad, x, g, thresholds, stats, partial);
  SPOTLIGHT_CUDA_TRY(launch_error());
  standardize_grad_kernel<Policy><<<blocks, Policy::kBlockThreads, 0, stream>>>(grad, x, g, stats, partial, grad_x);
  return launch_error();
}

}  // namespace spotlight::cuda
