// For autograd kernels whose backward is a kernel of its own (not
// differentiable again): under create_graph, the gradient they return gets a
// node that raises a named error when a second backward reaches it, instead
// of being a silent constant.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>
#include <torch/csrc/autograd/functions/basic_ops.h>
#include <torch/csrc/autograd/functions/utils.h>

#include <string>

namespace spotlight_ops {

inline bool requires_grad(const at::Tensor& t) { return t.defined() && t.requires_grad(); }

// `op` names the public op ("loss"); a, b, c: the tensors the gradient depends on (c may be undefined).
inline void error_on_double_backward(at::Tensor& grad, const char* op, const at::Tensor& a, const at::Tensor& b,
                                     const at::Tensor& c) {
  if (!grad.defined() || !at::GradMode::is_enabled()) return;
  if (!requires_grad(a) && !requires_grad(b) && !requires_grad(c)) return;
  const std::string message = std::string("spotlight: the second derivative of spotlight.") + op +
                              " is not implemented: its gradient (from autograd.grad(..., create_graph=True)) cannot "
                              "be differentiated again. Use spotlight_ops.reference." +
                              op + " for higher-order derivatives.";
  auto node = c10::make_intrusive<torch::autograd::Error>(message, torch::autograd::collect_next_edges(a, b, c));
  grad = grad.detach();
  torch::autograd::set_history(grad, node);
}

}  // namespace spotlight_ops
