// The fused loss of spotlight/cpu/loss.hpp and the term reductions of
// spotlight/cpu/terms.hpp against the float64 reference, and the backward
// against central differences of the reference.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "reference.hpp"
#include "spotlight/cpu/elementwise.hpp"
#include "spotlight/cpu/loss.hpp"
#include "spotlight/cpu/standardize.hpp"
#include "spotlight/cpu/terms.hpp"
#include "spotlight/core/option_text.hpp"
#include "spotlight/core/options.hpp"

namespace sc = spotlight::cpu;
using spotlight::defaults::kBins;
using spotlight::defaults::kK;
using spotlight::LossOptions;
using spotlight::Reduction;

namespace {

struct Batch {
  std::int64_t samples, voxels;
  std::vector<double> pred, target;
};

Batch make_batch(std::int64_t samples, std::int64_t voxels, unsigned seed) {
  Batch b{samples, voxels, {}, {}};
  for (std::int64_t s = 0; s < samples; ++s) {
    auto y = ref::random_volume(voxels, seed + 2 * s, 0.1 + 0.05 * s);
    auto p = ref::random_volume(voxels, seed + 2 * s + 1, 0.1);
    for (auto& v : p) v *= 0.8;
    b.target.insert(b.target.end(), y.begin(), y.end());
    b.pred.insert(b.pred.end(), p.begin(), p.end());
  }
  return b;
}

// The reference loss values of a batch for thresholds t.
std::vector<double> reference_losses(const Batch& b, const std::vector<double>& t, const LossOptions& o) {
  std::vector<ref::Terms> terms;
  for (std::int64_t s = 0; s < b.samples; ++s)
    terms.push_back(ref::terms(b.pred.data() + s * b.voxels, b.target.data() + s * b.voxels, b.voxels, t[s], o.k));
  const bool fg = o.mse_normalization == spotlight::MseNormalization::kForeground;
  if (o.reduction == Reduction::kBatch) {
    ref::Terms all;
    for (auto& r : terms) all.fg += r.fg, all.se += r.se, all.soft += r.soft, all.soft_fg += r.soft_fg;
    return {ref::loss_of(all, static_cast<double>(b.samples * b.voxels), o.lam, o.eps, fg)};
  }
  std::vector<double> out;
  double mean = 0;
  for (auto& r : terms) {
    out.push_back(ref::loss_of(r, static_cast<double>(b.voxels), o.lam, o.eps, fg));
    mean += out.back() / b.samples;
  }
  return o.reduction == Reduction::kMean ? std::vector<double>{mean} : out;
}

}  // namespace

class LossReductions : public ::testing::TestWithParam<std::tuple<Reduction, spotlight::MseNormalization>> {};

TEST_P(LossReductions, ForwardMatchesReference) {
  const Batch b = make_batch(3, 70001, 5);
  LossOptions o;
  o.reduction = std::get<0>(GetParam());
  o.mse_normalization = std::get<1>(GetParam());
  std::vector<double> loss(b.samples);
  const auto st = sc::loss_forward(b.pred.data(), b.target.data(), b.samples, b.voxels,
                                   static_cast<const double*>(nullptr), o, loss.data(), sc::ThreadExecutor(2));
  std::vector<double> t;
  for (std::int64_t s = 0; s < b.samples; ++s)
    t.push_back(ref::otsu(std::vector<double>(b.target.begin() + s * b.voxels,
                                              b.target.begin() + (s + 1) * b.voxels), kBins));
  for (std::int64_t s = 0; s < b.samples; ++s) EXPECT_DOUBLE_EQ(st.thresholds[s], t[s]);
  const auto expected = reference_losses(b, t, o);
  for (size_t i = 0; i < expected.size(); ++i) EXPECT_NEAR(loss[i], expected[i], 1e-12 * std::abs(expected[i]));
}

INSTANTIATE_TEST_SUITE_P(All, LossReductions,
                         ::testing::Combine(::testing::Values(Reduction::kBatch, Reduction::kMean, Reduction::kNone),
                                            ::testing::Values(spotlight::MseNormalization::kForeground,
                                                              spotlight::MseNormalization::kAll)));

