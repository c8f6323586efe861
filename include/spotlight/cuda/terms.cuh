// The two loss terms as separate reductions on the device (the ops
// masked_mse and soft_dice), forward and backward.
// Forward: one memset of the arrival counters and one sums kernel each (see
// sums.cuh); it writes the values and each sample's LossSums (caller-owned:
// the state the backward reads).
// Backward: a one-block kernel turns the sums and the upstream gradient into
// per-sample coefficients (term_coefficients of loss_terms.hpp), then one
// streaming kernel reads the inputs and writes the gradients (soft_dice's
// reads only the mask).
#pragma once

#include "spotlight/core/config.hpp"
#include "spotlight/core/loss_terms.hpp"
#include "spotlight/core/options.hpp"
#include "spotlight/cuda/block.cuh"
#include "spotlight/cuda/config.cuh"
#include "spotlight/cuda/numeric.cuh"
#include "spotlight/cuda/policy.cuh"
#include "spotlight/cuda/sums.cuh"
#include "spotlight/cuda/workspace.cuh"

namespace spotlight::cuda {

namespace detail {

struct TermBuffers {
  SumsBuffers sums_buffers;
};

inline TermBuffers carve_terms(WorkspaceCarver& w, const Grid& g) {
  TermBuffers b;
  unsigned int* tickets = w.take<unsigned int>(g.samples + 1);
  b.sums_buffers.sample_tickets = tickets;
  b.sums_buffers.batch_ticket = tickets ? tickets + g.samples : nullptr;
  b.sums_buffers.partials = w.take<LossSums>(g.tasks());
  return b;
}

template <class T, class Source>
cudaError_t launch_term(const Source& source, index_t samples, index_t voxels, const LossOptions& opt, Term term, T* out,
                        LossSums* sums, void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  using Policy = StreamingPolicy<T>;
  const Grid g = make_grid<Policy>(samples, voxels);
  if (!g.launchable()) return cudaErrorInvalidValue;
  WorkspaceCarver w(workspace);
  const TermBuffers b = carve_terms(w, g);
  if (w.bytes() > workspace_bytes || sums == nullptr) return cudaErrorInvalidValue;
  SPOTLIGHT_CUDA_TRY(cudaMemsetAsync(b.sums_buffers.sample_tickets, 0, (samples + 1) * sizeof(unsigned int), stream));
  return launch_sums<Policy>(source, g, b.sums_buffers, sums, opt, term, out, stream);
}

}  // namespace detail

// Workspace of the masked_mse and soft_dice forwards.
template <class T>
size_t term_workspace_bytes(index_t samples, index_t voxels) {
  WorkspaceCarver w;
  detail::carve_terms(w, make_grid<StreamingPolicy<T>>(samples, voxels));
  return w.bytes();
}

// out = sum(M (Y - P)^2) / D per pool (SPEC section 4), mask given; out
// holds loss_output_size(reduction, samples) values, sums [samples] each
// sample's sums (the backward's state).
template <class T>
cudaError_t masked_mse(const T* pred, const T* target, const bool* mask, index_t samples, index_t voxels,
                       MseNormalization mse_normalization, Reduction reduction, T* out, LossSums* sums,
                       void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  return detail::launch_term<T>(MaskedMseSource<T>{pred, target, mask}, samples, voxels,
                                term_options(mse_normalization, reduction, 0.0), Term::kMmse, out, sums, workspace,
                                workspace_bytes, stream);
}

// out = 1 - 2 sum(S M) / (sum(S) + sum(M) + eps) per pool, mask given;
// out and sums as for masked_mse.
template <class T>
cudaError_t soft_dice(const T* soft, const bool* mask, index_t samples, index_t voxels, double eps,
                      Reduction reduction, T* out, LossSums* sums, void* workspace, size_t workspace_bytes,
                      cudaStream_t stream) {
  return detail::launch_term<T>(SoftDiceSource<T>{soft, mask}, samples, voxels,
                                term_options(MseNormalization::kForeground, reduction, eps), Term::kDice, out, sums,
                                workspace, workspace_bytes, stream);
}

// coef[s] = sample s's gradient coefficients (term_gradient_coefficients of
// loss_terms.hpp on the device); one block.
template <int kThreads, class G>
__global__ void __launch_bounds__(kThreads)
    term_coefficients_kernel(const G* __restrict__ grad_out, const LossSums* __restrict__ sums, Grid grid,
                             Reduction reduction, TermGradParams params, GradCoefficients* __restrict__ coef) {
  const double n = static_cast<double>(grid.voxels);
  if (reduction == Reduction::kBatch) {
    const LossSums pooled = block_pooled_sums<kThreads>(sums, grid.samples);
    const GradCoefficients c = term_coefficients(pooled, n * static_cast<double>(grid.samples), params,
                                                 pool_upstream(reduction, grad_out, 0, grid.samples));
    for (index_t s = threadIdx.x; s < grid.samples; s += kThreads) coef[s] = c;
    return;
  }
  for (index_t s = threadIdx.x; s < grid.samples; s += kThreads)
    coef[s] = term_coefficients(sums[s], n, params, pool_upstream(reduction, grad_out, s, grid.samples));
}

// dL/dP = c_mse M (P - Y), dL/dY = -dL/dP (grad_target may be null); one
// (sample, chunk) per block. M multiplies, so a non-finite P or Y gives NaN there.
template <class Policy, class T>
__global__ void __launch_bounds__(Policy::kBlockThreads)
    masked_mse_backward_kernel(const T* __restrict__ pred, const T* __restrict__ target, const bool* __restrict__ mask,
                               Grid grid, const GradCoefficients* __restrict__ coef, T* __restrict__ grad_pred,
                               T* __restrict__ grad_target) {
  using A = acc_t<T>;
  const index_t task = blockIdx.x;
  const A c = static_cast<A>(coef[grid.sample_of(task)].c_mse);
  struct Item {
    A p, y;
    bool m;
  };
  block_stream<Policy::kBlockThreads, Policy::kItemsPerThread>(
      grid.begin(task), grid.end(task),
      [&](index_t i) { return Item{convert<A>(pred[i]), convert<A>(target[i]), mask[i]}; },
      [&](const Item& v, bool valid, index_t i) {
        if (!valid) return;
        const A g = (v.m ? c : A(0)) * (v.p - v.y);
        grad_pred[i] = convert<T>(g);
        if (grad_target != nullptr) grad_target[i] = convert<T>(-g);
      },
      NoOp{});
}

// dL/dS = c_soft + c_soft_fg M; one (sample, chunk) per block.
template <class Policy, class T>
__global__ void __launch_bounds__(Policy::kBlockThreads)
    soft_dice_backward_kernel(const bool* __restrict__ mask, Grid grid, const GradCoefficients* __restrict__ coef,
                              T* __restrict__ grad_soft) {
  using A = acc_t<T>;
  const index_t task = blockIdx.x;
  const GradCoefficients c = coef[grid.sample_of(task)];
  const A c_soft = static_cast<A>(c.c_soft), c_soft_fg = static_cast<A>(c.c_soft_fg);
  block_stream<Policy::kBlockThreads, Policy::kItemsPerThread>(
      grid.begin(task), grid.end(task), [&](index_t i) { return mask[i]; },
      [&](bool m, bool valid, index_t i) {
        if (valid) grad_soft[i] = convert<T>(m ? c_soft + c_soft_fg : c_soft);
      },
      NoOp{});
}

namespace detail {

inline GradCoefficients* carve_term_backward(WorkspaceCarver& w, index_t samples) {
  return w.take<GradCoefficients>(samples);
}

// The coefficients kernel into the workspace; null when it does not fit.
template <class T, class G>
cudaError_t launch_term_coefficients(const G* grad_out, const LossSums* sums, const Grid& g, Reduction reduction,
                                     const TermGradParams& params, GradCoefficients*& coef, void* workspace,
                                     size_t workspace_bytes, cudaStream_t stream) {
  if (!g.launchable() || sums == nullptr || grad_out == nullptr) return cudaErrorInvalidValue;
  WorkspaceCarver w(workspace);
  coef = carve_term_backward(w, g.samples);
  if (w.bytes() > workspace_bytes) return cudaErrorInvalidValue;
  constexpr int kThreads = StreamingPolicy<T>::kBlockThreads;
  term_coefficients_kernel<kThreads><<<1, kThreads, 0, stream>>>(grad_out, sums, g, reduction, params, coef);
  return launch_error();
}

}  // namespace detail

// Workspace of the masked_mse and soft_dice backwards.
inline size_t term_backward_workspace_bytes(index_t samples) {
  WorkspaceCarver w;
  detail::carve_term_backward(w, samples);
  return w.bytes();
}

// Backward of masked_mse: grad_out holds loss_output_size(reduction,
// samples) upstream gradients (G: float or double), sums the forward's; writes
// grad_pred, and grad_target unless it is null.
template <class T, class G>
cudaError_t masked_mse_backward(const G* grad_out, const T* pred, const T* target, const bool* mask, index_t samples,
                                index_t voxels, const LossSums* sums, MseNormalization mse_normalization,
                                Reduction reduction, T* grad_pred, T* grad_target, void* workspace,
                                size_t workspace_bytes, cudaStream_t stream) {
  using Policy = StreamingPolicy<T>;
  const Grid g = make_grid<Policy>(samples, voxels);
  GradCoefficients* coef = nullptr;
  SPOTLIGHT_CUDA_TRY(detail::launch_term_coefficients<T>(grad_out, sums, g, reduction,
                                                         TermGradParams::masked_mse(mse_normalization), coef,
                                                         workspace, workspace_bytes, stream));
  masked_mse_backward_kernel<Policy><<<static_cast<unsigned int>(g.tasks()), Policy::kBlockThreads, 0, stream>>>(
      pred, target, mask, g, coef, grad_pred, grad_target);
  return launch_error();
}

// Backward of soft_dice: grad_out and sums as for masked_mse_backward.
template <class T, class G>
cudaError_t soft_dice_backward(const G* grad_out, const bool* mask, index_t samples, index_t voxels,
                               const LossSums* sums, double eps, Reduction reduction, T* grad_soft, void* workspace,
                               size_t workspace_bytes, cudaStream_t stream) {
  using Policy = StreamingPolicy<T>;
  const Grid g = make_grid<Policy>(samples, voxels);
  GradCoefficients* coef = nullptr;
  SPOTLIGHT_CUDA_TRY(detail::launch_term_coefficients<T>(grad_out, sums, g, reduction, TermGradParams::soft_dice(eps),
                                                         coef, workspace, workspace_bytes, stream));
  soft_dice_backward_kernel<Policy>
      <<<static_cast<unsigned int>(g.tasks()), Policy::kBlockThreads, 0, stream>>>(mask, g, coef, grad_soft);
  return launch_error();
}

}  // namespace spotlight::cuda
