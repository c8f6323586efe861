// Per-sample LossSums in one kernel, losses included (SPEC sections 2-5):
// one block per (sample, chunk) streams its voxels once and writes its
// partial sums to a fixed slot; the last block of each sample to finish adds
// the sample's partials in a fixed order (a block reduction with a fixed
// tree) and writes the sample's sums; the last sample to finish pools the
// batch and writes the loss. No floating-point atomics: the result is the
// same bits run after run. Three sources share the kernel: the fused loss,
// masked_mse and soft_dice.
#pragma once

#include "spotlight/core/config.hpp"
#include "spotlight/core/loss_terms.hpp"
#include "spotlight/core/math.hpp"
#include "spotlight/core/options.hpp"
#include "spotlight/cuda/block.cuh"
#include "spotlight/cuda/config.cuh"
#include "spotlight/cuda/numeric.cuh"
#include "spotlight/cuda/policy.cuh"
#include "spotlight/cuda/workspace.cuh"

namespace spotlight::cuda {

// One voxel's contributions to the LossSums fields, in the accumulation
// type. A thread adds a tile's worth in A (at most kItemsPerThread values),
// then widens to double: float error stays bounded whatever the volume.
template <class A>
using TermValues = BasicLossSums<A>;

template <class A>
__device__ __forceinline__ LossSums widen(const TermValues<A>& v) {
  return {v.fg, v.sq_err, v.soft, v.soft_fg, v.poison, v.sq_err_all, v.above};
}

// The published variants' per-voxel choices (SPEC section 11), uniform over
// a launch: the kernels branch on `active` once per voxel, warp-uniformly.
struct LossVariant {
  bool active = false;  // false: the defaults of sections 2-5 (with either MSE term)
  bool plain = false;   // MseTerm::kPlain: the squared error of every voxel
  bool count = false;   // LossOptions::count_above: add P > T (LossSums::above)
  const bool* mask = nullptr;
  SoftMask soft_mask = SoftMask::kClamped;
  MaskRule mask_rule = MaskRule::kGreater;
  bool squared = false;

  template <class A>
  __device__ __forceinline__ bool foreground(A y, A t, index_t i) const {
    if (mask != nullptr) return mask[i];
    return mask_rule == MaskRule::kGreaterEqual ? y >= t : y > t;
  }
  // S and dS/dP of x = P - T.
  template <class A>
  __device__ __forceinline__ A soft(A x, A k) const {
    if (soft_mask == SoftMask::kUnclamped) return math::unclamped_soft_mask(x, k);
    if (soft_mask == SoftMask::kViscy) return math::viscy_soft_mask(x, k);
    return A(0.5) + A(0.5) * math::clamped_tunable_sigmoid(x, k);
  }
  template <class A>
  __device__ __forceinline__ A soft_grad(A x, A k) const {
    if (soft_mask == SoftMask::kUnclamped) return math::unclamped_soft_mask_grad(x, k);
    if (soft_mask == SoftMask::kViscy) return math::viscy_soft_mask_grad(x, k);
    return A(0.5) * math::clamped_tunable_sigmoid_grad(x, k);
  }
};

inline LossVariant loss_variant(const LossOptions& opt) {
  LossVariant v;
  v.active = !opt.default_variant();
  v.plain = opt.mse_term == MseTerm::kPlain;
  v.count = opt.count_above;
  v.mask = opt.mask;
  v.soft_mask = opt.soft_mask;
  v.mask_rule = opt.mask_rule;
  v.squared = opt.dice_denominator == DiceDenominator::kSquared;
  return v;
}

// The fused loss: M = target > T_s, S = soft mask of pred at T_s.
template <class T>
struct LossTermsSource {
  using A = acc_t<T>;
  const T* pred;
  const T* target;
  const A* thresholds;         // [samples]
  A k;
  A* copy_thresholds_to;       // null, or the op's threshold output (given thresholds)
  LossVariant variant{};       // SPEC section 11; inactive: sections 2-5

