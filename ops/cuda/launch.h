// Host launchers of the CUDA kernels, as the op glue (*_cuda.cpp, compiled
// by the C++ compiler with torch) calls them. No torch and no CUDA device
// code here: the definitions live in ops/cuda/*.cu, compiled by nvcc, which
// instantiate include/spotlight/cuda for the four input types.
// Pointers are device pointers to contiguous data of the named dtype; each
// launcher enqueues its kernels on `stream`, never synchronizes, and returns
// the launch error. Workspace: a device buffer of at least the bytes the
// matching *_workspace_bytes query returns.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "spotlight/core/options.hpp"

namespace spotlight_ops::cuda {

enum class DType : int { kFloat32, kFloat64, kFloat16, kBFloat16 };

size_t otsu_threshold_workspace_bytes(DType dtype, int64_t samples, int64_t voxels, int bins);
// thresholds: [samples] of the accumulation dtype (float64 for float64, else
// float32): the exact values the fused loss uses.
cudaError_t otsu_threshold(DType dtype, const void* x, int64_t samples, int64_t voxels, int bins, void* thresholds,
                           void* workspace, size_t workspace_bytes, cudaStream_t stream);

size_t otsu_standardize_workspace_bytes(DType dtype, int64_t samples, int64_t voxels, int bins);
cudaError_t otsu_standardize(DType dtype, const void* x, int64_t samples, int64_t voxels, int bins, void* out,
                             void* workspace, size_t workspace_bytes, cudaStream_t stream);
// The same, also writing thresholds [samples] and stats [samples, 3]
// (spotlight::moments::StandardizeStats), both of the accumulation dtype.
cudaError_t otsu_standardize_forward(DType dtype, const void* x, int64_t samples, int64_t voxels, int bins,
                                     void* out, void* thresholds, void* stats, void* workspace,
                                     size_t workspace_bytes, cudaStream_t stream);
size_t otsu_standardize_backward_workspace_bytes(DType dtype, int64_t samples, int64_t voxels);
// grad and grad_x: like x; thresholds and stats: the forward's.
cudaError_t otsu_standardize_backward(DType dtype, const void* grad, const void* x, int64_t samples, int64_t voxels,
                                      const void* thresholds, const void* stats, void* grad_x, void* workspace,
                                      size_t workspace_bytes, cudaStream_t stream);

cudaError_t tunable_sigmoid(DType dtype, const void* x, int64_t count, double k, void* out, cudaStream_t stream);
cudaError_t tunable_sigmoid_backward(DType dtype, const void* grad, const void* x, int64_t count, double k,
                                     void* grad_x, cudaStream_t stream);
cudaError_t tunable_sigmoid_double_backward(DType dtype, const void* grad_out, const void* grad, const void* x,
                                            int64_t count, double k, void* grad_x, cudaStream_t stream);

// masked_mse and soft_dice; out: loss_output_size(reduction, samples) values of dtype;
// sums: [samples, LossSums::kFields] float64 (spotlight::LossSums), the state the backward reads.
size_t term_workspace_bytes(DType dtype, int64_t samples, int64_t voxels);
cudaError_t masked_mse(DType dtype, const void* pred, const void* target, const bool* mask, int64_t samples,
                       int64_t voxels, spotlight::MseNormalization mse_normalization, spotlight::Reduction reduction,
                       void* out, double* sums, void* workspace, size_t workspace_bytes, cudaStream_t stream);
cudaError_t soft_dice(DType dtype, const void* soft, const bool* mask, int64_t samples, int64_t voxels, double eps,
                      spotlight::Reduction reduction, void* out, double* sums, void* workspace,
                      size_t workspace_bytes, cudaStream_t stream);
// Their backwards: grad holds loss_output_size(reduction, samples) float64 values; sums: the
// forward's; grad_target may be null.
size_t term_backward_workspace_bytes(int64_t samples);
cudaError_t masked_mse_backward(DType dtype, const double* grad, const void* pred, const void* target,
                                const bool* mask, int64_t samples, int64_t voxels, const double* sums,
                                spotlight::MseNormalization mse_normalization, spotlight::Reduction reduction,
                                void* grad_pred, void* grad_target, void* workspace, size_t workspace_bytes,
                                cudaStream_t stream);
cudaError_t soft_dice_backward(DType dtype, const double* grad, const bool* mask, int64_t samples, int64_t voxels,
                               const double* sums, double eps, spotlight::Reduction reduction, void* grad_soft,
                               void* workspace, size_t workspace_bytes, cudaStream_t stream);

// The fused loss. given_thresholds: null (Otsu per sample) or [samples] of the
// accumulation dtype (float64 for float64, else float32), as are thresholds;
// sums: [samples, LossSums::kFields] float64 (spotlight::LossSums); loss: dtype.
size_t loss_forward_workspace_bytes(DType dtype, int64_t samples, int64_t voxels, int bins, bool otsu);
cudaError_t loss_forward(DType dtype, const void* pred, const void* target, int64_t samples, int64_t voxels,
                         const void* given_thresholds, const spotlight::LossOptions& opt, void* loss,
                         void* thresholds, double* sums, void* workspace, size_t workspace_bytes,
                         cudaStream_t stream);

// grad: loss_output_size(opt.reduction, samples) values at grad[j * grad_stride],
// of dtype, or float64 when grad_is_float64. grad_target may be null.
size_t loss_backward_workspace_bytes(DType dtype, int64_t samples, spotlight::Reduction reduction);
cudaError_t loss_backward(DType dtype, const void* grad, bool grad_is_float64, int64_t grad_stride, const void* pred,
                          const void* target, int64_t samples, int64_t voxels, const void* thresholds,
                          const double* sums, const spotlight::LossOptions& opt, void* grad_pred, void* grad_target,
                          void* workspace, size_t workspace_bytes, cudaStream_t stream);

}  // namespace spotlight_ops::cuda
