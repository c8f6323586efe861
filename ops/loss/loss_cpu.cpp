// CPU kernels of spotlight::_loss_forward and spotlight::_loss_backward.
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "ops/common.h"
#include "ops/cpu_alloc.h"
#include "ops/loss/loss_checks.h"
#include "ops/loss/loss_options.h"
#include "spotlight/cpu/loss.hpp"

namespace spotlight_ops {
namespace {

static_assert(sizeof(spotlight::LossSums) == spotlight::LossSums::kFields * sizeof(double));

// The forward is the header's spotlight::cpu::loss_forward (with Otsu, each
// sample's passes run from cache where it fits), so the op and the C++ API
// give the same bits.
std::tuple<Tensor, Tensor, Tensor> loss_forward_cpu(const Tensor& pred, const Tensor& target,
                                                    const std::optional<Tensor>& threshold,
                                                    const std::optional<Tensor>& mask, c10::ArrayRef<double> options) {
  const spotlight::LossOptions opt = unpack_options(options);
  const LossShape shape = check_loss_call(pred, target, threshold, mask, opt);
  const LossCall call = prepare_loss_call(pred, target, threshold, mask, opt, shape);
  auto [loss, thresholds, sums] = empty_loss_outputs(pred, shape, opt);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, pred.scalar_type(), "spotlight::loss", [&] {
    using A = spotlight::acc_t<scalar_t>;
    const A* given = call.thresholds.defined() ? call.thresholds.const_data_ptr<A>() : nullptr;
    const auto st = translate_errors([&] {
      return spotlight::cpu::loss_forward(call.pred.const_data_ptr<scalar_t>(), call.target.const_data_ptr<scalar_t>(),
                                          call.pools, call.voxels, given, call.opt, loss.data_ptr<scalar_t>(),
                                          AtenExecutor{});
    });
    std::copy(st.thresholds.begin(), st.thresholds.end(), thresholds.data_ptr<A>());
    std::copy(st.sums.begin(), st.sums.end(), reinterpret_cast<spotlight::LossSums*>(sums.data_ptr<double>()));
  });
  return {loss, thresholds, sums};
}

std::tuple<Tensor, Tensor> loss_backward_cpu(const Tensor& grad, const Tensor& pred, const Tensor& target,
                                             const Tensor& thresholds, const Tensor& sums,
                                             const std::optional<Tensor>& mask, c10::ArrayRef<double> options,
                                             bool target_grad) {
  const spotlight::LossOptions opt = unpack_options(options);
  const LossShape shape = check_loss_backward_call(grad, pred, target, thresholds, sums, mask, opt);
  const LossCall call = prepare_loss_call(pred, target, std::nullopt, mask, opt, shape);
  const Tensor g = grad.to(at::kDouble).contiguous();
  const Tensor s = sums.contiguous();
  std::vector<spotlight::GradCoefficients> coef(static_cast<size_t>(call.pools));
  spotlight::gradient_coefficients(reinterpret_cast<const spotlight::LossSums*>(s.const_data_ptr<double>()),
                                   call.pools, call.voxels, call.opt, g.const_data_ptr<double>(), coef.data());
  Tensor grad_pred = empty_streaming_like(call.pred);
  Tensor grad_target = target_grad ? empty_streaming_like(call.target) : at::empty({0}, pred.options());
  const Tensor thr = thresholds.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, pred.scalar_type(), "spotlight::loss_backward", [&] {
    using A = spotlight::acc_t<scalar_t>;
    spotlight::cpu::loss_backward_apply(call.pred.const_data_ptr<scalar_t>(), call.target.const_data_ptr<scalar_t>(),
                                        call.pools, call.voxels, thr.const_data_ptr<A>(), coef.data(), call.opt,
                                        grad_pred.data_ptr<scalar_t>(),
                                        target_grad ? grad_target.data_ptr<scalar_t>() : nullptr, AtenExecutor{});
  });
  return {grad_pred, grad_target};
}

}  // namespace

TORCH_LIBRARY_IMPL(spotlight, CPU, m) {
  m.impl("_loss_forward", &loss_forward_cpu);
  m.impl("_loss_backward", &loss_backward_cpu);
}

}  // namespace spotlight_ops