// Every task split of the loss with Otsu, forced whatever the machine's core
// count by the executor's thread count: the whole-sample fused path
// (otsu_loss_sums, samples >= threads) with 1 thread, with fewer threads than
// samples (the last thread's group of samples partial) and with as many; the
// chunked passes with more threads than samples. Each sample ends in a
// partial chunk, so skipping a sample's last chunk in either path changes
// every loss. Each split against the float64 reference, and bit-equal to the
// others (forward and backward; default and variant options; double and float).
template <class T>
void expect_every_split_alike(const Batch& b, LossOptions o, bool check_reference) {
  std::vector<T> pred(b.pred.begin(), b.pred.end()), target(b.target.begin(), b.target.end());
  std::vector<double> ref_t;
  for (std::int64_t s = 0; s < b.samples; ++s)
    ref_t.push_back(ref::otsu(std::vector<double>(target.begin() + s * b.voxels, target.begin() + (s + 1) * b.voxels),
                              o.bins));
  Batch bt{b.samples, b.voxels, std::vector<double>(pred.begin(), pred.end()),
           std::vector<double>(target.begin(), target.end())};
  const auto expected = reference_losses(bt, ref_t, o);
  std::vector<T> first_loss, first_grad;
  for (const unsigned threads : {1u, 3u, 5u, 8u}) {
    ASSERT_EQ(sc::whole_samples<T>(b.samples, b.voxels, threads), threads <= b.samples);
    const sc::ThreadExecutor exec(threads);
    std::vector<T> loss(static_cast<size_t>(b.samples));
    const auto st = sc::loss_forward(pred.data(), target.data(), b.samples, b.voxels,
                                     static_cast<const spotlight::acc_t<T>*>(nullptr), o, loss.data(), exec);
    const std::vector<double> w(loss.size(), 1.0);
    std::vector<T> grad(pred.size());
    sc::loss_backward(pred.data(), target.data(), b.samples, b.voxels, st, o, w.data(), grad.data(),
                      static_cast<T*>(nullptr), exec);
    for (std::int64_t s = 0; s < b.samples; ++s) {
      if constexpr (std::is_same_v<T, float>)
        EXPECT_FLOAT_EQ(st.thresholds[s], static_cast<float>(ref_t[s])) << threads << " threads, sample " << s;
      else
        EXPECT_DOUBLE_EQ(st.thresholds[s], ref_t[s]) << threads << " threads, sample " << s;
      if (check_reference)
        EXPECT_NEAR(loss[s], expected[s], (std::is_same_v<T, float> ? 1e-5 : 1e-12) * std::abs(expected[s]))
            << threads << " threads, sample " << s;
    }
    if (first_loss.empty()) {
      first_loss = loss;
      first_grad = grad;
      continue;
    }
    EXPECT_EQ(loss, first_loss) << threads << " threads";
    EXPECT_TRUE(grad == first_grad) << threads << " threads";
  }
}

TEST(LossPaths, EveryTaskSplitMatchesReferenceBitForBit) {
  const std::int64_t samples = 5, voxels = 70001;
  const sc::Partition part(samples, voxels);
  const std::int64_t last = part.chunks - 1;
  ASSERT_GT(part.chunks, 1);
  ASSERT_GT(part.end(last) - part.begin(last), 0);
  ASSERT_LT(part.end(last) - part.begin(last), part.chunk);  // a partial last chunk
  const Batch b = make_batch(samples, voxels, 41);
  LossOptions o;
  o.reduction = Reduction::kNone;
  expect_every_split_alike<double>(b, o, true);
  expect_every_split_alike<float>(b, o, true);
  o.mse_term = spotlight::MseTerm::kPlain;  // the default strips of the plain MSE term
  expect_every_split_alike<double>(b, o, false);
  expect_every_split_alike<float>(b, o, false);
  o.soft_mask = spotlight::SoftMask::kUnclamped;  // the variant strips
  o.mask_rule = spotlight::MaskRule::kGreaterEqual;
  o.dice_denominator = spotlight::DiceDenominator::kSquared;
  expect_every_split_alike<double>(b, o, false);
}

// A target spanning more than DBL_MAX (hi - lo overflows): the loss's Otsu
// thresholds are finite and those of otsu_thresholds, in the whole-sample
// fused path (1 thread) and the chunked one (more threads than samples).
TEST(LossPaths, OtsuThresholdsFiniteWhenTheRangeOverflows) {
  const std::int64_t samples = 2, voxels = 5000;
  Batch b = make_batch(samples, voxels, 43);
  for (auto& v : b.target) v = (v - 1.0) * 1e307;
  b.target[0] = -1e308;
  b.target[voxels] = 1e308;
  std::vector<double> otsu(samples);
  sc::otsu_thresholds(b.target.data(), samples, voxels, kBins, otsu.data(), sc::SerialExecutor{});
  for (const unsigned threads : {1u, 8u}) {
    LossOptions o;
    o.reduction = Reduction::kNone;
    std::vector<double> loss(samples);
    const auto st = sc::loss_forward(b.pred.data(), b.target.data(), samples, voxels,
                                     static_cast<const double*>(nullptr), o, loss.data(), sc::ThreadExecutor(threads));
    for (std::int64_t s = 0; s < samples; ++s) {
      EXPECT_TRUE(std::isfinite(st.thresholds[s])) << threads << " threads, sample " << s;
      EXPECT_EQ(st.thresholds[s], otsu[s]) << threads << " threads, sample " << s;
    }
  }
}

