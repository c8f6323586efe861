// The two loss terms as separate reductions on the device (the ops
// masked_mse and soft_dice): one memset of the arrival counters and one
// sums kernel each (see sums.cuh).
#pragma once

#include "spotlight/core/config.hpp"
#include "spotlight/core/loss_terms.hpp"
#include "spotlight/core/options.hpp"
#include "spotlight/cuda/config.cuh"
#include "spotlight/cuda/policy.cuh"
#include "spotlight/cuda/sums.cuh"
#include "spotlight/cuda/workspace.cuh"

namespace spotlight::cuda {

namespace detail {

struct TermBuffers {
  SumsBuffers sums_buffers;
  LossSums* sums = nullptr;  // [samples]
};

inline TermBuffers carve_terms(WorkspaceCarver& w, const Grid& g) {
  TermBuffers b;
  unsigned int* tickets = w.take<unsigned int>(g.samples + 1);
  b.sums_buffers.sample_tickets = tickets;
  b.sums_buffers.batch_ticket = tickets ? tickets + g.samples : nullptr;
  b.sums_buffers.partials = w.take<LossSums>(g.tasks());
  b.sums = w.take<LossSums>(g.samples);
  return b;
}

template <class T, class Source>
cudaError_t launch_term(const Source& source, index_t samples, index_t voxels, const FinalizeParams& fin, T* out,
                        void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  using Policy = StreamingPolicy<T>;
  const Grid g = make_grid<Policy>(samples, voxels);
  if (!g.launchable()) return cudaErrorInvalidValue;
  WorkspaceCarver w(workspace);
  const TermBuffers b = carve_terms(w, g);
  if (w.bytes() > workspace_bytes) return cudaErrorInvalidValue;
  SPOTLIGHT_CUDA_TRY(cudaMemsetAsync(b.sums_buffers.sample_tickets, 0, (samples + 1) * sizeof(unsigned int), stream));
  return launch_sums<Policy>(source, g, b.sums_buffers, b.sums, fin, out, stream);
}

}  // namespace detail

// Workspace of masked_mse and soft_dice.
template <class T>
size_t term_workspace_bytes(index_t samples, index_t voxels) {
  WorkspaceCarver w;
  detail::carve_terms(w, make_grid<StreamingPolicy<T>>(samples, voxels));
  return w.bytes();
}

// out = sum(M (Y - P)^2) / D per pool (SPEC section 4), mask given; out
// holds loss_output_size(reduction, samples) values.
template <class T>
cudaError_t masked_mse(const T* pred, const T* target, const bool* mask, index_t samples, index_t voxels,
                       MseNormalization mse_normalization, Reduction reduction, T* out, void* workspace,
                       size_t workspace_bytes, cudaStream_t stream) {
  FinalizeParams fin;
  fin.mse_normalization = mse_normalization;
  fin.reduction = reduction;
  fin.term = Term::kMmse;
  return detail::launch_term<T>(MaskedMseSource<T>{pred, target, mask}, samples, voxels, fin, out, workspace,
                                workspace_bytes, stream);
}

// out = 1 - 2 sum(S M) / (sum(S) + sum(M) + eps) per pool, mask given.
template <class T>
cudaError_t soft_dice(const T* soft, const bool* mask, index_t samples, index_t voxels, double eps,
                      Reduction reduction, T* out, void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  FinalizeParams fin;
  fin.eps = eps;
  fin.reduction = reduction;
  fin.term = Term::kDice;
  return detail::launch_term<T>(SoftDiceSource<T>{soft, mask}, samples, voxels, fin, out, workspace,
                                workspace_bytes, stream);
}

}  // namespace spotlight::cuda
