// Per-sample Otsu thresholds of spotlight/cpu/otsu.hpp against the float64
// reference, on random, structured, constant, tiny and non-finite samples.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <type_traits>
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

// A bimodal sample spanning [-m, m] exactly (both ends present): 30% near
// m / 2, the rest spread over [-m, m].
template <class T>
std::vector<T> spanning_sample(std::int64_t voxels, T m, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  std::vector<T> x(static_cast<size_t>(voxels));
  for (auto& v : x) {
    const double a = u(rng);
    v = static_cast<T>((std::abs(a) < 0.3 ? 0.5 + 0.01 * a : a) * static_cast<double>(m));
  }
  x[0] = -m;
  x[1] = m;
  return x;
}

// Ranges wider than DBL_MAX (float64 [-1e308, 1e308], [-DBL_MAX, DBL_MAX]),
// and the float extremes: a finite threshold, the bits of the threshold of
// the halved data times 2 (halving is exact, so the result is that of
// unbounded arithmetic), and the float64 reference's threshold of the data
// scaled by 2^-600, scaled back, in the whole-sample and the chunked paths.
template <class T>
void expect_finite_at_extreme(T m) {
  const std::int64_t samples = 2, voxels = 70001;  // several chunks, a last partial one
  std::vector<T> x = spanning_sample<T>(voxels, m, 5);
  const std::vector<T> second = spanning_sample<T>(voxels, m, 6);
  x.insert(x.end(), second.begin(), second.end());
  std::vector<T> halved(x.size());
  for (size_t i = 0; i < x.size(); ++i) halved[i] = x[i] / 2;
  for (const unsigned threads : {1u, 8u}) {  // whole samples; chunked (samples < threads)
    const sc::ThreadExecutor exec(threads);
    std::vector<T> got(samples), got_half(samples);
    sc::otsu_thresholds(x.data(), samples, voxels, kBins, got.data(), exec);
    sc::otsu_thresholds(halved.data(), samples, voxels, kBins, got_half.data(), exec);
    for (std::int64_t s = 0; s < samples; ++s) {
      ASSERT_TRUE(std::isfinite(got[s])) << m << " sample " << s << " threads " << threads;
      EXPECT_EQ(got[s], 2 * got_half[s]) << m << " sample " << s;
      // the reference on data scaled by 2^-600 (exact), where none of its
      // products overflows
      std::vector<double> v(x.begin() + s * voxels, x.begin() + (s + 1) * voxels);
      for (double& e : v) e = std::ldexp(e, -600);
      const double want = std::ldexp(ref::otsu(v, kBins), 600);
      if constexpr (std::is_same_v<T, float>)
        EXPECT_FLOAT_EQ(got[s], static_cast<float>(want)) << m << " sample " << s;
      else
        EXPECT_DOUBLE_EQ(got[s], want) << m << " sample " << s;
    }
  }
}

TEST(Otsu, FiniteWhenTheRangeOverflows) {
  expect_finite_at_extreme<double>(1e308);
  expect_finite_at_extreme<double>(std::numeric_limits<double>::max());
  expect_finite_at_extreme<float>(3e38f);
  expect_finite_at_extreme<float>(std::numeric_limits<float>::max());
}

// The bin-centre and histogram math on a range wider than DBL_MAX directly.
TEST(Otsu, WideRangeMath) {
  namespace sm = spotlight::math;
  const double lo = -1e308, hi = 1e308;
  ASSERT_TRUE(sm::wide_range(lo, hi));
  EXPECT_FALSE(sm::wide_range(-1e307, 1e307));
  const double scale = sm::histogram_scale(lo, hi, 4);
  EXPECT_EQ(scale, 4 / 1e308);  // bins / (hi/2 - lo/2), for the halved offsets
  EXPECT_EQ(sm::histogram_bin(lo, lo, hi, scale, 4), 0);
  EXPECT_EQ(sm::histogram_bin(-0.6e308, lo, hi, scale, 4), 0);
  EXPECT_EQ(sm::histogram_bin(-0.4e308, lo, hi, scale, 4), 1);
  EXPECT_EQ(sm::histogram_bin(0.4e308, lo, hi, scale, 4), 2);
  EXPECT_EQ(sm::histogram_bin(hi, lo, hi, scale, 4), 3);
  EXPECT_DOUBLE_EQ(sm::bin_centre(lo, hi, 4, 0), -0.75e308);
  EXPECT_DOUBLE_EQ(sm::bin_centre(lo, hi, 4, 3), 0.75e308);
  EXPECT_DOUBLE_EQ(sc::exact_bin_centre(lo, hi, 4, 1), -0.25e308);
  EXPECT_EQ(sc::exact_bin_centre(lo, hi, 4, 3), sm::bin_centre(lo, hi, 4, 3));
}

// Every task split, forced whatever the machine's core count: whole samples
// (1 thread; fewer threads than samples; as many) and the chunked passes
// (more threads than samples), each sample ending in a partial chunk: the
// float64 reference's thresholds, the same bits in every split.
TEST(Otsu, EveryTaskSplitMatchesReference) {
  const std::int64_t samples = 5, voxels = 70001;
  std::vector<double> x, expected;
  for (int s = 0; s < samples; ++s) {
    auto v = ref::random_volume(voxels, 60 + s, 0.05 * (s + 1));
    expected.push_back(ref::otsu(v, kBins));
    x.insert(x.end(), v.begin(), v.end());
  }
  const std::vector<float> xf(x.begin(), x.end());
  std::vector<float> first;
  for (const unsigned threads : {1u, 3u, 5u, 8u}) {
    ASSERT_EQ(sc::whole_samples<double>(samples, voxels, threads), threads <= samples);
    std::vector<double> got(samples);
    std::vector<float> got_f(samples);
    sc::otsu_thresholds(x.data(), samples, voxels, kBins, got.data(), sc::ThreadExecutor(threads));
    sc::otsu_thresholds(xf.data(), samples, voxels, kBins, got_f.data(), sc::ThreadExecutor(threads));
    for (int s = 0; s < samples; ++s) EXPECT_DOUBLE_EQ(got[s], expected[s]) << threads << " threads, sample " << s;
    if (first.empty()) first = got_f;
    EXPECT_EQ(got_f, first) << threads << " threads";
  }
}

// The bin-count branches of the histogram: interleaved sub-histograms up to
// 4096 bins, one counter per bin above, up to the most bins, 2^16 (float bins
// computed in float). A float sample's threshold is the float of the same
// values' threshold as double (whose bins are computed in double), and at
// 4097 bins the float64 reference's.
TEST(Otsu, EveryBinCountPathAgrees) {
  const std::int64_t voxels = 40000;
  const auto v = ref::random_volume(voxels, 71, 0.3);
  const std::vector<float> xf(v.begin(), v.end());
  const std::vector<double> xd(xf.begin(), xf.end());
  for (const int bins : {2, kBins, 4096, 4097, 65536}) {
    float tf = 0;
    double td = 0;
    sc::otsu_thresholds(xf.data(), 1, voxels, bins, &tf, sc::SerialExecutor{});
    sc::otsu_thresholds(xd.data(), 1, voxels, bins, &td, sc::SerialExecutor{});
    EXPECT_EQ(tf, static_cast<float>(td)) << bins << " bins";
    if (bins == 4097) EXPECT_DOUBLE_EQ(td, ref::otsu(xd, bins));
  }
}