// Samples with Inf and NaN inside a run of the fused Otsu path (whose
// histogram of sample s + 1 is counted during the sums of sample s): their
// thresholds and losses are NaN, and every other sample's threshold and loss
// are those of the separate passes, bit for bit, with 1 and 2 threads.
TEST(LossPaths, PoisonedSamplesInsideAFusedRun) {
  const std::int64_t samples = 5, voxels = 3000;
  Batch b = make_batch(samples, voxels, 47);
  b.target[1 * voxels + 17] = std::numeric_limits<double>::infinity();
  b.target[2 * voxels + 2999] = std::numeric_limits<double>::quiet_NaN();
  std::vector<double> otsu(samples);
  sc::otsu_thresholds(b.target.data(), samples, voxels, kBins, otsu.data(), sc::SerialExecutor{});
  LossOptions o;
  o.reduction = Reduction::kNone;
  std::vector<double> given(samples);
  sc::loss_forward(b.pred.data(), b.target.data(), samples, voxels, otsu.data(), o, given.data(),
                   sc::SerialExecutor{});
  for (const unsigned threads : {1u, 2u}) {
    ASSERT_TRUE(sc::whole_samples<double>(samples, voxels, threads));
    std::vector<double> loss(samples);
    const auto st = sc::loss_forward(b.pred.data(), b.target.data(), samples, voxels,
                                     static_cast<const double*>(nullptr), o, loss.data(), sc::ThreadExecutor(threads));
    for (std::int64_t s = 0; s < samples; ++s) {
      const bool poisoned = s == 1 || s == 2;
      EXPECT_EQ(std::isnan(st.thresholds[s]), poisoned) << threads << " threads, sample " << s;
      EXPECT_EQ(std::isnan(loss[s]), poisoned) << threads << " threads, sample " << s;
      if (!poisoned) {
        EXPECT_EQ(st.thresholds[s], otsu[s]) << threads << " threads, sample " << s;
        EXPECT_EQ(loss[s], given[s]) << threads << " threads, sample " << s;
      }
    }
  }
}

TEST(Loss, FloatWithGivenThresholdWithin1e5) {
  const Batch b = make_batch(2, 200000, 9);
  std::vector<float> pf(b.pred.begin(), b.pred.end()), yf(b.target.begin(), b.target.end());
  std::vector<double> pd(pf.begin(), pf.end()), yd(yf.begin(), yf.end());
  const Batch bd{b.samples, b.voxels, pd, yd};
  LossOptions o;
  const float t[2] = {1.0f, 1.0f};
  float loss = 0;
  sc::loss_forward(pf.data(), yf.data(), b.samples, b.voxels, t, o, &loss, sc::ThreadExecutor(2));
  const double expected = reference_losses(bd, {1.0, 1.0}, o)[0];
  EXPECT_NEAR(loss, expected, 1e-5 * std::abs(expected));
}

TEST(Loss, BackwardMatchesCentralDifferences) {
  const Batch b = make_batch(2, 300, 13);
  for (auto red : {Reduction::kBatch, Reduction::kMean, Reduction::kNone}) {
    LossOptions o;
    o.reduction = red;
    std::vector<double> loss(b.samples);
    const auto st = sc::loss_forward(b.pred.data(), b.target.data(), b.samples, b.voxels,
                                     static_cast<const double*>(nullptr), o, loss.data());
    // Weights of the outputs, so "none" checks every sample's gradient.
    const std::vector<double> w = red == Reduction::kNone ? std::vector<double>{0.7, -1.3} : std::vector<double>{1.0};
    std::vector<double> gp(b.pred.size()), gt(b.pred.size());
    sc::loss_backward(b.pred.data(), b.target.data(), b.samples, b.voxels, st, o, w.data(), gp.data(), gt.data());
    auto objective = [&](const std::vector<double>& p, const std::vector<double>& y) {
      Batch c{b.samples, b.voxels, p, y};
      std::vector<double> t(st.thresholds.begin(), st.thresholds.end());
      const auto l = reference_losses(c, t, o);
      double v = 0;
      for (size_t i = 0; i < l.size(); ++i) v += w[i] * l[i];
      return v;
    };
    for (size_t i = 0; i < b.pred.size(); i += 37) {
      const double h = 1e-6;
      auto p1 = b.pred, p2 = b.pred;
      p1[i] += h;
      p2[i] -= h;
      EXPECT_NEAR(gp[i], (objective(p1, b.target) - objective(p2, b.target)) / (2 * h), 1e-6) << "i=" << i;
      // d/dY through the MMSE term only (the mask is a constant): move Y
      // without crossing the threshold.
      auto y1 = b.target, y2 = b.target;
      y1[i] += h;
      y2[i] -= h;
      const double fd_mse = (objective(b.pred, y1) - objective(b.pred, y2)) / (2 * h);
      EXPECT_NEAR(gt[i], fd_mse, 1e-6) << "i=" << i;
    }
  }
}

