// CUDA kernels of spotlight::tunable_sigmoid, its backward and the backward's
// derivative (1 launch each; see docs/cuda.md).
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include "ops/common.h"
#include "ops/cuda/glue.h"
#include "ops/cuda/launch.h"
#include "ops/sigmoid/sigmoid_checks.h"

namespace spotlight_ops {
namespace {

Tensor tunable_sigmoid_cuda(const Tensor& x, double k) {
  check_sigmoid_call(x, k);
  const c10::cuda::CUDAGuard device_guard(x.device());
  const Tensor xc = x.contiguous();
  Tensor out = at::empty_like(xc);
  C10_CUDA_CHECK(cuda::tunable_sigmoid(cuda::dtype_of(x), xc.const_data_ptr(), xc.numel(), k, out.data_ptr(),
                                       cuda::current_stream()));
  return out;
}

Tensor tunable_sigmoid_backward_cuda(const Tensor& grad, const Tensor& x, double k) {
  check_sigmoid_call(x, k);
  check_same(x, "x", grad, "grad");
  const c10::cuda::CUDAGuard device_guard(x.device());
  const Tensor xc = x.contiguous(), gc = grad.contiguous();
  Tensor out = at::empty_like(xc);
  C10_CUDA_CHECK(cuda::tunable_sigmoid_backward(cuda::dtype_of(x), gc.const_data_ptr(), xc.const_data_ptr(),
                                                xc.numel(), k, out.data_ptr(), cuda::current_stream()));
  return out;
}

Tensor tunable_sigmoid_double_backward_cuda(const Tensor& grad_out, const Tensor& grad, const Tensor& x, double k) {
  check_sigmoid_call(x, k);
  check_same(x, "x", grad, "grad");
  check_same(x, "x", grad_out, "grad_out");
  const c10::cuda::CUDAGuard device_guard(x.device());
  const Tensor xc = x.contiguous(), gc = grad.contiguous(), oc = grad_out.contiguous();
  Tensor out = at::empty_like(xc);
  C10_CUDA_CHECK(cuda::tunable_sigmoid_double_backward(cuda::dtype_of(x), oc.const_data_ptr(), gc.const_data_ptr(),
                                                       xc.const_data_ptr(), xc.numel(), k, out.data_ptr(),
                                                       cuda::current_stream()));
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(spotlight, CUDA, m) {
  m.impl("tunable_sigmoid", &tunable_sigmoid_cuda);
  m.impl("_tunable_sigmoid_backward", &tunable_sigmoid_backward_cuda);
  m.impl("_tunable_sigmoid_double_backward", &tunable_sigmoid_double_backward_cuda);
}

}  // namespace spotlight_ops
