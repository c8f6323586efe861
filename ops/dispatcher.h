// Typed handles to the spotlight ops, for kernels that call other ops
// through the dispatcher (autograd kernels, composites).
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <optional>
#include <tuple>

namespace spotlight_ops::dispatch {

using at::Tensor;

inline const auto& otsu_threshold() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("spotlight::otsu_threshold", "")
                             .typed<Tensor(const Tensor&, int64_t)>();
  return op;
}

// The loss's private ops carry the options packed (ops/loss/loss_options.h).
inline const auto& loss_forward() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("spotlight::_loss_forward", "")
                             .typed<std::tuple<Tensor, Tensor, Tensor>(const Tensor&, const Tensor&,
                                                                       const std::optional<Tensor>&,
                                                                       const std::optional<Tensor>&,
                                                                       c10::ArrayRef<double>)>();
  return op;
}

inline const auto& loss_backward() {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("spotlight::_loss_backward", "")
          .typed<std::tuple<Tensor, Tensor>(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                                            const std::optional<Tensor>&, c10::ArrayRef<double>, bool)>();
  return op;
}

inline const auto& tunable_sigmoid_backward() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("spotlight::_tunable_sigmoid_backward", "")
                             .typed<Tensor(const Tensor&, const Tensor&, double)>();
  return op;
}

inline const auto& tunable_sigmoid_double_backward() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("spotlight::_tunable_sigmoid_double_backward", "")
                             .typed<Tensor(const Tensor&, const Tensor&, const Tensor&, double)>();
  return op;
}

}  // namespace spotlight_ops::dispatch
