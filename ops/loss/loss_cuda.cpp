// CUDA kernels of spotlight::_loss_forward and spotlight::_loss_backward.
// Forward: 3 launches with Otsu thresholds, 1 (after a memset of its arrival
// counters) with given ones; backward: 1 launch. No host sync; see docs/cuda.md.
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <tuple>

#include "ops/common.h"
#include "ops/cuda/glue.h"
#include "ops/cuda/launch.h"
#include "ops/loss/loss_checks.h"
#include "ops/loss/loss_options.h"

namespace spotlight_ops {
namespace {

std::tuple<Tensor, Tensor, Tensor> loss_forward_cuda(const Tensor& pred, const Tensor& target,
                                                     const std::optional<Tensor>& threshold,
                                                     const std::optional<Tensor>& mask,
                                                     c10::ArrayRef<double> options) {
  const spotlight::LossOptions opt = unpack_options(options);
  const c10::cuda::CUDAGuard device_guard(pred.device());
  const LossShape shape = check_loss_call(pred, target, threshold, mask, opt);
  const LossCall call = prepare_loss_call(pred, target, threshold, mask, opt, shape);
  auto [loss, thresholds, sums] = empty_loss_outputs(pred, shape, opt);
  const bool otsu = !call.thresholds.defined();
  const auto dtype = cuda::dtype_of(pred);
  const size_t bytes = cuda::loss_forward_workspace_bytes(dtype, call.pools, call.voxels, call.opt.bins, otsu);
  Tensor ws = cuda::workspace(pred, bytes);
  C10_CUDA_CHECK(cuda::loss_forward(dtype, call.pred.const_data_ptr(), call.target.const_data_ptr(), call.pools,
                                    call.voxels, otsu ? nullptr : call.thresholds.const_data_ptr(), call.opt,
                                    loss.data_ptr(), thresholds.data_ptr(), sums.data_ptr<double>(),
                                    cuda::workspace_ptr(ws), bytes, cuda::current_stream()));
  return {loss, thresholds, sums};
}

std::tuple<Tensor, Tensor> loss_backward_cuda(const Tensor& grad, const Tensor& pred, const Tensor& target,
                                              const Tensor& thresholds, const Tensor& sums,
                                              const std::optional<Tensor>& mask, c10::ArrayRef<double> options,
                                              bool target_grad) {
  const spotlight::LossOptions opt = unpack_options(options);
  const c10::cuda::CUDAGuard device_guard(pred.device());
  const LossShape shape = check_loss_backward_call(grad, pred, target, thresholds, sums, mask, opt);
  const LossCall call = prepare_loss_call(pred, target, std::nullopt, mask, opt, shape);
  const Tensor thr = thresholds.contiguous(), s = sums.contiguous();
  // The upstream gradient is read in place, through its stride (an expanded
  // gradient has stride 0); a gradient of another dtype than pred is read
  // as float64, as the CPU kernel reads every gradient.
  Tensor g = grad.reshape({-1});
  const bool grad_is_float64 = g.scalar_type() != pred.scalar_type();
  if (grad_is_float64) g = g.to(at::kDouble);
  Tensor grad_pred = at::empty_like(call.pred);
  Tensor grad_target = target_grad ? at::empty_like(call.target) : at::empty({0}, pred.options());
  const auto dtype = cuda::dtype_of(pred);
  const size_t bytes = cuda::loss_backward_workspace_bytes(dtype, call.pools, call.opt.reduction);
  Tensor ws = cuda::workspace(pred, bytes);
  C10_CUDA_CHECK(cuda::loss_backward(dtype, g.const_data_ptr(), grad_is_float64, g.stride(0),
                                     call.pred.const_data_ptr(), call.target.const_data_ptr(), call.pools,
                                     call.voxels, thr.const_data_ptr(), s.const_data_ptr<double>(), call.opt,
                                     grad_pred.data_ptr(), target_grad ? grad_target.data_ptr() : nullptr,
                                     cuda::workspace_ptr(ws), bytes, cuda::current_stream()));
  return {grad_pred, grad_target};
}

}  // namespace

TORCH_LIBRARY_IMPL(spotlight, CUDA, m) {
  m.impl("_loss_forward", &loss_forward_cuda);
  m.impl("_loss_backward", &loss_backward_cuda);
}

}  // namespace spotlight_ops