// The variants' outputs by the reference: reduction over the pools of b (one per sample).
std::vector<double> variant_reference(const Batch& b, double t, const LossOptions& o, const ref::Variant& v) {
  const auto pool = [&](std::int64_t begin, std::int64_t end) {
    return ref::variant_pool(b.pred.data(), b.target.data(), begin, end, t, o.k, o.eps, v);
  };
  const auto value = [&](const ref::PoolValue& r) { return o.lam * r.mse + (1 - o.lam) * r.counts * r.dice; };
  if (o.reduction == Reduction::kBatch) return {value(pool(0, b.samples * b.voxels))};
  std::vector<double> out;
  double mse = 0, dice = 0, counted = 0, sum = 0;
  for (std::int64_t s = 0; s < b.samples; ++s) {
    const ref::PoolValue r = pool(s * b.voxels, (s + 1) * b.voxels);
    out.push_back(value(r));
    sum += out.back();
    mse += r.mse, dice += r.counts * r.dice, counted += r.counts;
  }
  if (o.reduction == Reduction::kNone) return out;
  if (o.reduction == Reduction::kSum) return {sum};
  if (v.viscy_pools) return {o.lam * mse / b.samples + (1 - o.lam) * (counted > 0 ? dice / counted : 0.0)};
  return {sum / b.samples};
}

TEST(Variants, ForwardAndBackwardMatchReference) {
  Batch b = make_batch(3, 200, 17);
  for (auto& y : b.target) y = std::round(y * 4) / 4;            // ties at T
  for (std::int64_t i = 0; i < b.voxels; ++i) b.target[i] = -1;  // sample 0: no foreground
  std::vector<char> mask_bytes(b.pred.size());
  for (size_t i = 0; i < mask_bytes.size(); ++i) mask_bytes[i] = (i * 7919) % 5 < 2;
  const bool* given = reinterpret_cast<const bool*>(mask_bytes.data());
  const double t = 0.25;
  int cases = 0;
  for (int soft_mask = 0; soft_mask < 3; ++soft_mask)
    for (int rest = 0; rest < 16; ++rest)
      for (auto red : {Reduction::kBatch, Reduction::kMean, Reduction::kSum, Reduction::kNone}) {
        LossOptions o;
        o.k = -0.9;
        o.lam = 0.4;
        o.reduction = red;
        o.mse_term = rest & 8 ? spotlight::MseTerm::kPlain : spotlight::MseTerm::kMasked;
        o.soft_mask = static_cast<spotlight::SoftMask>(soft_mask);
        o.mask_rule = rest & 1 ? spotlight::MaskRule::kGreaterEqual : spotlight::MaskRule::kGreater;
        o.dice_denominator = rest & 2 ? spotlight::DiceDenominator::kSquared : spotlight::DiceDenominator::kLinear;
        o.empty_pools = rest & 4 ? spotlight::EmptyPools::kViscy : spotlight::EmptyPools::kSpotlight;
        o.mask = (soft_mask + rest) % 3 == 0 ? given : nullptr;
        ref::Variant v{soft_mask, (rest & 1) != 0, (rest & 2) != 0, (rest & 4) != 0, true, o.mask, (rest & 8) != 0};
        const std::vector<double> thr(b.samples, t);
        std::vector<double> loss(b.samples);
        const auto st = sc::loss_forward(b.pred.data(), b.target.data(), b.samples, b.voxels, thr.data(), o,
                                         loss.data(), sc::ThreadExecutor(2));
        const auto expected = variant_reference(b, t, o, v);
        for (size_t i = 0; i < expected.size(); ++i)
          EXPECT_NEAR(loss[i], expected[i], 1e-13 * std::abs(expected[i])) << soft_mask << " " << rest;
        const std::vector<double> w = red == Reduction::kNone ? std::vector<double>{0.7, -1.3, 0.4}
                                                              : std::vector<double>{1.0};
        std::vector<double> gp(b.pred.size()), gt(b.pred.size());
        sc::loss_backward(b.pred.data(), b.target.data(), b.samples, b.voxels, st, o, w.data(), gp.data(),
                          gt.data());
        auto objective = [&](const std::vector<double>& p, const std::vector<double>& y) {
          const auto l = variant_reference(Batch{b.samples, b.voxels, p, y}, t, o, v);
          double value = 0;
          for (size_t i = 0; i < l.size(); ++i) value += w[i] * l[i];
          return value;
        };
        for (size_t i = 0; i < b.pred.size(); i += 23) {
          const double x = b.pred[i] - t, h = 1e-7;
          if (std::abs(std::abs(x) - 1) < 1e-5 || std::abs(x) < 1e-5) continue;  // kinks
          auto p1 = b.pred, p2 = b.pred;
          p1[i] += h;
          p2[i] -= h;
          const double fd = (objective(p1, b.target) - objective(p2, b.target)) / (2 * h);
          EXPECT_NEAR(gp[i], fd, 1e-6 * std::max(1.0, std::abs(fd))) << soft_mask << " " << rest << " i=" << i;
          auto y1 = b.target, y2 = b.target;  // the MMSE term, the mask held (Y off the 0.25 grid by h only)
          y1[i] += h;
          y2[i] -= h;
          const double fd_y = (objective(b.pred, y1) - objective(b.pred, y2)) / (2 * h);
          if (b.target[i] != t) EXPECT_NEAR(gt[i], fd_y, 1e-6 * std::max(1.0, std::abs(fd_y))) << "i=" << i;
        }
        ++cases;
      }
  EXPECT_EQ(cases, 192);
}

