// The `spotlight` operator library: one schema per op of SPEC section 10
// (the loss's keyword-only arguments are the variants of SPEC section 11),
// plus the private forward/backward ops the autograd kernels call. Kernels
// are registered per dispatch key next to their code (ops/<op>/). Defaults
// are spotlight::defaults (core/options.hpp), written into the schema text by
// with_defaults.
#include <torch/library.h>

#include <string>
#include <string_view>
#include <utility>

#include "ops/loss/loss_options.h"
#include "spotlight/core/options.hpp"

namespace {

// `schema` with every {parameter} replaced by its default, and {options} by
// every loss option (spotlight_ops::options_schema).
std::string with_defaults(std::string_view schema) {
  namespace d = spotlight::defaults;
  using spotlight_ops::schema_value;
  const std::pair<std::string_view, std::string> values[] = {
      {"{options}", spotlight_ops::options_schema()},
      {"{k}", schema_value(d::kK)},
      {"{eps}", schema_value(d::kEps)},
      {"{bins}", schema_value(d::kBins)},
      {"{mse_normalization}", schema_value(d::kMseNormalization)},
      {"{reduction}", schema_value(d::kReduction)},
  };
  std::string out(schema);
  for (const auto& [key, value] : values)
    for (size_t at = out.find(key); at != std::string::npos; at = out.find(key, at + value.size()))
      out.replace(at, key.size(), value);
  TORCH_INTERNAL_ASSERT(out.find('{') == std::string::npos, "spotlight: unknown default in schema ", out);
  return out;
}

}  // namespace

TORCH_LIBRARY(spotlight, m) {
  m.def(with_defaults("otsu_threshold(Tensor x, int bins={bins}) -> Tensor").c_str());
  m.def(with_defaults("otsu_standardize(Tensor x, int bins={bins}) -> Tensor").c_str());
  // (y, thresholds [N], stats [N, 3]: scale, scaled mean, inverse scaled std; both in the accumulation dtype)
  m.def("_otsu_standardize_forward(Tensor x, int bins) -> (Tensor, Tensor, Tensor)");
  m.def("_otsu_standardize_backward(Tensor grad, Tensor x, Tensor thresholds, Tensor stats) -> Tensor");
  m.def(with_defaults("tunable_sigmoid(Tensor x, float k={k}) -> Tensor").c_str());
  m.def("_tunable_sigmoid_backward(Tensor grad, Tensor x, float k) -> Tensor");
  m.def("_tunable_sigmoid_double_backward(Tensor grad_out, Tensor grad, Tensor x, float k) -> Tensor");
  m.def(with_defaults(
      "masked_mse(Tensor pred, Tensor target, Tensor mask, str mse_normalization={mse_normalization}, "
      "str reduction={reduction}) -> Tensor").c_str());
  m.def(with_defaults("soft_dice(Tensor soft, Tensor mask, float eps={eps}, str reduction={reduction}) -> Tensor").c_str());
  // (value, per-sample sums [N, F] float64: spotlight::LossSums, the state of the backward)
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
  // The fused loss; its options are the list of core/options.hpp, by name.
  m.def(with_defaults("loss(Tensor pred, Tensor target, Tensor? threshold=None, {options}) -> Tensor").c_str());
  m.def(with_defaults("loss.float_threshold(Tensor pred, Tensor target, float threshold, {options}) -> Tensor").c_str());
  // (loss, per-pool sums [pools, F] float64: spotlight::LossSums, not differentiable): the loss
  // with the counts its pass makes, for the collapse guard (spotlight_ops.collapse).
  m.def(with_defaults(
      "_loss_and_sums(Tensor pred, Tensor target, Tensor? threshold=None, {options}) -> (Tensor, Tensor)").c_str());
  m.def(with_defaults(
      "_loss_and_sums.float_threshold(Tensor pred, Tensor target, float threshold, {options}) -> (Tensor, Tensor)")
            .c_str());
  // Below autograd, the options travel packed (spotlight_ops::pack_options).
  // (loss: [] or [pools] in pred's dtype ([N, C] for "none" per channel), thresholds [pools],
  // per-pool sums [pools, F] float64); pools: N, or N * C per channel.
  m.def("_loss_forward(Tensor pred, Tensor target, Tensor? threshold, Tensor? mask, float[] options) -> "
        "(Tensor, Tensor, Tensor)");
  // (grad_pred, grad_target: empty unless target_grad)
  m.def("_loss_backward(Tensor grad, Tensor pred, Tensor target, Tensor thresholds, Tensor sums, Tensor? mask, "
        "float[] options, bool target_grad) -> (Tensor, Tensor)");
  // [..., 2] float64: the voxels predicted above T and the voxels of the mask M, over the pools of sums
  // [..., pools, F] (the collapse guard's counts).
  m.def("_loss_counts(Tensor sums) -> Tensor");
  // "name=value" options checked (spotlight/core/option_text.hpp) and packed (ops/loss/loss_options.h):
  // how the Python front ends check values that no schema type holds (bins=2.5, a YAML "5e-1"), with the
  // message of the option's check.
  m.def("_pack_loss_options(str[] options) -> float[]");
}
