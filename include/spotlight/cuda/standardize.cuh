// Otsu standardization (x - T) / std(x) per sample on the device (SPEC
// section 6), in three kernels: the Otsu range kernel also sums each chunk's
// shifted moments in double, the histogram kernel's last block per sample
// also turns them into 1 / std, and one elementwise pass writes the result.
#pragma once

#include "spotlight/core/config.hpp"
#include "spotlight/cuda/block.cuh"
#include "spotlight/cuda/config.cuh"
#include "spotlight/cuda/numeric.cuh"
#include "spotlight/cuda/otsu.cuh"
#include "spotlight/cuda/policy.cuh"
#include "spotlight/cuda/workspace.cuh"

namespace spotlight::cuda {

template <class Policy, class T>
__global__ void __launch_bounds__(Policy::kBlockThreads)
    standardize_kernel(const T* __restrict__ x, Grid grid, const acc_t<T>* __restrict__ thresholds,
                       const acc_t<T>* __restrict__ inv_std, T* __restrict__ out) {
  using A = acc_t<T>;
  const index_t task = blockIdx.x, s = grid.sample_of(task);
  const A t = thresholds[s], inv = inv_std[s];
  block_stream<Policy::kBlockThreads, Policy::kItemsPerThread>(
      grid.begin(task), grid.end(task), [&](index_t i) { return convert<A>(x[i]); },
      [&](A v, bool valid, index_t i) {
        if (valid) out[i] = convert<T>((v - t) * inv);
      },
      NoOp{});
}

namespace detail {

template <class A>
struct StandardizeBuffers {
  OtsuBuffers<A> otsu;
  A* thresholds = nullptr;  // [samples]
  A* inv_std = nullptr;     // [samples]
};

template <class A>
StandardizeBuffers<A> carve_standardize(WorkspaceCarver& w, const Grid& g, int bins) {
  StandardizeBuffers<A> b;
  unsigned int* tickets = w.take<unsigned int>(g.samples);
  b.otsu = carve_otsu<A>(w, g, bins, true);
  b.otsu.tickets = tickets;
  b.thresholds = w.take<A>(g.samples);
  b.inv_std = w.take<A>(g.samples);
  return b;
}

}  // namespace detail

template <class T>
size_t otsu_standardize_workspace_bytes(index_t samples, index_t voxels, int bins) {
  WorkspaceCarver w;
  detail::carve_standardize<acc_t<T>>(w, make_grid<StreamingPolicy<T>>(samples, voxels), bins);
  return w.bytes();
}

// out = (x - T_s) / std(x_s) for every sample s of x [samples, voxels].
template <class T>
cudaError_t otsu_standardize(const T* x, index_t samples, index_t voxels, int bins, T* out, void* workspace,
                             size_t workspace_bytes, cudaStream_t stream) {
  using A = acc_t<T>;
  using Policy = StreamingPolicy<T>;
  const Grid g = make_grid<Policy>(samples, voxels);
  if (!g.launchable() || bins < 2) return cudaErrorInvalidValue;
  WorkspaceCarver w(workspace);
  const detail::StandardizeBuffers<A> b = detail::carve_standardize<A>(w, g, bins);
  if (w.bytes() > workspace_bytes) return cudaErrorInvalidValue;
  const ZeroFill zero{b.otsu.hist, samples * bins, b.otsu.tickets, samples};
  SPOTLIGHT_CUDA_TRY(detail::launch_otsu<Policy, true>(x, g, bins, b.otsu, zero, b.thresholds, b.inv_std, stream));
  standardize_kernel<Policy>
      <<<static_cast<unsigned int>(g.tasks()), Policy::kBlockThreads, 0, stream>>>(x, g, b.thresholds, b.inv_std, out);
  return launch_error();
}

}  // namespace spotlight::cuda