// The plain MSE term on the default per-voxel options (their own strips):
// the reference's value for every reduction, with Otsu and given thresholds,
// on every task split; and the count of voxels predicted above T.
TEST(MseTerm, PlainOnTheDefaultPathMatchesReference) {
  const Batch b = make_batch(3, 70001, 29);
  for (auto red : {Reduction::kBatch, Reduction::kMean, Reduction::kSum, Reduction::kNone}) {
    LossOptions o;
    o.mse_term = spotlight::MseTerm::kPlain;
    o.lam = 0.3;
    o.reduction = red;
    o.count_above = red != Reduction::kSum;  // counted, and not: the same losses
    ASSERT_TRUE(o.default_variant());
    for (const unsigned threads : {1u, 4u}) {  // whole samples (Otsu fused) and chunked
      std::vector<double> loss(b.samples);
      const auto st = sc::loss_forward(b.pred.data(), b.target.data(), b.samples, b.voxels,
                                       static_cast<const double*>(nullptr), o, loss.data(), sc::ThreadExecutor(threads));
      ref::Variant v;
      v.plain = true;
      std::vector<double> expected;
      for (std::int64_t s = 0; s < b.samples; ++s) {  // each sample's Otsu T, one pool per sample
        const Batch one{1, b.voxels, std::vector<double>(b.pred.begin() + s * b.voxels, b.pred.begin() + (s + 1) * b.voxels),
                        std::vector<double>(b.target.begin() + s * b.voxels, b.target.begin() + (s + 1) * b.voxels)};
        LossOptions single = o;
        single.reduction = Reduction::kNone;
        expected.push_back(variant_reference(one, st.thresholds[s], single, v)[0]);
        std::int64_t above = 0;
        for (double p : one.pred) above += p > st.thresholds[s];
        EXPECT_EQ(st.sums[s].above, o.count_above ? static_cast<double>(above) : 0.0) << "sample " << s;
      }
      if (red == Reduction::kNone) {
        for (std::int64_t s = 0; s < b.samples; ++s) EXPECT_NEAR(loss[s], expected[s], 1e-12 * expected[s]);
      } else if (red != Reduction::kBatch) {
        double sum = 0;
        for (double e : expected) sum += e;
        EXPECT_NEAR(loss[0], red == Reduction::kSum ? sum : sum / b.samples, 1e-12 * sum);
      }
    }
    const std::vector<double> thr(b.samples, 0.5);  // given thresholds: the batch pool too
    std::vector<double> loss(b.samples);
    sc::loss_forward(b.pred.data(), b.target.data(), b.samples, b.voxels, thr.data(), o, loss.data());
    ref::Variant v;
    v.plain = true;
    const auto expected = variant_reference(b, 0.5, o, v);
    for (size_t i = 0; i < expected.size(); ++i) EXPECT_NEAR(loss[i], expected[i], 1e-12 * expected[i]);
  }
}

TEST(Variants, UnclampedSoftMasksRejectPositiveK) {
  LossOptions o;
  o.k = 0.5;
  o.soft_mask = spotlight::SoftMask::kUnclamped;
  EXPECT_THROW(o.validate(), spotlight::Error);
  o.soft_mask = spotlight::SoftMask::kViscy;
  EXPECT_THROW(o.validate(), spotlight::Error);
  o.soft_mask = spotlight::SoftMask::kClamped;
  EXPECT_NO_THROW(o.validate());
}

TEST(Loss, NaNPoisonsOnlyItsPoolWithGivenThreshold) {
  Batch b = make_batch(2, 100, 17);
  b.pred[5] = std::numeric_limits<double>::quiet_NaN();
  LossOptions o;
  o.reduction = Reduction::kNone;
  const double t[2] = {1.0, 1.0};
  double loss[2];
  sc::loss_forward(b.pred.data(), b.target.data(), 2, 100, t, o, loss);
  EXPECT_TRUE(std::isnan(loss[0]));
  EXPECT_FALSE(std::isnan(loss[1]));
  o.reduction = Reduction::kBatch;
  sc::loss_forward(b.pred.data(), b.target.data(), 2, 100, t, o, loss);
  EXPECT_TRUE(std::isnan(loss[0]));
}

