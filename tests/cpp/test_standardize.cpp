// Otsu standardization of spotlight/cpu/standardize.hpp against the reference.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "reference.hpp"
#include "spotlight/cpu/standardize.hpp"

namespace sc = spotlight::cpu;

TEST(Standardize, MatchesReference) {
  const std::int64_t voxels = 120000;
  auto v = ref::random_volume(voxels, 29);
  for (auto& x : v) x = 100.0 + 7.0 * x;  // offset: a naive sum-of-squares would lose digits
  std::vector<double> out(v.size());
  sc::otsu_standardize(v.data(), 1, voxels, 256, out.data(), sc::ThreadExecutor(2));
  double mean = 0;
  for (double x : v) mean += x / voxels;
  double var = 0;
  for (double x : v) var += (x - mean) * (x - mean) / voxels;
  const double t = ref::otsu(v, 256), sd = std::sqrt(var);
  for (std::int64_t i = 0; i < voxels; i += 101) EXPECT_NEAR(out[i], (v[i] - t) / sd, 1e-10);
}

TEST(Standardize, FloatMomentsAreAccurate) {
  const std::int64_t voxels = 1 << 20;
  auto v = ref::random_volume(voxels, 31);
  std::vector<float> xf;
  for (double x : v) xf.push_back(static_cast<float>(1000.0 + x));
  std::vector<spotlight::cpu::SampleMoments> m(1);
  sc::sample_moments(xf.data(), 1, voxels, m.data());
  double mean = 0;
  for (float x : xf) mean += static_cast<double>(x) / voxels;
  double var = 0;
  for (float x : xf) var += (x - mean) * (x - mean) / voxels;
  EXPECT_NEAR(m[0].mean, mean, 1e-9 * mean);
  EXPECT_NEAR(m[0].std, std::sqrt(var), 1e-4 * std::sqrt(var));
}

TEST(Standardize, ConstantSampleDividesByOne) {
  std::vector<float> x(50, 4.0f), out(50);
  sc::otsu_standardize(x.data(), 1, 50, 256, out.data());
  for (float v : out) EXPECT_EQ(v, 0.0f);
}
