// The `spotlight` operator library: one schema per op of SPEC section 10
// (the loss's keyword-only arguments are the variants of SPEC section 11),
// plus the private forward/backward ops the autograd kernels call. Kernels
// are registered per dispatch key next to their code (ops/<op>/).
#include <torch/library.h>

TORCH_LIBRARY(spotlight, m) {
  m.def("otsu_threshold(Tensor x, int bins=256) -> Tensor");
  m.def("otsu_standardize(Tensor x, int bins=256) -> Tensor");
  // (y, thresholds [N], stats [N, 3]: scale, scaled mean, inverse scaled std; both in the accumulation dtype)
  m.def("_otsu_standardize_forward(Tensor x, int bins) -> (Tensor, Tensor, Tensor)");
  m.def("_otsu_standardize_backward(Tensor grad, Tensor x, Tensor thresholds, Tensor stats) -> Tensor");
  m.def("tunable_sigmoid(Tensor x, float k=-0.95) -> Tensor");
  m.def("_tunable_sigmoid_backward(Tensor grad, Tensor x, float k) -> Tensor");
  m.def(
      "masked_mse(Tensor pred, Tensor target, Tensor mask, str mse_normalization=\"foreground\", "
      "str reduction=\"batch\") -> Tensor");
  m.def("soft_dice(Tensor soft, Tensor mask, float eps=1e-06, str reduction=\"batch\") -> Tensor");
  // (value, per-sample sums [N, 6] float64: spotlight::LossSums, the state of the backward)
  m.def(
      "_masked_mse_forward(Tensor pred, Tensor target, Tensor mask, str mse_normalization, str reduction) -> "
      "(Tensor, Tensor)");
  // (grad_pred, grad_target: empty unless target_grad)
  m.def(
      "_masked_mse_backward(Tensor grad, Tensor pred, Tensor target, Tensor mask, Tensor sums, str mse_normalization, "
      "str reduction, bool target_grad) -> (Tensor, Tensor)");
  m.def("_soft_dice_forward(Tensor soft, Tensor mask, float eps, str reduction) -> (Tensor, Tensor)");
  // (grad_soft; soft gives its dtype, shape and device: the gradient does not read its values)
  m.def("_soft_dice_backward(Tensor grad, Tensor soft, Tensor mask, Tensor sums, float eps, str reduction) -> Tensor");
  m.def(
      "loss(Tensor pred, Tensor target, Tensor? threshold=None, float lam=0.5, float k=-0.95, "
      "float eps=1e-06, int bins=256, str mse_normalization=\"foreground\", str reduction=\"batch\", "
      "*, str soft_mask=\"clamped\", Tensor? mask=None, str mask_rule=\"greater\", str dice_denominator=\"linear\", "
      "str empty_pools=\"spotlight\", bool per_channel=False) -> Tensor");
  m.def(
      "loss.float_threshold(Tensor pred, Tensor target, float threshold, float lam=0.5, float k=-0.95, "
      "float eps=1e-06, int bins=256, str mse_normalization=\"foreground\", str reduction=\"batch\", "
      "*, str soft_mask=\"clamped\", Tensor? mask=None, str mask_rule=\"greater\", str dice_denominator=\"linear\", "
      "str empty_pools=\"spotlight\", bool per_channel=False) -> Tensor");
  // (loss: [] or [pools] in pred's dtype ([N, C] for "none" per channel), thresholds [pools],
  // per-pool sums [pools, 6] float64); pools: N, or N * C per channel.
  m.def(
      "_loss_forward(Tensor pred, Tensor target, Tensor? threshold, float lam, float k, float eps, int bins, "
      "str mse_normalization, str reduction, *, str soft_mask=\"clamped\", Tensor? mask=None, str mask_rule=\"greater\", str dice_denominator=\"linear\", "
      "str empty_pools=\"spotlight\", bool per_channel=False) -> (Tensor, Tensor, Tensor)");
  // (grad_pred, grad_target: empty unless target_grad)
  m.def(
      "_loss_backward(Tensor grad, Tensor pred, Tensor target, Tensor thresholds, Tensor sums, float lam, "
      "float k, float eps, str mse_normalization, str reduction, bool target_grad, *, str soft_mask=\"clamped\", Tensor? mask=None, str mask_rule=\"greater\", str dice_denominator=\"linear\", "
      "str empty_pools=\"spotlight\", bool per_channel=False) -> (Tensor, Tensor)");
}