TEST(Loss, InfInTargetPoisonsThresholdAndLoss) {
  Batch b = make_batch(2, 100, 19);
  b.target[150] = std::numeric_limits<double>::infinity();
  LossOptions o;
  o.reduction = Reduction::kNone;
  double loss[2];
  const auto st = sc::loss_forward(b.pred.data(), b.target.data(), 2, 100, static_cast<const double*>(nullptr), o, loss);
  EXPECT_FALSE(std::isnan(loss[0]));
  EXPECT_TRUE(std::isnan(st.thresholds[1]));
  EXPECT_TRUE(std::isnan(loss[1]));
}

TEST(Loss, NoForegroundGivesZeroMse) {
  std::vector<double> y(64, 0.0), p(64, 0.3);
  LossOptions o;
  double loss = 0;
  const double t = 1.0;
  sc::loss_forward(p.data(), y.data(), 1, 64, &t, o, &loss);
  // MMSE = 0; Dice = 1 - 0 = 1 (no foreground, soft mask below 1).
  EXPECT_NEAR(loss, 0.5, 1e-12);
}

TEST(Loss, InvalidOptionsThrowNamingTheArgument) {
  double p = 0, y = 0, out = 0;
  LossOptions o;
  o.k = 1.0;
  try {
    sc::loss_forward(&p, &y, 1, 1, static_cast<const double*>(nullptr), o, &out);
    FAIL() << "no exception";
  } catch (const spotlight::Error& e) {
    EXPECT_NE(std::string(e.what()).find("k must lie"), std::string::npos);
  }
  o = LossOptions{};
  o.lam = 2;
  EXPECT_THROW(sc::loss_forward(&p, &y, 1, 1, static_cast<const double*>(nullptr), o, &out), spotlight::Error);
  o = LossOptions{};
  o.bins = 1;
  EXPECT_THROW(sc::loss_forward(&p, &y, 1, 1, static_cast<const double*>(nullptr), o, &out), spotlight::Error);
  o = LossOptions{};
  o.eps = -1;
  EXPECT_THROW(sc::loss_forward(&p, &y, 1, 1, static_cast<const double*>(nullptr), o, &out), spotlight::Error);
  EXPECT_THROW(sc::loss_forward(&p, &y, 0, 1, static_cast<const double*>(nullptr), LossOptions{}, &out),
               spotlight::Error);
  EXPECT_THROW(spotlight::parse_option<Reduction>("max"), spotlight::Error);
  EXPECT_EQ(spotlight::parse_option<Reduction>("sum"), Reduction::kSum);
  EXPECT_THROW(spotlight::parse_option<spotlight::MseNormalization>("bg"), spotlight::Error);
  EXPECT_THROW(spotlight::parse_option<spotlight::SoftMask>("hard"), spotlight::Error);
  EXPECT_THROW(spotlight::parse_option<spotlight::MaskRule>(">="), spotlight::Error);
  EXPECT_THROW(spotlight::parse_option<spotlight::DiceDenominator>("cubic"), spotlight::Error);
  EXPECT_THROW(spotlight::parse_option<spotlight::EmptyPools>("monai"), spotlight::Error);
}

// The message of the spotlight::Error that call() throws.
template <class Call>
std::string message(Call&& call) {
  try {
    call();
  } catch (const spotlight::Error& e) {
    return std::string(e.what());
  }
  return std::string("no exception");
}

// Every name of every option table parses back to its value, the tables hold
// each value once, and an unknown name's error lists the allowed names.
template <class E>
void expect_round_trip(int count) {
  const auto& values = spotlight::OptionNames<E>::values;
  ASSERT_EQ(static_cast<int>(values.size()), count);
  for (size_t i = 0; i < values.size(); ++i) {
    EXPECT_EQ(spotlight::parse_option<E>(values[i].name), values[i].value);
    EXPECT_EQ(spotlight::option_name(values[i].value), values[i].name);
    for (size_t j = 0; j < i; ++j) EXPECT_NE(values[i].value, values[j].value);
  }
}

