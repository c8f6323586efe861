// Per-element math of spotlight/core/math.hpp against the SPEC formulas.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "reference.hpp"
#include "spotlight/core/math.hpp"

namespace sm = spotlight::math;

TEST(TunableSigmoid, MatchesFormulaAndEndpoints) {
  for (double k : {-0.95, -0.5, 0.0, 0.5, 0.9}) {
    for (double x = -1.5; x <= 1.5; x += 0.01) {
      EXPECT_NEAR(sm::clamped_tunable_sigmoid(x, k), ref::sigmoid(x, k), 1e-15) << "x=" << x << " k=" << k;
    }
    EXPECT_DOUBLE_EQ(sm::tunable_sigmoid(1.0, k), 1.0);
    EXPECT_DOUBLE_EQ(sm::tunable_sigmoid(-1.0, k), -1.0);
    EXPECT_DOUBLE_EQ(sm::tunable_sigmoid(0.0, k), 0.0);
  }
}

TEST(TunableSigmoid, GradientMatchesCentralDifference) {
  for (double k : {-0.95, -0.3, 0.4}) {
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

TEST(SoftMask, HalfAtThresholdAndBounded) {
  EXPECT_DOUBLE_EQ(sm::soft_mask(0.3, 0.3, -0.95), 0.5);
  EXPECT_DOUBLE_EQ(sm::soft_mask(5.0, 0.3, -0.95), 1.0);
  EXPECT_DOUBLE_EQ(sm::soft_mask(-5.0, 0.3, -0.95), 0.0);
}

TEST(Clamp, PropagatesNaN) {
  EXPECT_TRUE(std::isnan(sm::clamp_unit(std::numeric_limits<double>::quiet_NaN())));
  EXPECT_TRUE(std::isnan(sm::poison(std::numeric_limits<float>::infinity())));
  EXPECT_EQ(sm::poison(3.0f), 0.0f);
}

TEST(HistogramBin, EdgesAndMaximum) {
  const float lo = 0.0f, hi = 1.0f;
  const float scale = sm::histogram_scale(lo, hi, 4);
  EXPECT_EQ(sm::histogram_bin(0.0f, lo, scale, 4), 0);
  EXPECT_EQ(sm::histogram_bin(0.25f, lo, scale, 4), 1);
  EXPECT_EQ(sm::histogram_bin(0.99f, lo, scale, 4), 3);
  EXPECT_EQ(sm::histogram_bin(1.0f, lo, scale, 4), 3);
  EXPECT_EQ(sm::histogram_scale(2.0f, 2.0f, 4), 0.0f);
}

TEST(OtsuBin, TwoClusters) {
  // Counts: a lump at bins 1-2 and a lump at bins 6-7: the split is between.
  const long counts[8] = {0, 10, 10, 0, 0, 0, 5, 5};
  const int b = sm::otsu_bin([&](int i) { return counts[i]; }, 8);
  EXPECT_GE(b, 2);
  EXPECT_LE(b, 5);
  EXPECT_EQ(b, 2);  // first maximum: every split in 2..5 has the same criterion
}
