// Argument checks of the tunable sigmoid ops, shared by every device.
#pragma once

#include "ops/common.h"

namespace spotlight_ops {

inline void check_sigmoid_call(const Tensor& x, double k) {
  translate_errors([&] { spotlight::check_k(k); });
  check_floating(x, "x");
}

}  // namespace spotlight_ops