TEST(Options, NameTablesRoundTrip) {
  expect_round_trip<Reduction>(4);
  expect_round_trip<spotlight::MseNormalization>(2);
  expect_round_trip<spotlight::SoftMask>(3);
  expect_round_trip<spotlight::MaskRule>(2);
  expect_round_trip<spotlight::DiceDenominator>(2);
  expect_round_trip<spotlight::EmptyPools>(2);
  expect_round_trip<spotlight::MseTerm>(2);
  EXPECT_EQ(message([] { spotlight::parse_option<Reduction>("max"); }),
            "spotlight: reduction must be one of 'batch', 'mean', 'sum', 'none', got 'max'");
  EXPECT_EQ(message([] { spotlight::parse_option<spotlight::MaskRule>(">="); }),
            "spotlight: mask_rule must be 'greater' or 'greater_equal', got '>='");
  // LossOptions{} is spotlight::defaults, the paper's variant.
  const LossOptions o;
  EXPECT_EQ(o.lam, spotlight::defaults::kLam);
  EXPECT_EQ(o.k, kK);
  EXPECT_EQ(o.eps, spotlight::defaults::kEps);
  EXPECT_EQ(o.bins, kBins);
  EXPECT_EQ(o.reduction, spotlight::defaults::kReduction);
  EXPECT_EQ(o.mse_normalization, spotlight::defaults::kMseNormalization);
  EXPECT_TRUE(o.default_variant());
}

// count_above adds the voxels predicted above T to every strip's sums (default
// and variant, either MSE term, Otsu fused or given T) and changes no loss bit.
TEST(Counts, EveryStripCountsPredictionsAboveT) {
  Batch b = make_batch(3, 9000, 53);
  std::vector<char> mask_bytes(b.pred.size());
  for (size_t i = 0; i < mask_bytes.size(); ++i) mask_bytes[i] = (i * 31) % 7 < 3;
  for (int variant = 0; variant < 4; ++variant)
    for (const bool given : {false, true}) {
      LossOptions o;
      o.reduction = Reduction::kNone;
      o.mse_term = variant & 1 ? spotlight::MseTerm::kPlain : spotlight::MseTerm::kMasked;
      if (variant & 2) {
        o.soft_mask = spotlight::SoftMask::kViscy;
        o.mask = reinterpret_cast<const bool*>(mask_bytes.data());
      }
      const std::vector<double> thr(b.samples, 0.4);
      const double* t = given ? thr.data() : nullptr;
      std::vector<double> plain_loss(b.samples), counted_loss(b.samples);
      const auto plain = sc::loss_forward(b.pred.data(), b.target.data(), b.samples, b.voxels, t, o, plain_loss.data(),
                                          sc::ThreadExecutor(2));
      o.count_above = true;
      const auto counted = sc::loss_forward(b.pred.data(), b.target.data(), b.samples, b.voxels, t, o,
                                            counted_loss.data(), sc::ThreadExecutor(2));
      EXPECT_EQ(plain_loss, counted_loss) << variant;
      for (std::int64_t s = 0; s < b.samples; ++s) {
        std::int64_t above = 0;
        for (std::int64_t i = s * b.voxels; i < (s + 1) * b.voxels; ++i) above += b.pred[i] > counted.thresholds[s];
        EXPECT_EQ(counted.sums[s].above, static_cast<double>(above)) << variant << " sample " << s;
        EXPECT_EQ(plain.sums[s].above, 0.0);
      }
    }
}

// The list of options names each once, an enum by the name its table gives
// the argument; the text parser reads every option and states each check's
// rule with the text that failed.
TEST(Options, ListAndTextParser) {
  std::vector<std::string> names;
  spotlight::for_each_option([&](const auto& o) {
    using V = std::remove_cvref_t<decltype(LossOptions{}.*o.field)>;
    if constexpr (std::is_enum_v<V>) EXPECT_EQ(o.name, spotlight::OptionNames<V>::argument);
    for (const auto& seen : names) EXPECT_NE(seen, o.name);
    names.emplace_back(o.name);
  });
  EXPECT_EQ(names.size(), 12u);
  const std::vector<std::string_view> items = {"lam=0.25",      "k=-0.5",         "eps=0",
                                               "bins=64",       "reduction=none", "per_channel=True",
                                               "mse_term=plain", "soft_mask=viscy"};
  const LossOptions o = spotlight::options_from_text(items);
  EXPECT_EQ(o.lam, 0.25);
  EXPECT_EQ(o.k, -0.5);
  EXPECT_EQ(o.eps, 0.0);
  EXPECT_EQ(o.bins, 64);
  EXPECT_EQ(o.reduction, Reduction::kNone);
  EXPECT_TRUE(o.per_channel);
  EXPECT_EQ(o.mse_term, spotlight::MseTerm::kPlain);
  EXPECT_EQ(o.soft_mask, spotlight::SoftMask::kViscy);
  const auto error = [](std::string_view item) {
    return message([&] { spotlight::options_from_text(std::vector<std::string_view>{item}); });
  };
  EXPECT_EQ(error("bins=2.5"), "spotlight: bins must be an integer in [2, 65536], got 2.5");
  EXPECT_EQ(error("bins=9223372036854775808"),
            "spotlight: bins must be an integer in [2, 65536], got 9223372036854775808");
  EXPECT_EQ(error("bins=16777216"), "spotlight: bins must be an integer in [2, 65536], got 16777216");
  EXPECT_EQ(error("lam='abc'"), "spotlight: lam must lie in [0, 1], got 'abc'");
  EXPECT_EQ(error("lam=2.0"), "spotlight: lam must lie in [0, 1], got 2");
  EXPECT_EQ(error("eps=inf"), "spotlight: eps must be finite and >= 0, got inf");
  EXPECT_EQ(error("per_channel=1"), "spotlight: per_channel must be True or False, got 1");
  EXPECT_EQ(error("mse_term=both"), "spotlight: mse_term must be 'masked' or 'plain', got 'both'");
  EXPECT_EQ(error("soft_mask=viscy"), "no exception");
  EXPECT_EQ(message([] { spotlight::options_from_text(std::vector<std::string_view>{"k=0.5", "soft_mask=viscy"}); }),
            "spotlight: k must be <= 0 for soft_mask 'viscy' (the sigmoid of an unclamped P - T has a pole for k > 0), "
            "got 0.5");
  EXPECT_EQ(error("frobnicate=1"), "spotlight: unknown loss option 'frobnicate'");
  EXPECT_EQ(error("lam"), "spotlight: a loss option must be written name=value, got 'lam'");
}

