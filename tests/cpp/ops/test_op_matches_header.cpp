// The CPU ops and the header functions they wrap give identical bits on the
// same inputs: torch.ops.spotlight.loss (forward and backward, through the
// op's autograd) against spotlight::cpu::loss_forward / loss_backward, and
// otsu_threshold and otsu_standardize against theirs. The ops run on ATen's
// thread pool and the header here on a std::thread executor: the task split
// depends on the shape alone, so the bits must agree.
#include <ATen/core/dispatch/Dispatcher.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstring>
#include <optional>
#include <string_view>
#include <vector>

#include "ops/loss/loss_options.h"
#include "spotlight/core/options.hpp"
#include "spotlight/cpu/loss.hpp"
#include "spotlight/cpu/otsu.hpp"
#include "spotlight/cpu/standardize.hpp"

namespace {

namespace sc = spotlight::cpu;
namespace sd = spotlight::defaults;
using at::Tensor;

// torch.ops.spotlight.loss(pred, target) with o's parameters (Otsu thresholds), called boxed from the
// option list (spotlight_ops::loss_call_stack).
Tensor op_loss(const Tensor& pred, const Tensor& target, const spotlight::LossOptions& o) {
  static const auto op = c10::Dispatcher::singleton().findSchemaOrThrow("spotlight::loss", "");
  torch::jit::Stack stack = spotlight_ops::loss_call_stack(op.schema(), pred, target, std::nullopt, std::nullopt, o);
  op.callBoxed(&stack);
  return stack.at(0).toTensor();
}

bool same_bits(const Tensor& a, const void* b, size_t bytes) {
  const Tensor c = a.contiguous();
  return static_cast<size_t>(c.numel()) * c.element_size() == bytes && std::memcmp(c.data_ptr(), b, bytes) == 0;
}

// Batch of N samples: targets with a bright tenth, predictions near them.
std::pair<Tensor, Tensor> batch(at::ScalarType dtype, int64_t n, int64_t voxels) {
  at::manual_seed(7);
  const Tensor target = (at::randn({n, 1, voxels}, at::kDouble) * 0.1 +
                         2.0 * (at::rand({n, 1, voxels}, at::kDouble) < 0.1).to(at::kDouble))
                            .to(dtype);
  const Tensor pred = (target.to(at::kDouble) * 0.8 + at::randn({n, 1, voxels}, at::kDouble) * 0.2).to(dtype);
  return {pred, target};
}

template <class T>
void expect_loss_alike(at::ScalarType dtype, const spotlight::LossOptions& o) {
  using A = spotlight::acc_t<T>;
  const int64_t n = 3, voxels = 70001;  // chunked samples, a partial last chunk
  auto [pred, target] = batch(dtype, n, voxels);
  const Tensor p = pred.clone().requires_grad_(true);
  const Tensor loss = op_loss(p, target, o);
  const Tensor w = at::linspace(0.5, 1.5, loss.numel(), loss.options()).reshape(loss.sizes());
  const Tensor grad = torch::autograd::grad({loss}, {p}, {w})[0];

  const size_t outputs = o.reduction == spotlight::Reduction::kNone ? static_cast<size_t>(n) : 1;
  std::vector<T> want_loss(outputs);
  const sc::ThreadExecutor exec(2);
  const auto st = sc::loss_forward(pred.const_data_ptr<T>(), target.const_data_ptr<T>(), n, voxels,
                                   static_cast<const A*>(nullptr), o, want_loss.data(), exec);
  const Tensor wd = w.to(at::kDouble).contiguous();
  std::vector<T> want_grad(static_cast<size_t>(pred.numel()));
  sc::loss_backward(pred.const_data_ptr<T>(), target.const_data_ptr<T>(), n, voxels, st, o, wd.const_data_ptr<double>(),
                    want_grad.data(), static_cast<T*>(nullptr), exec);
  EXPECT_TRUE(same_bits(loss, want_loss.data(), want_loss.size() * sizeof(T))) << dtype;
  EXPECT_TRUE(same_bits(grad, want_grad.data(), want_grad.size() * sizeof(T))) << dtype;
}

TEST(OpMatchesHeader, LossForwardAndBackward) {
  for (const auto reduction : {sd::kReduction, spotlight::Reduction::kNone, spotlight::Reduction::kMean}) {
    spotlight::LossOptions o;  // spotlight::defaults
    o.reduction = reduction;
    expect_loss_alike<double>(at::kDouble, o);
    expect_loss_alike<float>(at::kFloat, o);
    expect_loss_alike<at::Half>(at::kHalf, o);
    expect_loss_alike<at::BFloat16>(at::kBFloat16, o);
  }
  spotlight::LossOptions v;  // a published variant: the variant strips
  v.soft_mask = spotlight::SoftMask::kUnclamped;
  v.dice_denominator = spotlight::DiceDenominator::kSquared;
  v.mask_rule = spotlight::MaskRule::kGreaterEqual;
  expect_loss_alike<float>(at::kFloat, v);
  v.mse_term = spotlight::MseTerm::kPlain;  // the plain MSE term on the variant strips
  expect_loss_alike<double>(at::kDouble, v);
  spotlight::LossOptions plain;  // and on the default strips
  plain.mse_term = spotlight::MseTerm::kPlain;
  for (const auto reduction : {sd::kReduction, spotlight::Reduction::kNone, spotlight::Reduction::kMean}) {
    plain.reduction = reduction;
    expect_loss_alike<double>(at::kDouble, plain);
    expect_loss_alike<at::BFloat16>(at::kBFloat16, plain);
  }
}

template <class T>
void expect_otsu_alike(at::ScalarType dtype) {
  using A = spotlight::acc_t<T>;
  const int64_t n = 3, voxels = 70001;
  const Tensor x = batch(dtype, n, voxels).second;
  static const auto otsu =
      c10::Dispatcher::singleton().findSchemaOrThrow("spotlight::otsu_threshold", "").typed<Tensor(const Tensor&, int64_t)>();
  static const auto standardize = c10::Dispatcher::singleton()
                                      .findSchemaOrThrow("spotlight::otsu_standardize", "")
                                      .typed<Tensor(const Tensor&, int64_t)>();
  std::vector<A> want_t(static_cast<size_t>(n));
  sc::otsu_thresholds(x.const_data_ptr<T>(), n, voxels, sd::kBins, want_t.data(), sc::ThreadExecutor(2));
  EXPECT_TRUE(same_bits(otsu.call(x, sd::kBins), want_t.data(), want_t.size() * sizeof(A))) << dtype;

  const Tensor xg = x.clone().requires_grad_(true);
  const Tensor y = standardize.call(xg, sd::kBins);
  const Tensor g = at::randn(x.sizes(), at::kDouble).to(dtype);
  const Tensor grad = torch::autograd::grad({y}, {xg}, {g})[0];
  std::vector<T> want_y(static_cast<size_t>(x.numel())), want_grad(want_y.size());
  std::vector<spotlight::moments::StandardizeStats<A>> stats(static_cast<size_t>(n));
  sc::otsu_standardize_forward(x.const_data_ptr<T>(), n, voxels, sd::kBins, want_y.data(), want_t.data(), stats.data(),
                               sc::ThreadExecutor(2));
  sc::otsu_standardize_backward(g.const_data_ptr<T>(), x.const_data_ptr<T>(), n, voxels, want_t.data(), stats.data(),
                                want_grad.data(), sc::ThreadExecutor(2));
  EXPECT_TRUE(same_bits(y, want_y.data(), want_y.size() * sizeof(T))) << dtype;
  EXPECT_TRUE(same_bits(grad, want_grad.data(), want_grad.size() * sizeof(T))) << dtype;
}

TEST(OpMatchesHeader, OtsuThresholdAndStandardize) {
  expect_otsu_alike<double>(at::kDouble);
  expect_otsu_alike<float>(at::kFloat);
  expect_otsu_alike<at::Half>(at::kHalf);
}

}  // namespace
