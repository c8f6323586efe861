// Batched per-sample Otsu thresholds on the device (SPEC section 1), in two
// kernels and no host round trip:
//   1. range kernel, one block per (sample, chunk): the chunk's min, max and
//      poison (NaN when it holds NaN or Inf), and optionally its shifted
//      first and second moments (for standardization). It also zeroes the
//      histograms and arrival counters the next kernels accumulate into.
//   2. histogram kernel, same blocks: each block merges its sample's chunk
//      ranges, counts its chunk into a histogram privatized in shared memory
//      (warp-aggregated increments), and adds it to the sample's global
//      histogram with one integer atomicAdd per non-empty bin. The last block
//      of each sample to finish runs Otsu's scan over the sample's histogram
//      (a block-wide prefix sum), and writes the threshold.
// Counts are integers and the criterion is math.hpp's, in the same double
// operations, so thresholds equal the CPU kernel's to the bit.
#pragma once

#include <cub/block/block_scan.cuh>

#include "spotlight/core/config.hpp"
#include "spotlight/core/math.hpp"
#include "spotlight/cuda/block.cuh"
#include "spotlight/cuda/config.cuh"
#include "spotlight/cuda/numeric.cuh"
#include "spotlight/cuda/policy.cuh"
#include "spotlight/cuda/warp.cuh"
#include "spotlight/cuda/workspace.cuh"

namespace spotlight::cuda {

// Range of a chunk or a sample; poison is 0, or NaN when a value is NaN or Inf.
template <class A>
struct RangePartial {
  A lo, hi, poison;
};

template <class A>
__device__ __forceinline__ RangePartial<A> empty_range() {
  return {infinity<A>(), -infinity<A>(), A(0)};
}

template <class A>
struct MergeRanges {
  // NaN never wins a comparison, so lo and hi are those of the finite values
  // (and +-Inf); the poison sum remembers the NaN.
  __device__ __forceinline__ RangePartial<A> operator()(const RangePartial<A>& a, const RangePartial<A>& b) const {
    return {b.lo < a.lo ? b.lo : a.lo, b.hi > a.hi ? b.hi : a.hi, a.poison + b.poison};
  }
};

// Sums of (x - shift) and (x - shift)^2 over a chunk, in double; shift is the
// first value of the sample, which keeps the variance free of cancellation
// for data far from 0.
struct MomentPartial {
  double sum, sum_sq;
  __device__ __forceinline__ void add(const MomentPartial& o) {
    sum += o.sum;
    sum_sq += o.sum_sq;
  }
};

// Device arrays of the two Otsu kernels; tickets are carved by the caller,
// which may need more arrival counters zeroed by the range kernel.
template <class A>
struct OtsuBuffers {
  RangePartial<A>* ranges = nullptr;   // [tasks]
  MomentPartial* moments = nullptr;    // [tasks], standardization only
  unsigned long long* hist = nullptr;  // [samples * bins]
  unsigned int* tickets = nullptr;     // [samples]: histogram blocks done per sample
};

template <class A>
OtsuBuffers<A> carve_otsu(WorkspaceCarver& w, const Grid& g, int bins, bool moments) {
  OtsuBuffers<A> b;
  b.ranges = w.take<RangePartial<A>>(g.tasks());
  if (moments) b.moments = w.take<MomentPartial>(g.tasks());
  b.hist = w.take<unsigned long long>(g.samples * bins);
  return b;
}

// What the range kernel zeroes, grid-stride, before the kernels that follow
// it on the stream accumulate into it: the histograms and every arrival
// counter of the op. This saves a memset per buffer.
struct ZeroFill {
  unsigned long long* hist = nullptr;
  index_t hist_count = 0;
  unsigned int* counters = nullptr;
  index_t counter_count = 0;