  struct Item {
    A p, y;
    bool m;  // the mask: y > t by default, else LossVariant::foreground
  };
  struct Sample {
    const T* pred;
    const T* target;
    A t, k;
    LossVariant variant;
    __device__ __forceinline__ Item load(index_t i) const {
      const A p = convert<A>(pred[i]), y = convert<A>(target[i]);
      return {p, y, variant.active ? variant.foreground(y, t, i) : y > t};
    }
    __device__ __forceinline__ TermValues<A> values(const Item& v) const {
      const bool m = v.m;
      const A d = v.y - v.p;
      const A above = variant.count && v.p > t ? A(1) : A(0);
      if (!variant.active) {
        const A soft = math::soft_mask(v.p, t, k);
        return {m ? A(1) : A(0),  m && !variant.plain ? d * d : A(0),      soft, m ? soft : A(0),
                math::poison(v.y) + math::poison(v.p), variant.plain ? d * d : A(0), above};
      }
      const A soft = variant.soft(v.p - t, k);
      return {m ? A(1) : A(0),   m ? d * d : A(0),
              variant.squared ? soft * soft : soft,
              m ? soft : A(0),   math::poison(v.y) + math::poison(v.p),
              d * d,             above};
    }
  };
  __device__ __forceinline__ Sample sample(index_t s) const { return {pred, target, thresholds[s], k, variant}; }
  __device__ __forceinline__ void block_prologue(index_t s, index_t chunk) const {
    if (copy_thresholds_to != nullptr && chunk == 0 && threadIdx.x == 0) copy_thresholds_to[s] = thresholds[s];
  }
};

// masked_mse(pred, target, mask): fg, sq_err and poison.
template <class T>
struct MaskedMseSource {
  using A = acc_t<T>;
  const T* pred;
  const T* target;
  const bool* mask;

  struct Item {
    A p, y;
    bool m;
  };
  struct Sample {
    const T* pred;
    const T* target;
    const bool* mask;
    __device__ __forceinline__ Item load(index_t i) const {
      return {convert<A>(pred[i]), convert<A>(target[i]), mask[i]};
    }
    __device__ __forceinline__ TermValues<A> values(const Item& v) const {
      const A d = v.y - v.p;
      return {v.m ? A(1) : A(0), v.m ? d * d : A(0), A(0), A(0), math::poison(v.y) + math::poison(v.p)};
    }
  };
  __device__ __forceinline__ Sample sample(index_t) const { return {pred, target, mask}; }
  __device__ __forceinline__ void block_prologue(index_t, index_t) const {}
};

// soft_dice(soft, mask): fg, soft, soft_fg and poison.
template <class T>
struct SoftDiceSource {
  using A = acc_t<T>;
  const T* soft;
  const bool* mask;

