// Autocast kernels of spotlight::loss and spotlight::_loss_and_sums: under
// torch.autocast the loss runs in float32, as PyTorch's own losses do
// (mse_loss, binary_cross_entropy_with_logits and the rest of autocast's
// float32 list): float16 and bfloat16 inputs are cast to float32, float64
// ones are left alone, and the value is float32.
#include <ATen/autocast_mode.h>
#include <torch/library.h>

#include "ops/common.h"

namespace spotlight_ops {
namespace {

void loss_autocast(const c10::OperatorHandle& op, torch::jit::Stack* stack) {
  const c10::FunctionSchema& schema = op.schema();
  const size_t base = stack->size() - schema.arguments().size();
  for (const char* name : {"pred", "target"}) {
    c10::IValue& v = (*stack)[base + *schema.argumentIndexWithName(name)];
    if (!v.isTensor()) continue;
    const Tensor t = v.toTensor();
    if (t.defined() && (t.scalar_type() == at::kHalf || t.scalar_type() == at::kBFloat16)) v = t.to(at::kFloat);
  }
  const c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
  op.callBoxed(stack);
}

}  // namespace

TORCH_LIBRARY_IMPL(spotlight, AutocastCPU, m) {
  m.impl("loss", torch::CppFunction::makeFromBoxedFunction<&loss_autocast>());
  m.impl("_loss_and_sums", torch::CppFunction::makeFromBoxedFunction<&loss_autocast>());
}
TORCH_LIBRARY_IMPL(spotlight, AutocastCUDA, m) {
  m.impl("loss", torch::CppFunction::makeFromBoxedFunction<&loss_autocast>());
  m.impl("_loss_and_sums", torch::CppFunction::makeFromBoxedFunction<&loss_autocast>());
}

}  // namespace spotlight_ops
