// The fused Spotlight loss on the device (SPEC sections 1-7).
// Forward, Otsu per sample:  range kernel, histogram+Otsu kernel, sums kernel (3 launches).
// Forward, given thresholds: one memset of the arrival counters, sums kernel (1 launch).
// Backward: one kernel reading pred and target and writing grad_pred (and
// grad_target); each block derives its sample's gradient coefficients from
// the forward's per-sample sums and the upstream gradient in its prologue.
// (Reduction "batch" over more than kMaxInlinePoolSamples samples adds one
// single-block kernel that pools the batch once instead of in every block.)
#pragma once

#include "spotlight/core/config.hpp"
#include "spotlight/core/loss_terms.hpp"
#include "spotlight/core/math.hpp"
#include "spotlight/core/options.hpp"
#include "spotlight/cuda/block.cuh"
#include "spotlight/cuda/config.cuh"
#include "spotlight/cuda/numeric.cuh"
#include "spotlight/cuda/otsu.cuh"
#include "spotlight/cuda/policy.cuh"
#include "spotlight/cuda/sums.cuh"
#include "spotlight/cuda/workspace.cuh"

namespace spotlight::cuda {

namespace detail {

template <class A>
struct LossForwardBuffers {
  OtsuBuffers<A> otsu;  // Otsu only
  SumsBuffers sums;
  unsigned int* tickets = nullptr;  // [2 samples + 1]: Otsu per sample, sums per sample, batch
};

template <class A>
LossForwardBuffers<A> carve_loss_forward(WorkspaceCarver& w, const Grid& g, int bins, bool otsu) {
  LossForwardBuffers<A> b;
  b.tickets = w.take<unsigned int>(2 * g.samples + 1);
  if (otsu) b.otsu = carve_otsu<A>(w, g, bins, false);
  b.sums.partials = w.take<LossSums>(g.tasks());
  if (b.tickets != nullptr) {
    b.otsu.tickets = b.tickets;
    b.sums.sample_tickets = b.tickets + g.samples;
    b.sums.batch_ticket = b.tickets + 2 * g.samples;
  }
  return b;
}

}  // namespace detail

template <class T>
size_t loss_forward_workspace_bytes(index_t samples, index_t voxels, int bins, bool otsu) {
  WorkspaceCarver w;
  detail::carve_loss_forward<acc_t<T>>(w, make_grid<StreamingPolicy<T>>(samples, voxels), bins, otsu);
  return w.bytes();
}

// The forward of the fused loss over pred, target [samples, voxels].
// given_thresholds: [samples] device values, or null for Otsu per sample.
// Writes loss (loss_output_size(opt.reduction, samples) values), the
// per-sample thresholds and the per-sample sums (what the backward needs).
template <class T>
cudaError_t loss_forward(const T* pred, const T* target, index_t samples, index_t voxels,
                         const acc_t<T>* given_thresholds, const LossOptions& opt, T* loss, acc_t<T>* thresholds,
                         LossSums* sums, void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  using A = acc_t<T>;
  using Policy = StreamingPolicy<T>;
  const Grid g = make_grid<Policy>(samples, voxels);
  const bool otsu = given_thresholds == nullptr;
  if (!g.launchable() || opt.bins < 2) return cudaErrorInvalidValue;
  WorkspaceCarver w(workspace);
  const detail::LossForwardBuffers<A> b = detail::carve_loss_forward<A>(w, g, opt.bins, otsu);
  if (w.bytes() > workspace_bytes) return cudaErrorInvalidValue;
  if (otsu) {
    // The range kernel zeroes the histograms and all 2 N + 1 counters.
    const ZeroFill zero{b.otsu.hist, samples * opt.bins, b.tickets, 2 * samples + 1};
    SPOTLIGHT_CUDA_TRY(detail::launch_otsu<Policy, false>(target, g, opt.bins, b.otsu, zero, thresholds,
                                                          static_cast<A*>(nullptr), stream));
  } else {
    SPOTLIGHT_CUDA_TRY(cudaMemsetAsync(b.sums.sample_tickets, 0, (samples + 1) * sizeof(unsigned int), stream));
  }
  const LossTermsSource<T> source{pred, target, otsu ? thresholds : given_thresholds, static_cast<A>(opt.k),
                                  otsu ? nullptr : thresholds, loss_variant(opt)};
  return detail::launch_sums<Policy>(source, g, b.sums, sums, opt, Term::kLoss, loss, stream);
}

template <int kThreads, class G>
__global__ void __launch_bounds__(kThreads)
    batch_coefficients_kernel(const G* __restrict__ grad_out, const LossSums* __restrict__ sums, Grid grid,
                              LossOptions opt, GradCoefficients* __restrict__ out) {
  const LossSums pooled = block_pooled_sums<kThreads>(sums, grid.samples);
  if (threadIdx.x == 0) {
    const double voxels = static_cast<double>(grid.voxels) * static_cast<double>(grid.samples);
    *out = pool_coefficients(pool_result(pooled, voxels, opt), opt, convert<double>(grad_out[0]), 1.0, 1.0);
  }
}

// grad_pred (and grad_target when not null) of one (sample, chunk) per block.
// batch_coefficients: null, or the output of batch_coefficients_kernel.
template <class Policy, class T, class G>
__global__ void __launch_bounds__(Policy::kBlockThreads)
    loss_backward_kernel(const G* __restrict__ grad_out, index_t grad_stride, const T* __restrict__ pred,
                         const T* __restrict__ target, Grid grid, const acc_t<T>* __restrict__ thresholds,
                         const LossSums* __restrict__ sums, LossOptions opt, acc_t<T> k,
                         const GradCoefficients* __restrict__ batch_coefficients, T* __restrict__ grad_pred,
                         T* __restrict__ grad_target, LossVariant variant) {
  using A = acc_t<T>;
  constexpr int kThreads = Policy::kBlockThreads;
  const index_t task = blockIdx.x, s = grid.sample_of(task);

  // Every block derives the same coefficients (gradient_coefficients of
  // core/loss_terms.hpp, from the same pool_coefficients): a small batch
  // re-pools the N samples' sums in each block (a block reduction), a large
  // one reads batch_coefficients_kernel's output
  // (needs_batch_coefficients_kernel; the cost of the re-pooling is estimated
  // in docs/cuda.md).
  GradCoefficients c;
  if (opt.reduction == Reduction::kBatch && batch_coefficients == nullptr) {
    const LossSums pooled = block_pooled_sums<kThreads>(sums, grid.samples);
    const double voxels = static_cast<double>(grid.voxels) * static_cast<double>(grid.samples);
    c = pool_coefficients(pool_result(pooled, voxels, opt), opt, convert<double>(grad_out[0]), 1.0, 1.0);
  } else if (opt.reduction == Reduction::kBatch) {
    c = *batch_coefficients;
  } else {
    const double g = convert<double>(grad_out[opt.reduction == Reduction::kNone ? s * grad_stride : 0]);
    const double real = needs_real_pools(opt) ? block_real_pools<kThreads>(sums, grid, opt) : 0.0;
    c = pool_coefficients(pool_result(sums[s], static_cast<double>(grid.voxels), opt), opt, g,
                          static_cast<double>(grid.samples), real);
  }
  const A c_mse = static_cast<A>(c.c_mse), c_soft_fg = static_cast<A>(c.c_soft_fg),
          c_soft = static_cast<A>(c.c_soft), c_mse_all = static_cast<A>(c.c_mse_all);
  const A t = thresholds[s];

  struct Item {
    A p, y;
    bool m;
  };
  block_stream<kThreads, Policy::kItemsPerThread>(
      grid.begin(task), grid.end(task),
      [&](index_t i) {
        const A p = convert<A>(pred[i]), y = convert<A>(target[i]);
        return Item{p, y, variant.active ? variant.foreground(y, t, i) : y > t};
      },
      [&](const Item& v, bool valid, index_t i) {
        if (!valid) return;
        const bool m = v.m;
        if (!variant.active) {
          const A mse = variant.plain ? c_mse_all * (v.p - v.y) : (m ? c_mse * (v.p - v.y) : A(0));
          grad_pred[i] = convert<T>(mse + (m ? c_soft + c_soft_fg : c_soft) * math::soft_mask_grad(v.p, t, k));
          if (grad_target != nullptr) grad_target[i] = convert<T>(-mse);
          return;
        }
        // SPEC section 11 (PoolResult of loss_terms.hpp): dB/dS = 1 or 2 S.
        const A e = v.p - v.y, x = v.p - t;
        const A mse = (m ? c_mse * e : A(0)) + c_mse_all * e;
        const A dbds = variant.squared ? A(2) * variant.soft(x, k) : A(1);
        grad_pred[i] = convert<T>(mse + (c_soft * dbds + (m ? c_soft_fg : A(0))) * variant.soft_grad(x, k));
        if (grad_target != nullptr) grad_target[i] = convert<T>(-mse);
      },
      NoOp{});
}

inline bool needs_batch_coefficients_kernel(index_t samples, Reduction reduction) {
  return reduction == Reduction::kBatch && samples > kMaxInlinePoolSamples;
}

template <class T>
size_t loss_backward_workspace_bytes(index_t samples, Reduction reduction) {
  WorkspaceCarver w;
  if (needs_batch_coefficients_kernel(samples, reduction)) w.take<GradCoefficients>(1);
  return w.bytes();
}

// Backward of loss_forward. grad_out holds loss_output_size(opt.reduction,
// samples) upstream gradients, value j at grad_out[j * grad_stride] (G: T or
// double); thresholds and sums are loss_forward's. grad_target may be null.
template <class T, class G>
cudaError_t loss_backward(const G* grad_out, index_t grad_stride, const T* pred, const T* target, index_t samples,
                          index_t voxels, const acc_t<T>* thresholds, const LossSums* sums, const LossOptions& opt,
                          T* grad_pred, T* grad_target, void* workspace, size_t workspace_bytes,
                          cudaStream_t stream) {
  using Policy = StreamingPolicy<T>;
  const Grid g = make_grid<Policy>(samples, voxels);
  if (!g.launchable()) return cudaErrorInvalidValue;
  WorkspaceCarver w(workspace);
  GradCoefficients* batch_coefficients = nullptr;
  if (needs_batch_coefficients_kernel(samples, opt.reduction)) {
    batch_coefficients = w.take<GradCoefficients>(1);
    if (w.bytes() > workspace_bytes) return cudaErrorInvalidValue;
    batch_coefficients_kernel<Policy::kBlockThreads>
        <<<1, Policy::kBlockThreads, 0, stream>>>(grad_out, sums, g, opt, batch_coefficients);
    SPOTLIGHT_CUDA_TRY(launch_error());
  }
  loss_backward_kernel<Policy><<<static_cast<unsigned int>(g.tasks()), Policy::kBlockThreads, 0, stream>>>(
      grad_out, grad_stride, pred, target, g, thresholds, sums, opt, static_cast<acc_t<T>>(opt.k),
      batch_coefficients, grad_pred, grad_target, loss_variant(opt));
  return launch_error();
}

}  // namespace spotlight::cuda
