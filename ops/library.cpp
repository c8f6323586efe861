// The `spotlight` operator library: one schema per op of SPEC section 10
// (the loss's keyword-only arguments are the variants of SPEC section 11),
// plus the private forward/backward ops the autograd kernels call. Kernels
// are registered per dispatch key next to their code (ops/<op>/). Defaults
// are spotlight::defaults (core/options.hpp), written into the schema text by
// with_defaults.
#include <torch/library.h>

#include <charconv>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "spotlight/core/options.hpp"

namespace {

// A default as schema text: the shortest decimal that reads back as the same
// double, an integer, True/False, or an enum's quoted name.
std::string schema_value(double v) {
  char buf[32];
  return {buf, std::to_chars(buf, buf + sizeof buf, v).ptr};
}
std::string schema_value(int v) { return std::to_string(v); }
std::string schema_value(bool v) { return v ? "True" : "False"; }
template <class E>
  requires std::is_enum_v<E>
std::string schema_value(E v) {
  return "\"" + std::string(spotlight::option_name(v)) + "\"";
}

// `schema` with every {parameter} replaced by its default.
std::string with_defaults(std::string_view schema) {
  namespace d = spotlight::defaults;
  const std::pair<std::string_view, std::string> values[] = {
      {"{lam}", schema_value(d::kLam)},
      {"{k}", schema_value(d::kK)},
      {"{eps}", schema_value(d::kEps)},
      {"{bins}", schema_value(d::kBins)},
      {"{mse_normalization}", schema_value(d::kMseNormalization)},
      {"{reduction}", schema_value(d::kReduction)},
      {"{soft_mask}", schema_value(d::kSoftMask)},
      {"{mask_rule}", schema_value(d::kMaskRule)},
      {"{dice_denominator}", schema_value(d::kDiceDenominator)},
      {"{empty_pools}", schema_value(d::kEmptyPools)},
      {"{per_channel}", schema_value(d::kPerChannel)},
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
  m.def(with_defaults(
      "loss(Tensor pred, Tensor target, Tensor? threshold=None, float lam={lam}, float k={k}, "
      "float eps={eps}, int bins={bins}, str mse_normalization={mse_normalization}, str reduction={reduction}, "
      "*, str soft_mask={soft_mask}, Tensor? mask=None, str mask_rule={mask_rule}, str dice_denominator={dice_denominator}, "
      "str empty_pools={empty_pools}, bool per_channel={per_channel}) -> Tensor").c_str());
  m.def(with_defaults(
      "loss.float_threshold(Tensor pred, Tensor target, float threshold, float lam={lam}, float k={k}, "
      "float eps={eps}, int bins={bins}, str mse_normalization={mse_normalization}, str reduction={reduction}, "
      "*, str soft_mask={soft_mask}, Tensor? mask=None, str mask_rule={mask_rule}, str dice_denominator={dice_denominator}, "
      "str empty_pools={empty_pools}, bool per_channel={per_channel}) -> Tensor").c_str());
  // (loss: [] or [pools] in pred's dtype ([N, C] for "none" per channel), thresholds [pools],
  // per-pool sums [pools, 6] float64); pools: N, or N * C per channel.
  m.def(with_defaults(
      "_loss_forward(Tensor pred, Tensor target, Tensor? threshold, float lam, float k, float eps, int bins, "
      "str mse_normalization, str reduction, *, str soft_mask={soft_mask}, Tensor? mask=None, str mask_rule={mask_rule}, str dice_denominator={dice_denominator}, "
      "str empty_pools={empty_pools}, bool per_channel={per_channel}) -> (Tensor, Tensor, Tensor)").c_str());
  // (grad_pred, grad_target: empty unless target_grad)
  m.def(with_defaults(
      "_loss_backward(Tensor grad, Tensor pred, Tensor target, Tensor thresholds, Tensor sums, float lam, "
      "float k, float eps, str mse_normalization, str reduction, bool target_grad, *, str soft_mask={soft_mask}, Tensor? mask=None, str mask_rule={mask_rule}, str dice_denominator={dice_denominator}, "
      "str empty_pools={empty_pools}, bool per_channel={per_channel}) -> (Tensor, Tensor)").c_str());
}
