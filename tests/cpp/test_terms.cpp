// The term ops' header backwards (spotlight/cpu/terms.hpp:
// masked_mse_backward, soft_dice_backward) against an independent float64
// reference written here from SPEC sections 4, 5 and 7 (plain loops over
// the pools), for float and double, every reduction and normalization, on
// several chunks per sample; and the same bits for every executor.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "spotlight/cpu/terms.hpp"

namespace sc = spotlight::cpu;
using spotlight::index_t;
using spotlight::LossSums;
using spotlight::MseNormalization;
using spotlight::Reduction;

namespace {

constexpr index_t kSamples = 3;
constexpr index_t kVoxels = 70001;  // three chunks per sample (Partition::kMinChunk is 32768)

struct Inputs {
  std::vector<double> pred, target, soft;
  std::vector<char> mask;  // bytes 0 or 1, read as bool
  const bool* m() const { return reinterpret_cast<const bool*>(mask.data()); }
};

Inputs make_inputs(unsigned seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  Inputs in;
  for (index_t i = 0; i < kSamples * kVoxels; ++i) {
    in.target.push_back(u(gen));
    in.pred.push_back(0.8 * in.target.back() + 0.3 * u(gen));
    in.soft.push_back(u(gen));
    // Sample 2 has no foreground: D = 0 there.
    in.mask.push_back(i / kVoxels != 2 && in.target.back() > 0.6);
  }
  return in;
}

template <class T>
std::vector<T> as(const std::vector<double>& v) {
  return std::vector<T>(v.begin(), v.end());
}

// The pools of a reduction: {first sample, sample count}.
std::vector<std::pair<index_t, index_t>> pools(Reduction r) {
  if (r == Reduction::kBatch) return {{0, kSamples}};
  std::vector<std::pair<index_t, index_t>> out;
  for (index_t s = 0; s < kSamples; ++s) out.push_back({s, 1});
  return out;
}

// Upstream gradient of each pool's value: g[j] for "none", g[0] / N for "mean", g[0] otherwise.
double upstream(Reduction r, const std::vector<double>& g, size_t pool) {
  if (r == Reduction::kNone) return g[pool];
  return r == Reduction::kMean ? g[0] / kSamples : g[0];
}

// dMMSE/dP_i = 2 g M_i (P_i - Y_i) / D (0 when D = 0); dMMSE/dY_i = -dMMSE/dP_i.
std::vector<double> reference_mse_grad(const Inputs& in, MseNormalization norm, Reduction r,
                                       const std::vector<double>& g) {
  std::vector<double> out(in.pred.size());
  const auto ps = pools(r);
  for (size_t j = 0; j < ps.size(); ++j) {
    const index_t begin = ps[j].first * kVoxels, end = begin + ps[j].second * kVoxels;
    double d = 0;
    for (index_t i = begin; i < end; ++i) d += in.mask[i];
    if (norm == MseNormalization::kAll) d = static_cast<double>(end - begin);
    for (index_t i = begin; i < end; ++i)
      out[i] = d > 0 ? 2 * upstream(r, g, j) * in.mask[i] * (in.pred[i] - in.target[i]) / d : 0.0;
  }
  return out;
}

// dDice/dS_i = g (-2 M_i / B + 2 A / B^2), A = sum(S M), B = sum(S) + sum(M) + eps.
std::vector<double> reference_dice_grad(const Inputs& in, double eps, Reduction r, const std::vector<double>& g) {
  std::vector<double> out(in.soft.size());
  const auto ps = pools(r);
  for (size_t j = 0; j < ps.size(); ++j) {
    const index_t begin = ps[j].first * kVoxels, end = begin + ps[j].second * kVoxels;
    double a = 0, b = eps;
    for (index_t i = begin; i < end; ++i) a += in.soft[i] * in.mask[i], b += in.soft[i] + in.mask[i];
    for (index_t i = begin; i < end; ++i) out[i] = upstream(r, g, j) * (-2.0 * in.mask[i] / b + 2.0 * a / (b * b));
  }
  return out;
}

// float: the pool sums are accumulated in float lanes (SPEC 9), the
// coefficient is rounded to float, and the gradient takes two float
// roundings: a few 1e-7 relative to the largest gradient of the pool.
template <class T>
double tolerance() {
  return std::is_same_v<T, double> ? 1e-13 : 2e-6;
}

template <class T>
void expect_near_all(const std::vector<T>& got, const std::vector<double>& want, const char* what) {
  double scale = 0;
  for (double w : want) scale = std::max(scale, std::abs(w));
  for (size_t i = 0; i < want.size(); ++i)
    ASSERT_NEAR(static_cast<double>(got[i]), want[i], tolerance<T>() * scale) << what << " voxel " << i;
}

const std::vector<double> kGrads = {0.7, -1.3, 2.1};  // upstream gradients (the first alone unless "none")

template <class T>
class TermsBackward : public ::testing::Test {};
using Types = ::testing::Types<float, double>;
TYPED_TEST_SUITE(TermsBackward, Types);

TYPED_TEST(TermsBackward, MaskedMseMatchesReference) {
  using T = TypeParam;
  const Inputs in = make_inputs(3);
  const auto p = as<T>(in.pred), y = as<T>(in.target);
  Inputs rounded = in;  // the reference on the values the kernel sees
  rounded.pred.assign(p.begin(), p.end());
  rounded.target.assign(y.begin(), y.end());
  for (const auto norm : {MseNormalization::kForeground, MseNormalization::kAll}) {
    for (const auto red : {Reduction::kBatch, Reduction::kMean, Reduction::kSum, Reduction::kNone}) {
      std::vector<LossSums> sums(kSamples);
      std::vector<T> value(kSamples);
      sc::masked_mse(p.data(), y.data(), in.m(), kSamples, kVoxels, norm, red, value.data(), sums.data());
      std::vector<T> gp(p.size()), gt(p.size());
      sc::masked_mse_backward(kGrads.data(), p.data(), y.data(), in.m(), kSamples, kVoxels, sums.data(), norm, red,
                              gp.data(), gt.data());
      const auto want = reference_mse_grad(rounded, norm, red, kGrads);
      expect_near_all(gp, want, "grad_pred");
      for (size_t i = 0; i < gp.size(); ++i) ASSERT_EQ(gt[i], -gp[i]) << "grad_target " << i;
      // Without grad_target: the same grad_pred bits.
      std::vector<T> gp_only(p.size());
      sc::masked_mse_backward(kGrads.data(), p.data(), y.data(), in.m(), kSamples, kVoxels, sums.data(), norm, red,
                              gp_only.data(), static_cast<T*>(nullptr));
      ASSERT_EQ(gp_only, gp);
    }
  }
}

TYPED_TEST(TermsBackward, SoftDiceMatchesReference) {
  using T = TypeParam;
  const Inputs in = make_inputs(4);
  const auto s = as<T>(in.soft);
  Inputs rounded = in;
  rounded.soft.assign(s.begin(), s.end());
  for (const double eps : {1e-6, 100.0}) {
    for (const auto red : {Reduction::kBatch, Reduction::kMean, Reduction::kSum, Reduction::kNone}) {
      std::vector<LossSums> sums(kSamples);
      std::vector<T> value(kSamples);
      sc::soft_dice(s.data(), in.m(), kSamples, kVoxels, eps, red, value.data(), sums.data());
      std::vector<T> gs(s.size());
      sc::soft_dice_backward(kGrads.data(), in.m(), kSamples, kVoxels, sums.data(), eps, red, gs.data());
      expect_near_all(gs, reference_dice_grad(rounded, eps, red, kGrads), "grad_soft");
    }
  }
}

// Tasks depend on the shape alone: any executor gives the same bits.
TYPED_TEST(TermsBackward, SameBitsForEveryExecutor) {
  using T = TypeParam;
  const Inputs in = make_inputs(5);
  const auto p = as<T>(in.pred), y = as<T>(in.target), s = as<T>(in.soft);
  std::vector<LossSums> ms(kSamples), ds(kSamples);
  T value[1];
  sc::masked_mse(p.data(), y.data(), in.m(), kSamples, kVoxels, MseNormalization::kForeground, Reduction::kBatch,
                 value, ms.data(), sc::SerialExecutor{});
  sc::soft_dice(s.data(), in.m(), kSamples, kVoxels, 1e-6, Reduction::kBatch, value, ds.data(), sc::SerialExecutor{});
  const auto run = [&](const auto& exec) {
    std::vector<T> gp(p.size()), gt(p.size()), gs(p.size());
    sc::masked_mse_backward(kGrads.data(), p.data(), y.data(), in.m(), kSamples, kVoxels, ms.data(),
                            MseNormalization::kForeground, Reduction::kBatch, gp.data(), gt.data(), exec);
    sc::soft_dice_backward(kGrads.data(), in.m(), kSamples, kVoxels, ds.data(), 1e-6, Reduction::kBatch, gs.data(),
                           exec);
    gp.insert(gp.end(), gt.begin(), gt.end());
    gp.insert(gp.end(), gs.begin(), gs.end());
    return gp;
  };
  const auto serial = run(sc::SerialExecutor{});
  EXPECT_EQ(run(sc::ThreadExecutor(3)), serial);
  EXPECT_EQ(run(sc::ThreadExecutor(7)), serial);
}

// A NaN or Inf: masked_mse's gradient is NaN at that voxel only (M
// multiplies (P - Y), as torch's MSE gradient); soft_dice's gradient is
// NaN over the whole pool (A and B hold it), like the pool's value.
TEST(TermsBackward, NonFiniteValuesPoisonAsSpecified) {
  Inputs in = make_inputs(6);
  const index_t bad_fg = 10, bad_bg = kVoxels + 10;  // sample 0 masked, sample 1 unmasked
  in.mask[bad_fg] = 1;
  in.mask[bad_bg] = 0;
  in.pred[bad_fg] = std::numeric_limits<double>::quiet_NaN();
  in.target[bad_bg] = std::numeric_limits<double>::infinity();
  in.soft[bad_bg] = std::numeric_limits<double>::infinity();
  std::vector<LossSums> ms(kSamples), ds(kSamples);
  std::vector<double> mv(kSamples), dv(kSamples);
  sc::masked_mse(in.pred.data(), in.target.data(), in.m(), kSamples, kVoxels, MseNormalization::kForeground,
                 Reduction::kNone, mv.data(), ms.data());
  sc::soft_dice(in.soft.data(), in.m(), kSamples, kVoxels, 1e-6, Reduction::kNone, dv.data(), ds.data());
  EXPECT_TRUE(std::isnan(mv[0]) && std::isnan(mv[1]) && std::isfinite(mv[2]));
  EXPECT_TRUE(std::isfinite(dv[0]) && std::isnan(dv[1]) && std::isfinite(dv[2]));
  std::vector<double> gp(in.pred.size()), gt(in.pred.size()), gs(in.pred.size());
  sc::masked_mse_backward(kGrads.data(), in.pred.data(), in.target.data(), in.m(), kSamples, kVoxels, ms.data(),
                          MseNormalization::kForeground, Reduction::kNone, gp.data(), gt.data());
  sc::soft_dice_backward(kGrads.data(), in.m(), kSamples, kVoxels, ds.data(), 1e-6, Reduction::kNone, gs.data());
  for (index_t i = 0; i < kSamples * kVoxels; ++i) {
    const bool bad = i == bad_fg || i == bad_bg;
    ASSERT_EQ(std::isnan(gp[i]), bad) << "grad_pred " << i;
    ASSERT_EQ(std::isnan(gt[i]), bad) << "grad_target " << i;
    ASSERT_EQ(std::isnan(gs[i]), i / kVoxels == 1) << "grad_soft " << i;
  }
}

TEST(TermsBackward, BadArgumentsAreNamedErrors) {
  const double g = 1;
  LossSums sums;
  float out = 0;
  EXPECT_THROW(sc::masked_mse_backward(&g, &out, &out, nullptr, 0, 1, &sums, MseNormalization::kForeground,
                                       Reduction::kBatch, &out, &out),
               spotlight::Error);
  EXPECT_THROW(sc::soft_dice_backward(&g, nullptr, 1, 1, &sums, -1.0, Reduction::kBatch, &out), spotlight::Error);
}

}  // namespace
