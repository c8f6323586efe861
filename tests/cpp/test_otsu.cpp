// Per-sample Otsu thresholds of spotlight/cpu/otsu.hpp against the float64
// reference, on random, structured, constant, tiny and non-finite samples.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "reference.hpp"
#include "spotlight/cpu/otsu.hpp"
#include "spotlight/core/options.hpp"

namespace sc = spotlight::cpu;
using spotlight::defaults::kBins;

TEST(Otsu, MatchesReferencePerSampleDouble) {
  const std::int64_t samples = 3, voxels = 100003;  // several chunks per sample
  std::vector<double> x;
  std::vector<double> expected;
  for (int s = 0; s < samples; ++s) {
    auto v = ref::random_volume(voxels, 7 + s, 0.05 * (s + 1));
    expected.push_back(ref::otsu(v, kBins));
    x.insert(x.end(), v.begin(), v.end());
  }
  std::vector<double> got(samples);
  sc::otsu_thresholds(x.data(), samples, voxels, kBins, got.data(), sc::ThreadExecutor(3));
  for (int s = 0; s < samples; ++s) EXPECT_DOUBLE_EQ(got[s], expected[s]) << "sample " << s;
}

TEST(Otsu, FloatWithinOneBinOfReference) {
  const std::int64_t voxels = 50000;
  auto v = ref::random_volume(voxels, 3);
  std::vector<float> xf(v.begin(), v.end());
  std::vector<double> vd(xf.begin(), xf.end());
  float got = 0;
  sc::otsu_thresholds(xf.data(), 1, voxels, kBins, &got, sc::SerialExecutor{});
  const double lo = *std::min_element(vd.begin(), vd.end()), hi = *std::max_element(vd.begin(), vd.end());
  EXPECT_LE(std::abs(got - ref::otsu(vd, kBins)), (hi - lo) / kBins * 1.0001);
}

TEST(Otsu, ThreadCountDoesNotChangeResult) {
  const std::int64_t voxels = 300000;
  auto v = ref::random_volume(voxels, 11);
  std::vector<float> xf(v.begin(), v.end());
  float a = 0, b = 0;
  sc::otsu_thresholds(xf.data(), 1, voxels, kBins, &a, sc::SerialExecutor{});
  sc::otsu_thresholds(xf.data(), 1, voxels, kBins, &b, sc::ThreadExecutor(4));
  EXPECT_EQ(a, b);
}

TEST(Otsu, ConstantSampleGivesItsValue) {
  std::vector<float> x(1000, 3.5f);
  float t = 0;
  sc::otsu_thresholds(x.data(), 1, 1000, kBins, &t);
  EXPECT_EQ(t, 3.5f);
}

TEST(Otsu, SingleVoxel) {
  const float x[2] = {-2.0f, 7.0f};
  float t[2];
  sc::otsu_thresholds(x, 2, 1, kBins, t);
  EXPECT_EQ(t[0], -2.0f);
  EXPECT_EQ(t[1], 7.0f);
}

TEST(Otsu, NonFiniteSampleIsNaNOthersUntouched) {
  std::vector<float> x = {0, 1, 2, 3, 0, 1, 2, 3};
  x[2] = std::numeric_limits<float>::quiet_NaN();
  float t[2];
  sc::otsu_thresholds(x.data(), 2, 4, kBins, t);
  EXPECT_TRUE(std::isnan(t[0]));
  EXPECT_FALSE(std::isnan(t[1]));
  x[2] = std::numeric_limits<float>::infinity();
  sc::otsu_thresholds(x.data(), 2, 4, kBins, t);
  EXPECT_TRUE(std::isnan(t[0]));
}

TEST(Otsu, TwoBinsOnBimodalData) {
  std::vector<double> x = {0, 0, 0, 10, 10};
  double t = 0;
  sc::otsu_thresholds(x.data(), 1, 5, 2, &t);
  EXPECT_DOUBLE_EQ(t, 2.5);  // centre of bin 0 of [0, 10] in 2 bins
}
