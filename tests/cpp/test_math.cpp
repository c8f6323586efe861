// Per-element math of spotlight/core/math.hpp against the SPEC formulas.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "reference.hpp"
#include "spotlight/core/math.hpp"
#include "spotlight/core/options.hpp"

namespace sm = spotlight::math;
using spotlight::defaults::kK;

TEST(TunableSigmoid, MatchesFormulaAndEndpoints) {
  for (double k : {kK, -0.5, 0.0, 0.5, 0.9}) {
    for (double x = -1.5; x <= 1.5; x += 0.01) {
      EXPECT_NEAR(sm::clamped_tunable_sigmoid(x, k), ref::sigmoid(x, k), 1e-15) << "x=" << x << " k=" << k;
    }
    EXPECT_DOUBLE_EQ(sm::tunable_sigmoid(1.0, k), 1.0);
    EXPECT_DOUBLE_EQ(sm::tunable_sigmoid(-1.0, k), -1.0);
    EXPECT_DOUBLE_EQ(sm::tunable_sigmoid(0.0, k), 0.0);
  }
}

TEST(TunableSigmoid, GradientMatchesCentralDifference) {
  for (double k : {kK, -0.3, 0.4}) {
    for (double x = -0.99; x < 0.99; x += 0.0137) {
      if (std::abs(x) < 1e-3) continue;  // |x| kink at 0
      const double h = 1e-6;
      const double fd = (ref::sigmoid(x + h, k) - ref::sigmoid(x - h, k)) / (2 * h);
      EXPECT_NEAR(sm::clamped_tunable_sigmoid_grad(x, k), fd, 1e-5 * std::max(1.0, std::abs(fd)));
    }
    EXPECT_EQ(sm::clamped_tunable_sigmoid_grad(1.0, k), 0.0);
    EXPECT_EQ(sm::clamped_tunable_sigmoid_grad(-3.0, k), 0.0);
  }
}

TEST(TunableSigmoid, SecondDerivativeMatchesCentralDifference) {
  for (double k : {kK, -0.3, 0.4}) {
    for (double x = -0.99; x < 0.99; x += 0.0137) {
      if (std::abs(x) < 1e-3) continue;  // |x| kink at 0
      const double h = 1e-6;
      const double fd = (sm::tunable_sigmoid_grad(x + h, k) - sm::tunable_sigmoid_grad(x - h, k)) / (2 * h);
      EXPECT_NEAR(sm::clamped_tunable_sigmoid_grad2(x, k), fd, 1e-5 * std::max(1.0, std::abs(fd))) << "x=" << x;
    }
    EXPECT_EQ(sm::clamped_tunable_sigmoid_grad2(0.0, k), 0.0);
    EXPECT_EQ(sm::clamped_tunable_sigmoid_grad2(1.0, k), 0.0);
    EXPECT_EQ(sm::clamped_tunable_sigmoid_grad2(-3.0, k), 0.0);
    EXPECT_EQ(sm::clamped_tunable_sigmoid_grad2(std::numeric_limits<double>::quiet_NaN(), k), 0.0);
  }
}

TEST(SoftMask, HalfAtThresholdAndBounded) {
  EXPECT_DOUBLE_EQ(sm::soft_mask(0.3, 0.3, kK), 0.5);
  EXPECT_DOUBLE_EQ(sm::soft_mask(5.0, 0.3, kK), 1.0);
  EXPECT_DOUBLE_EQ(sm::soft_mask(-5.0, 0.3, kK), 0.0);
}

TEST(Clamp, PropagatesNaN) {
  EXPECT_TRUE(std::isnan(sm::clamp_unit(std::numeric_limits<double>::quiet_NaN())));
  EXPECT_TRUE(std::isnan(sm::poison(std::numeric_limits<float>::infinity())));
  EXPECT_EQ(sm::poison(3.0f), 0.0f);
}

TEST(HistogramBin, EdgesAndMaximum) {
  const double lo = 0.0, hi = 1.0;
  const double scale = sm::histogram_scale(lo, hi, 4);
  EXPECT_EQ(sm::histogram_bin(0.0, lo, hi, scale, 4), 0);
  EXPECT_EQ(sm::histogram_bin(0.25, lo, hi, scale, 4), 1);
  EXPECT_EQ(sm::histogram_bin(0.99, lo, hi, scale, 4), 3);
  EXPECT_EQ(sm::histogram_bin(1.0, lo, hi, scale, 4), 3);
  EXPECT_EQ(sm::histogram_scale(2.0, 2.0, 4), 0.0);
}

TEST(HistogramBin, TinyHugeAndNonFinite) {
  const double inf = std::numeric_limits<double>::infinity();
  // A range of double denormals: the scale overflows, the bin divides instead.
  const double lo = 0.0, hi = 4e-310, scale = sm::histogram_scale(lo, hi, 4);
  EXPECT_EQ(scale, inf);
  EXPECT_EQ(sm::histogram_bin(1.5e-310, lo, hi, scale, 4), 1);
  EXPECT_EQ(sm::histogram_bin(4e-310, lo, hi, scale, 4), 3);
  // Float denormals are exact in double and their scale is finite there.
  const float tiny = std::numeric_limits<float>::denorm_min();
  const double flo = 0.0, fhi = 8.0 * tiny, fs = sm::histogram_scale(flo, fhi, 4);
  EXPECT_EQ(sm::histogram_bin(static_cast<double>(3.0f * tiny), flo, fhi, fs, 4), 1);
  // Out-of-range and non-finite values stay inside the histogram.
  EXPECT_EQ(sm::histogram_bin(inf, 0.0, 1.0, 4.0, 4), 3);
  EXPECT_EQ(sm::histogram_bin(-inf, 0.0, 1.0, 4.0, 4), 0);
  EXPECT_EQ(sm::histogram_bin(std::numeric_limits<double>::quiet_NaN(), 0.0, 1.0, 4.0, 4), 0);
  EXPECT_EQ(sm::histogram_bin(1e300, 0.0, 1.0, 4.0, 4), 3);
}

TEST(OtsuBin, TwoClusters) {
  // Counts: a lump at bins 1-2 and a lump at bins 6-7: the split is between.
  const long counts[8] = {0, 10, 10, 0, 0, 0, 5, 5};
  const int b = sm::otsu_bin([&](int i) { return counts[i]; }, 8);
  EXPECT_GE(b, 2);
  EXPECT_LE(b, 5);
  EXPECT_EQ(b, 2);  // first maximum: every split in 2..5 has the same criterion
}
