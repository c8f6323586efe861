// CPU kernels of spotlight::tunable_sigmoid, its backward and the backward's
// derivative.
#include <torch/library.h>

#include "ops/common.h"
#include "ops/cpu_alloc.h"
#include "ops/sigmoid/sigmoid_checks.h"
#include "spotlight/cpu/elementwise.hpp"

namespace spotlight_ops {
namespace {

Tensor tunable_sigmoid_cpu(const Tensor& x, double k) {
  check_sigmoid_call(x, k);
  const Tensor xc = x.contiguous();
  Tensor out = empty_streaming_like(xc);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "spotlight::tunable_sigmoid", [&] {
    spotlight::cpu::tunable_sigmoid(xc.const_data_ptr<scalar_t>(), xc.numel(), k, out.data_ptr<scalar_t>(),
                                    AtenExecutor{});
  });
  return out;
}

Tensor tunable_sigmoid_backward_cpu(const Tensor& grad, const Tensor& x, double k) {
  check_sigmoid_call(x, k);
  check_same(x, "x", grad, "grad");
  const Tensor xc = x.contiguous(), gc = grad.contiguous();
  Tensor out = empty_streaming_like(xc);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "spotlight::tunable_sigmoid_backward",
                                  [&] {
                                    spotlight::cpu::tunable_sigmoid_backward(
                                        gc.const_data_ptr<scalar_t>(), xc.const_data_ptr<scalar_t>(), xc.numel(), k,
                                        out.data_ptr<scalar_t>(), AtenExecutor{});
                                  });
  return out;
}

Tensor tunable_sigmoid_double_backward_cpu(const Tensor& grad_out, const Tensor& grad, const Tensor& x, double k) {
  check_sigmoid_call(x, k);
  check_same(x, "x", grad, "grad");
  check_same(x, "x", grad_out, "grad_out");
  const Tensor xc = x.contiguous(), gc = grad.contiguous(), oc = grad_out.contiguous();
  Tensor out = empty_streaming_like(xc);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(),
                                  "spotlight::tunable_sigmoid_double_backward", [&] {
                                    spotlight::cpu::tunable_sigmoid_double_backward(
                                        oc.const_data_ptr<scalar_t>(), gc.const_data_ptr<scalar_t>(),
                                        xc.const_data_ptr<scalar_t>(), xc.numel(), k, out.data_ptr<scalar_t>(),
                                        AtenExecutor{});
                                  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(spotlight, CPU, m) {
  m.impl("tunable_sigmoid", &tunable_sigmoid_cpu);
  m.impl("_tunable_sigmoid_backward", &tunable_sigmoid_backward_cpu);
  m.impl("_tunable_sigmoid_double_backward", &tunable_sigmoid_double_backward_cpu);
}

}  // namespace spotlight_ops