  __device__ __forceinline__ void run() const {
    const index_t stride = index_t{gridDim.x} * blockDim.x;
    const index_t first = index_t{blockIdx.x} * blockDim.x + threadIdx.x;
    for (index_t i = first; i < hist_count; i += stride) hist[i] = 0;
    for (index_t i = first; i < counter_count; i += stride) counters[i] = 0;
  }
};

// math::bin_centre with its roundings spelled out: nvcc would contract
// lo + (i + 0.5) * width into one fma and lose bit-equality with the CPU.
// As the CPU's exact_bin_centre, halved on a range wider than DBL_MAX.
template <class A>
__device__ __forceinline__ A exact_bin_centre(A lo, A hi, int bins, int i) {
  const double l = static_cast<double>(lo), h = static_cast<double>(hi);
  const double half = math::wide_range(l, h) ? 0.5 : 1.0;
  const double width = __dsub_rn(__dmul_rn(h, half), __dmul_rn(l, half)) / bins;
  return static_cast<A>(__dadd_rn(__dmul_rn(l, half), __dmul_rn(i + 0.5, width)) / half);
}

struct OtsuCandidate {
  double criterion;
  int bin;
};

// The larger criterion; on a tie the lower bin (math::otsu_bin keeps the
// first maximum).
struct FirstMaximum {
  __device__ __forceinline__ OtsuCandidate operator()(const OtsuCandidate& a, const OtsuCandidate& b) const {
    return (b.criterion > a.criterion || (b.criterion == a.criterion && b.bin < a.bin)) ? b : a;
  }
};

// math::otsu_bin over a global histogram, by the whole block: class weights
// and weighted sums are integer prefix sums (exact, so equal to the CPU's
// running double sums below 2^53), each candidate's criterion is
// math::otsu_criterion on the same doubles, and the first maximum wins.
// Reads through L2 (__ldcg): other blocks' atomics wrote the counts.
// Returns the bin in every thread; every thread must call it.
template <int kThreads>
__device__ int block_otsu_bin(const unsigned long long* hist, int bins) {
  using Scan = cub::BlockScan<unsigned long long, kThreads>;
  __shared__ typename Scan::TempStorage scan_storage;
  unsigned long long count = 0, weighted = 0;
  for (int i = threadIdx.x; i < bins; i += kThreads) {
    const unsigned long long c = __ldcg(hist + i);
    count += c;
    weighted += c * (2ull * i + 1ull);
  }
  const unsigned long long total = block_reduce_all<kThreads>(count, Plus{});
  const unsigned long long total_weighted = block_reduce_all<kThreads>(weighted, Plus{});

  OtsuCandidate best{-1.0, 0};
  unsigned long long carry_count = 0, carry_weighted = 0;  // bins of the previous tiles
  for (int base = 0; base < bins; base += kThreads) {
    const int i = base + static_cast<int>(threadIdx.x);
    const unsigned long long c = i < bins ? __ldcg(hist + i) : 0ull;
    unsigned long long w1, s1, tile_count, tile_weighted;
    Scan(scan_storage).InclusiveSum(c, w1, tile_count);
    __syncthreads();
    Scan(scan_storage).InclusiveSum(c * (2ull * i + 1ull), s1, tile_weighted);
    __syncthreads();
    w1 += carry_count;
    s1 += carry_weighted;
    carry_count += tile_count;
    carry_weighted += tile_weighted;
    if (i + 1 < bins) {
      const double dw1 = static_cast<double>(w1), dw2 = static_cast<double>(total - w1);
      if (dw1 != 0.0 && dw2 != 0.0) {
        const double v = math::otsu_criterion(dw1, static_cast<double>(s1), dw2,
                                              static_cast<double>(total_weighted - s1));
        if (v > best.criterion) best = {v, i};  // a thread's bins ascend: strict > keeps the first
      }
    }
  }
  return block_reduce_all<kThreads>(best, FirstMaximum{}).bin;
}

template <class Policy, bool kMoments, class T>
__global__ void __launch_bounds__(Policy::kBlockThreads)
    range_kernel(const T* __restrict__ x, Grid grid, RangePartial<acc_t<T>>* __restrict__ ranges,
                 MomentPartial* __restrict__ moments, ZeroFill zero) {
  using A = acc_t<T>;
  constexpr int kThreads = Policy::kBlockThreads;
  zero.run();
  const index_t task = blockIdx.x;
  double shift = 0.0;
  if constexpr (kMoments) shift = convert<double>(x[grid.sample_of(task) * grid.voxels]);
  RangePartial<A> range = empty_range<A>();
  MomentPartial moment{0.0, 0.0};
  block_stream<kThreads, Policy::kItemsPerThread>(
      grid.begin(task), grid.end(task), [&](index_t i) { return convert<A>(x[i]); },
      [&](A v, bool valid, index_t) {
        if (!valid) return;
        range.lo = v < range.lo ? v : range.lo;
        range.hi = v > range.hi ? v : range.hi;
        range.poison += math::poison(v);
        if constexpr (kMoments) {
          const double d = static_cast<double>(v) - shift;
          moment.sum += d;
          moment.sum_sq += d * d;
        }
      },
      NoOp{});
  range = block_reduce_all<kThreads>(range, MergeRanges<A>{});
  if constexpr (kMoments) moment = block_reduce_all<kThreads>(moment, AddFields{});
  if (threadIdx.x == 0) {
    ranges[task] = range;
    if constexpr (kMoments) moments[task] = moment;
  }
}

// Writes thresholds[s] (Out: the accumulation type for the ops, or any type
// convert<> reaches) and, with kMoments, inv_std[s] = 1 / std(x_s).
template <class Policy, bool kMoments, class T, class Out>
__global__ void __launch_bounds__(Policy::kBlockThreads)
    histogram_otsu_kernel(const T* __restrict__ x, Grid grid, int bins, bool shared_bins, OtsuBuffers<acc_t<T>> buf,
                          Out* __restrict__ thresholds, acc_t<T>* __restrict__ inv_std) {
  using A = acc_t<T>;
  constexpr int kThreads = Policy::kBlockThreads;
  extern __shared__ unsigned int shared_bin_counts[];
  const index_t task = blockIdx.x, s = grid.sample_of(task);

  RangePartial<A> range = empty_range<A>();
  for (index_t c = threadIdx.x; c < grid.chunks; c += kThreads)
    range = MergeRanges<A>{}(range, buf.ranges[s * grid.chunks + c]);
  range = block_reduce_all<kThreads>(range, MergeRanges<A>{});
  // Bins in double, as the CPU kernel: exact for float inputs.
  const double lo = range.lo, hi = range.hi, scale = math::histogram_scale(lo, hi, bins);

  unsigned long long* sample_hist = buf.hist + s * bins;
  if (shared_bins) {
    for (int b = threadIdx.x; b < bins; b += kThreads) shared_bin_counts[b] = 0u;
    __syncthreads();
  }
  block_stream<kThreads, Policy::kItemsPerThread>(
      grid.begin(task), grid.end(task), [&](index_t i) { return convert<A>(x[i]); },
      [&](A v, bool valid, index_t) {
        const int bin = valid ? math::histogram_bin(v, lo, hi, scale, bins) : 0;
        if (shared_bins) {
          warp_aggregated_increment(shared_bin_counts, bin, valid);
        } else {
          warp_aggregated_increment(sample_hist, bin, valid);
        }
      },
      NoOp{});
  if (shared_bins) {
    __syncthreads();
    for (int b = threadIdx.x; b < bins; b += kThreads) {
      const unsigned int c = shared_bin_counts[b];
      if (c != 0u) atomicAdd(sample_hist + b, static_cast<unsigned long long>(c));
    }
  }

  if (!block_arrives_last(buf.tickets + s, static_cast<unsigned int>(grid.chunks))) return;
  // The last block of sample s: its histogram is complete.
  const int best = block_otsu_bin<kThreads>(sample_hist, bins);
  if (threadIdx.x == 0) {
    const A t = range.poison == A(0) ? exact_bin_centre(range.lo, range.hi, bins, best) : quiet_nan<A>();
    thresholds[s] = convert<Out>(t);
  }
  if constexpr (kMoments) {
    MomentPartial moment{0.0, 0.0};
    for (index_t c = threadIdx.x; c < grid.chunks; c += kThreads) moment.add(buf.moments[s * grid.chunks + c]);
    moment = block_reduce_all<kThreads>(moment, AddFields{});
    if (threadIdx.x == 0) {
      // As the CPU kernel: population variance, std::max(0, var) (which
      // maps NaN to 0), and 1 in place of a zero std.
      const double n = static_cast<double>(grid.voxels);
      const double var = (moment.sum_sq - moment.sum * moment.sum / n) / n;
      const double sd = sqrt(0.0 < var ? var : 0.0);
      inv_std[s] = static_cast<A>(1.0 / (sd > 0.0 || isnan(sd) ? sd : 1.0));
    }
  }
}

namespace detail {

// The two Otsu kernels on `stream`. `zero` must cover buf.hist and
// buf.tickets (and may cover more).
template <class Policy, bool kMoments, class T, class Out>
cudaError_t launch_otsu(const T* x, const Grid& g, int bins, const OtsuBuffers<acc_t<T>>& buf, const ZeroFill& zero,
                        Out* thresholds, acc_t<T>* inv_std, cudaStream_t stream) {
  const unsigned int blocks = static_cast<unsigned int>(g.tasks());
  range_kernel<Policy, kMoments><<<blocks, Policy::kBlockThreads, 0, stream>>>(x, g, buf.ranges, buf.moments, zero);
  SPOTLIGHT_CUDA_TRY(launch_error());
  const bool shared_bins = bins <= kMaxSharedBins;
  const size_t shared_bytes = shared_bins ? static_cast<size_t>(bins) * sizeof(unsigned int) : 0;
  histogram_otsu_kernel<Policy, kMoments><<<blocks, Policy::kBlockThreads, shared_bytes, stream>>>(
      x, g, bins, shared_bins, buf, thresholds, inv_std);
  return launch_error();
}

}  // namespace detail

// Workspace of otsu_thresholds.
template <class T>
size_t otsu_thresholds_workspace_bytes(index_t samples, index_t voxels, int bins) {
  const Grid g = make_grid<StreamingPolicy<T>>(samples, voxels);
  WorkspaceCarver w;
  w.take<unsigned int>(samples);
  carve_otsu<acc_t<T>>(w, g, bins, false);
  return w.bytes();
}

// thresholds[s] = Otsu threshold of sample s of x [samples, voxels] (NaN
// for a sample holding NaN or Inf); Out is T or acc_t<T>. Two kernels on
// `stream`, no synchronization.
template <class T, class Out>
cudaError_t otsu_thresholds(const T* x, index_t samples, index_t voxels, int bins, Out* thresholds, void* workspace,
                            size_t workspace_bytes, cudaStream_t stream) {
  using Policy = StreamingPolicy<T>;
  const Grid g = make_grid<Policy>(samples, voxels);
  if (!g.launchable() || bins < 2) return cudaErrorInvalidValue;
  WorkspaceCarver w(workspace);
  unsigned int* tickets = w.take<unsigned int>(samples);
  OtsuBuffers<acc_t<T>> buf = carve_otsu<acc_t<T>>(w, g, bins, false);
  buf.tickets = tickets;
  if (w.bytes() > workspace_bytes) return cudaErrorInvalidValue;
  const ZeroFill zero{buf.hist, samples * bins, tickets, samples};
  return detail::launch_otsu<Policy, false>(x, g, bins, buf, zero, thresholds, static_cast<acc_t<T>*>(nullptr),
                                            stream);
}

}  // namespace spotlight::cuda