  struct Item {
    A x;
    bool m;
  };
  struct Sample {
    const T* soft;
    const bool* mask;
    __device__ __forceinline__ Item load(index_t i) const { return {convert<A>(soft[i]), mask[i]}; }
    __device__ __forceinline__ TermValues<A> values(const Item& v) const {
      return {v.m ? A(1) : A(0), A(0), v.x, v.m ? v.x : A(0), math::poison(v.x)};
    }
  };
  __device__ __forceinline__ Sample sample(index_t) const { return {soft, mask}; }
  __device__ __forceinline__ void block_prologue(index_t, index_t) const {}
};

// Another block's LossSums, read through L2.
__device__ __forceinline__ LossSums load_sums_coherent(const LossSums* p) {
  LossSums s;
  s.fg = __ldcg(&p->fg);
  s.sq_err = __ldcg(&p->sq_err);
  s.soft = __ldcg(&p->soft);
  s.soft_fg = __ldcg(&p->soft_fg);
  s.poison = __ldcg(&p->poison);
  s.sq_err_all = __ldcg(&p->sq_err_all);
  s.above = __ldcg(&p->above);
  return s;
}

// The batch pool: sums of every sample, in the block's fixed order. The
// forward's finalize and the backward use this one function, so both see
// the same pooled sums. Every thread must call it; all get the result.
template <int kThreads>
__device__ __forceinline__ LossSums block_pooled_sums(const LossSums* sums, index_t samples) {
  LossSums mine;
  for (index_t s = threadIdx.x; s < samples; s += kThreads) mine.add(load_sums_coherent(sums + s));
  return block_reduce_all<kThreads>(mine, AddFields{});
}

// The op's value for reduction "batch", "mean" or "sum" from the per-sample
// sums: finalize_losses of core/loss_terms.hpp on the device, from the same
// pool_result, PoolTotals and reduce_pools.
template <int kThreads>
__device__ double block_pooled_value(const LossSums* sums, const Grid& grid, const LossOptions& opt, Term term) {
  const double n = static_cast<double>(grid.voxels);
  if (opt.reduction == Reduction::kBatch) {
    const LossSums pooled = block_pooled_sums<kThreads>(sums, grid.samples);
    return term_of(pool_result(pooled, n * static_cast<double>(grid.samples), opt), term);
  }
  PoolTotals mine;
  for (index_t s = threadIdx.x; s < grid.samples; s += kThreads) {
    const PoolResult r = pool_result(load_sums_coherent(sums + s), n, opt);
    mine.add_pool(r, term_of(r, term), opt.lam);
  }
  const PoolTotals totals = block_reduce_all<kThreads>(mine, AddFields{});
  return reduce_pools(totals, opt.reduction, opt.empty_pools, static_cast<double>(grid.samples));
}

// The pools whose Dice counts (VisCy's policy), summed over the batch.
template <int kThreads>
__device__ double block_real_pools(const LossSums* sums, const Grid& grid, const LossOptions& opt) {
  double mine = 0.0;
  for (index_t s = threadIdx.x; s < grid.samples; s += kThreads)
    mine += pool_result(load_sums_coherent(sums + s), static_cast<double>(grid.voxels), opt).dice_weight;
  return block_reduce_all<kThreads>(mine, Plus{});
}

// Workspace arrays of the sums kernel.
struct SumsBuffers {
  LossSums* partials = nullptr;          // [tasks]
  unsigned int* sample_tickets = nullptr;  // [samples], zero before the launch
  unsigned int* batch_ticket = nullptr;    // [1], zero before the launch
};

// sums[s] = LossSums of sample s; values = the op's output in Out: [samples]
// for Reduction::kNone, else [1].
template <class Policy, class Source, class Out>
__global__ void __launch_bounds__(Policy::kBlockThreads)
    sums_kernel(Source source, Grid grid, SumsBuffers buf, LossSums* __restrict__ sums, LossOptions opt, Term term,
                Out* __restrict__ values) {
  using A = typename Source::A;
  constexpr int kThreads = Policy::kBlockThreads;
  const index_t task = blockIdx.x, s = grid.sample_of(task);
  source.block_prologue(s, grid.chunk_of(task));
  const auto sample = source.sample(s);

  TermValues<A> tile{};
  LossSums total;
  block_stream<kThreads, Policy::kItemsPerThread>(
      grid.begin(task), grid.end(task), [&](index_t i) { return sample.load(i); },
      [&](const auto& item, bool valid, index_t) {
        if (valid) tile.add(sample.values(item));
      },
      [&] {
        total.add(widen(tile));
        tile = TermValues<A>{};
      });
  const LossSums block_total = block_reduce_all<kThreads>(total, AddFields{});
  if (threadIdx.x == 0) buf.partials[task] = block_total;

  if (!block_arrives_last(buf.sample_tickets + s, static_cast<unsigned int>(grid.chunks))) return;
  // The last block of sample s: add the sample's chunk partials.
  LossSums mine;
  for (index_t c = threadIdx.x; c < grid.chunks; c += kThreads)
    mine.add(load_sums_coherent(buf.partials + s * grid.chunks + c));
  const LossSums sample_sums = block_reduce_all<kThreads>(mine, AddFields{});
  if (threadIdx.x == 0) {
    sums[s] = sample_sums;
    if (opt.reduction == Reduction::kNone)
      values[s] = convert<Out>(term_of(pool_result(sample_sums, static_cast<double>(grid.voxels), opt), term));
  }
  if (opt.reduction == Reduction::kNone) return;

  if (!block_arrives_last(buf.batch_ticket, static_cast<unsigned int>(grid.samples))) return;
  // The last sample to finish: pool the batch.
  const double value = block_pooled_value<kThreads>(sums, grid, opt, term);
  if (threadIdx.x == 0) values[0] = convert<Out>(value);
}

namespace detail {

// Launches sums_kernel; buf's tickets must be zero on the stream already.
template <class Policy, class Source, class Out>
cudaError_t launch_sums(const Source& source, const Grid& g, const SumsBuffers& buf, LossSums* sums,
                        const LossOptions& opt, Term term, Out* values, cudaStream_t stream) {
  sums_kernel<Policy><<<static_cast<unsigned int>(g.tasks()), Policy::kBlockThreads, 0, stream>>>(source, g, buf, sums,
                                                                                                 opt, term, values);
  return launch_error();
}

}  // namespace detail

}  // namespace spotlight::cuda