// The C++ API checks its arguments like the ops do: spotlight::Error naming
// the argument, before any work (so no null data pointer is read here).
TEST(CppApi, EveryEntryPointRejectsBadArguments) {
  const float* none = nullptr;
  float out = 0;
  spotlight::LossSums sums;
  EXPECT_NE(message([&] { sc::otsu_thresholds(none, 0, 5, kBins, &out); }).find("x must hold at least one sample"),
            std::string::npos);
  EXPECT_NE(message([&] { sc::otsu_thresholds(none, 1, 5, 1, &out); }).find("bins must be"), std::string::npos);
  EXPECT_NE(message([&] { sc::otsu_standardize(none, 1, 0, kBins, &out); }).find("x must hold"), std::string::npos);
  EXPECT_NE(message([&] { sc::otsu_standardize(none, 1, 4, 0, &out); }).find("bins must be"), std::string::npos);
  EXPECT_NE(message([&] { sc::tunable_sigmoid(none, 4, 1.5, &out); }).find("k must lie"), std::string::npos);
  EXPECT_NE(message([&] { sc::tunable_sigmoid_backward(none, none, 4, -1.0, &out); }).find("k must lie"),
            std::string::npos);
  EXPECT_NE(message([&] { sc::masked_mse_sums(none, none, nullptr, 0, 3, &sums); }).find("pred must hold"),
            std::string::npos);
  EXPECT_NE(message([&] { sc::soft_dice_sums(none, nullptr, 2, 0, &sums); }).find("soft must hold"),
            std::string::npos);
  const sc::LossForwardState<float> empty_state;
  const double g = 1;
  EXPECT_NE(message([&] { sc::loss_backward(none, none, 2, 3, empty_state, LossOptions{}, &g, &out, static_cast<float*>(nullptr)); })
                .find("state must come from loss_forward"),
            std::string::npos);
  LossOptions bad;
  bad.lam = -1;
  EXPECT_NE(message([&] { sc::loss_backward(none, none, 2, 3, empty_state, bad, &g, &out, static_cast<float*>(nullptr)); })
                .find("lam must lie"),
            std::string::npos);
}

TEST(Terms, MaskedMseAndDiceMatchReference) {
  const Batch b = make_batch(2, 5000, 23);
  std::vector<char> mask_storage(b.pred.size());
  std::vector<bool> m(b.pred.size());
  for (size_t i = 0; i < m.size(); ++i) m[i] = b.target[i] > 1.0;
  auto* mask = reinterpret_cast<bool*>(mask_storage.data());
  for (size_t i = 0; i < m.size(); ++i) mask[i] = m[i];
  std::vector<spotlight::LossSums> sums(2);
  sc::masked_mse_sums(b.pred.data(), b.target.data(), mask, 2, 5000, sums.data());
  std::vector<double> soft(b.pred.size());
  for (size_t i = 0; i < soft.size(); ++i) soft[i] = 0.5 * (1 + ref::sigmoid(b.pred[i] - 1.0, kK));
  std::vector<spotlight::LossSums> dsums(2);
  sc::soft_dice_sums(soft.data(), mask, 2, 5000, dsums.data());
  for (int s = 0; s < 2; ++s) {
    const auto r = ref::terms(b.pred.data() + s * 5000, b.target.data() + s * 5000, 5000, 1.0, kK);
    EXPECT_DOUBLE_EQ(sums[s].fg, r.fg);
    EXPECT_NEAR(sums[s].sq_err, r.se, 1e-9 * r.se);
    EXPECT_NEAR(dsums[s].soft, r.soft, 1e-9 * r.soft);
    EXPECT_NEAR(dsums[s].soft_fg, r.soft_fg, 1e-9 * r.soft_fg);
  }
}
