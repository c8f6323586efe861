// torch.ops.spotlight.masked_mse and soft_dice (forward and backward, through
// the ops' autograd) give the bits of the header functions they wrap,
// spotlight::cpu::masked_mse / masked_mse_backward and soft_dice /
// soft_dice_backward, in the four dtypes and every reduction.
#include <ATen/core/dispatch/Dispatcher.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstring>
#include <string_view>
#include <vector>

#include "spotlight/core/options.hpp"
#include "spotlight/cpu/terms.hpp"

namespace {

namespace sc = spotlight::cpu;
using at::Tensor;
using spotlight::MseNormalization;
using spotlight::Reduction;

c10::string_view name(std::string_view s) { return {s.data(), s.size()}; }

bool same_bits(const Tensor& a, const void* b, size_t bytes) {
  const Tensor c = a.contiguous();
  return static_cast<size_t>(c.numel()) * c.element_size() == bytes && std::memcmp(c.data_ptr(), b, bytes) == 0;
}

template <class T>
void expect_terms_alike(at::ScalarType dtype, MseNormalization norm, Reduction red) {
  const int64_t n = 3, voxels = 70001;  // chunked samples, a partial last chunk
  at::manual_seed(11);
  const Tensor target = at::rand({n, 1, voxels}, at::kDouble).to(dtype);
  const Tensor pred = (target.to(at::kDouble) * 0.8 + at::rand({n, 1, voxels}, at::kDouble) * 0.3).to(dtype);
  const Tensor soft = at::rand({n, 1, voxels}, at::kDouble).to(dtype);
  const Tensor mask = target > 0.6;
  const double eps = 1e-3;
  static const auto mse_op = c10::Dispatcher::singleton()
                                 .findSchemaOrThrow("spotlight::masked_mse", "")
                                 .typed<Tensor(const Tensor&, const Tensor&, const Tensor&, c10::string_view,
                                               c10::string_view)>();
  static const auto dice_op = c10::Dispatcher::singleton()
                                  .findSchemaOrThrow("spotlight::soft_dice", "")
                                  .typed<Tensor(const Tensor&, const Tensor&, double, c10::string_view)>();
  const Tensor p = pred.clone().requires_grad_(true), y = target.clone().requires_grad_(true);
  const Tensor s = soft.clone().requires_grad_(true);
  const Tensor mse = mse_op.call(p, y, mask, name(spotlight::option_name(norm)), name(spotlight::option_name(red)));
  const Tensor dice = dice_op.call(s, mask, eps, name(spotlight::option_name(red)));
  const Tensor w = at::linspace(0.5, 1.5, mse.numel(), mse.options()).reshape(mse.sizes());
  const auto mse_grads = torch::autograd::grad({mse}, {p, y}, {w});
  const Tensor dice_grad = torch::autograd::grad({dice}, {s}, {w})[0];

  const size_t outputs = red == Reduction::kNone ? static_cast<size_t>(n) : 1;
  const size_t count = static_cast<size_t>(pred.numel());
  const sc::ThreadExecutor exec(2);
  const bool* m = mask.const_data_ptr<bool>();
  const Tensor wd = w.to(at::kDouble).contiguous();
  std::vector<spotlight::LossSums> sums(static_cast<size_t>(n));
  std::vector<T> want(outputs), gp(count), gt(count), gs(count);
  sc::masked_mse(pred.const_data_ptr<T>(), target.const_data_ptr<T>(), m, n, voxels, norm, red, want.data(),
                 sums.data(), exec);
  sc::masked_mse_backward(wd.const_data_ptr<double>(), pred.const_data_ptr<T>(), target.const_data_ptr<T>(), m, n,
                          voxels, sums.data(), norm, red, gp.data(), gt.data(), exec);
  EXPECT_TRUE(same_bits(mse, want.data(), outputs * sizeof(T))) << dtype << " masked_mse";
  EXPECT_TRUE(same_bits(mse_grads[0], gp.data(), count * sizeof(T))) << dtype << " grad_pred";
  EXPECT_TRUE(same_bits(mse_grads[1], gt.data(), count * sizeof(T))) << dtype << " grad_target";
  sc::soft_dice(soft.const_data_ptr<T>(), m, n, voxels, eps, red, want.data(), sums.data(), exec);
  sc::soft_dice_backward(wd.const_data_ptr<double>(), m, n, voxels, sums.data(), eps, red, gs.data(), exec);
  EXPECT_TRUE(same_bits(dice, want.data(), outputs * sizeof(T))) << dtype << " soft_dice";
  EXPECT_TRUE(same_bits(dice_grad, gs.data(), count * sizeof(T))) << dtype << " grad_soft";
}

TEST(OpMatchesHeader, MaskedMseAndSoftDiceForwardAndBackward) {
  for (const auto norm : {MseNormalization::kForeground, MseNormalization::kAll}) {
    for (const auto red : {Reduction::kBatch, Reduction::kMean, Reduction::kSum, Reduction::kNone}) {
      expect_terms_alike<float>(at::kFloat, norm, red);
      expect_terms_alike<double>(at::kDouble, norm, red);
      expect_terms_alike<at::Half>(at::kHalf, norm, red);
      expect_terms_alike<at::BFloat16>(at::kBFloat16, norm, red);
    }
  }
}

}  // namespace
