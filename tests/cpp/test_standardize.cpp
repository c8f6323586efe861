// Otsu standardization of spotlight/cpu/standardize.hpp against the reference:
// forward and backward, at every finite scale of float and double.
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <limits>
#include <optional>
#include <random>
#include <type_traits>
#include <vector>

#include "reference.hpp"
#include "spotlight/cpu/standardize.hpp"
#include "spotlight/core/options.hpp"

namespace sc = spotlight::cpu;
using spotlight::defaults::kBins;
using spotlight::moments::StandardizeStats;

namespace {

// Mean and population std of one sample in long double, two passes: the
// exact-enough reference (64-bit mantissa, exponents to 1e4932).
template <class T>
std::pair<long double, long double> exact_moments(const T* x, std::int64_t n) {
  long double mean = 0;
  for (std::int64_t i = 0; i < n; ++i) mean += static_cast<long double>(x[i]);
  mean /= n;
  long double var = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    const long double d = static_cast<long double>(x[i]) - mean;
    var += d * d;
  }
  const long double sd = std::sqrt(var / n);
  return {mean, sd > 0 ? sd : 1.0L};
}

// What expect_exact computed, for bit comparisons.
template <class T>
struct Standardized {
  std::vector<T> out;
  std::vector<spotlight::acc_t<T>> thr;
  std::vector<StandardizeStats<spotlight::acc_t<T>>> st;
};

// Standardizes `samples` samples of x with the header (on `threads` threads,
// `bins` Otsu bins), then checks every output against (x - T) / std in long
// double (T: the header's threshold, tested on its own), relative to the
// output's magnitude.
template <class T>
Standardized<T> expect_exact(const std::vector<T>& x, std::int64_t samples, double tol, const char* what,
                             unsigned threads = 2, int bins = kBins) {
  const std::int64_t voxels = static_cast<std::int64_t>(x.size()) / samples;
  using A = spotlight::acc_t<T>;
  std::vector<T> out(x.size());
  std::vector<A> thr(static_cast<size_t>(samples));
  std::vector<StandardizeStats<A>> st(static_cast<size_t>(samples));
  sc::otsu_standardize_forward(x.data(), samples, voxels, bins, out.data(), thr.data(), st.data(),
                               sc::ThreadExecutor(threads));
  for (std::int64_t s = 0; s < samples; ++s) {
    const T* v = x.data() + s * voxels;
    const auto [mean, sd] = exact_moments(v, voxels);
    // the saved stats: scaled mean and inverse std
    // (the mean is kept in the accumulation type: to its rounding when |mean| >> std)
    EXPECT_NEAR(static_cast<double>(st[s].mean / static_cast<long double>(st[s].scale) / sd),
                static_cast<double>(mean / sd), tol * (1 + static_cast<double>(std::fabs(mean) / sd)))
        << what << " sample " << s;
    EXPECT_NEAR(static_cast<double>(1.0L / (static_cast<long double>(st[s].inv_std) * st[s].scale) / sd), 1.0, tol)
        << what << " sample " << s;
    double worst = 0;
    for (std::int64_t i = 0; i < voxels; ++i) {
      const long double want = (static_cast<long double>(v[i]) - thr[s]) / sd;
      const long double got = out[s * voxels + i];
      if (!std::isfinite(static_cast<double>(got))) {
        ADD_FAILURE() << "not finite: " << what << " sample " << s << " voxel " << i;
        break;
      }
      worst = std::max(worst, static_cast<double>(std::fabs(got - want) / (1.0L + std::fabs(want))));
    }
    EXPECT_LE(worst, tol) << what << " sample " << s;
  }
  return {out, thr, st};
}

// n values uniform in [0, 1).
std::vector<double> uniform(std::int64_t n, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<double> v(static_cast<size_t>(n));
  for (auto& x : v) x = u(rng);
  return v;
}

// Offset data (a naive sum of squares would lose digits) of both signs:
// values in about [offset - 3.5, offset + 17.5] times scale.
template <class T>
std::vector<T> scaled_volume(std::int64_t samples, std::int64_t voxels, long double scale, unsigned seed) {
  std::vector<T> x;
  for (std::int64_t s = 0; s < samples; ++s) {
    const auto v = ref::random_volume(voxels, seed + static_cast<unsigned>(s));
    const long double offset = s % 2 ? 100.0L : -3.0L;
    for (double u : v) x.push_back(static_cast<T>((offset + 7.0L * u) * scale));
  }
  return x;
}

}  // namespace

TEST(Standardize, MatchesReference) {
  const std::int64_t voxels = 120000;
  auto v = ref::random_volume(voxels, 29);
  for (auto& x : v) x = 100.0 + 7.0 * x;  // offset: a naive sum-of-squares would lose digits
  std::vector<double> out(v.size());
  sc::otsu_standardize(v.data(), 1, voxels, kBins, out.data(), sc::ThreadExecutor(2));
  double mean = 0;
  for (double x : v) mean += x / voxels;
  double var = 0;
  for (double x : v) var += (x - mean) * (x - mean) / voxels;
  const double t = ref::otsu(v, kBins), sd = std::sqrt(var);
  for (std::int64_t i = 0; i < voxels; i += 101) EXPECT_NEAR(out[i], (v[i] - t) / sd, 1e-10);
}

TEST(Standardize, FloatMomentsAreAccurate) {
  const std::int64_t voxels = 1 << 20;
  auto v = ref::random_volume(voxels, 31);
  std::vector<float> xf;
  for (double x : v) xf.push_back(static_cast<float>(1000.0 + x));
  std::vector<StandardizeStats<float>> m(1);
  sc::sample_moments(xf.data(), 1, voxels, m.data());
  const auto [mean, sd] = exact_moments(xf.data(), voxels);
  EXPECT_NEAR(m[0].mean / m[0].scale, static_cast<double>(mean), 1e-6 * static_cast<double>(mean));
  EXPECT_NEAR(1.0 / (m[0].inv_std * static_cast<double>(m[0].scale)), static_cast<double>(sd),
              1e-5 * static_cast<double>(sd));
}

TEST(Standardize, ConstantSampleDividesByOne) {
  for (const float c : {4.0f, 0.0f, -1e30f, 1e-40f, FLT_MAX}) {
    std::vector<float> x(50, c), out(50);
    sc::otsu_standardize(x.data(), 1, 50, kBins, out.data());
    for (float v : out) EXPECT_EQ(v, 0.0f) << c;
  }
}

// Every decade from 1e-30 to 1e30 and the ends of float's range, in samples
// small enough for one chunk and large enough for many (the chunk merge).
TEST(Standardize, FloatExactAtEveryScale) {
  for (int e = -30; e <= 30; e += 5) {
    const long double scale = std::pow(10.0L, e);
    expect_exact(scaled_volume<float>(3, 5000, scale, 41), 3, 2e-6, "float small");
    expect_exact(scaled_volume<float>(1, 200000, scale, 43), 1, 2e-6, "float chunked");
  }
  for (const long double scale : {1e19L, 1e25L, 1e34L, 1e36L, 2e36L}) {
    expect_exact(scaled_volume<float>(2, 70000, scale, 45), 2, 2e-6, "float large");
  }
}

TEST(Standardize, FloatNearMaxAndDenormal) {
  // Values spread over [-FLT_MAX, FLT_MAX]: x - T, x - mean and every sum overflow unscaled.
  const auto u = uniform(100000, 47);
  std::vector<float> wide;
  for (double v : u) wide.push_back(static_cast<float>((2.0 * v - 1.0) * FLT_MAX));
  expect_exact(wide, 1, 2e-6, "float [-max, max]");
  std::vector<float> top;  // all within a few ulps of FLT_MAX
  for (double v : u) top.push_back(std::nextafter(FLT_MAX, 0.0f) - static_cast<float>(v > 0.5) * 1e32f);
  expect_exact(top, 1, 2e-6, "float near max");
  // Denormals: integer multiples of 2^-149 up to 2^20 of them (a normal
  // float is 2^23 of them): exact values, inverse std beyond FLT_MAX.
  std::vector<float> tiny;
  for (double v : u) tiny.push_back(std::ldexp(static_cast<float>(std::floor(v * 1e6)), -149));
  expect_exact(tiny, 1, 2e-6, "float denormal");
}

TEST(Standardize, DoubleExactAtTheExtremes) {
  for (const long double scale : {1e-300L, 1e-150L, 1.0L, 1e150L, 1e160L, 1e300L}) {
    expect_exact(scaled_volume<double>(2, 70000, scale, 51), 2, 1e-12, "double");
  }
  const auto u = uniform(100000, 53);
  std::vector<double> wide, tiny;
  for (double v : u) wide.push_back((v - 0.5) * DBL_MAX);  // wider, hi - lo overflows in Otsu's bin centre
  expect_exact(wide, 1, 1e-12, "double [-max/2, max/2]");
  std::vector<double> widest;  // hi - lo overflows: Otsu's histogram and bin centres on halved values
  for (double v : u) widest.push_back((2.0 * v - 1.0) * DBL_MAX);
  widest[0] = -DBL_MAX;
  widest[1] = DBL_MAX;
  for (const unsigned threads : {1u, 2u}) expect_exact(widest, 1, 1e-12, "double [-max, max]", threads);
  for (double v : u) tiny.push_back(std::ldexp(std::floor(v * 1e9), -1074));
  expect_exact(tiny, 1, 1e-12, "double denormal");
}

TEST(Standardize, NonFiniteSampleIsNaN) {
  std::vector<float> x(300, 1.0f), out(300);
  x[7] = 2.0f;
  x[200] = std::numeric_limits<float>::infinity();
  sc::otsu_standardize(x.data(), 3, 100, kBins, out.data());
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(std::isfinite(out[i]));
  for (int i = 100; i < 200; ++i) EXPECT_EQ(out[i], 0.0f);
  for (int i = 200; i < 300; ++i) EXPECT_TRUE(std::isnan(out[i]));
}

// The backward against the formula of SPEC 6 with T constant, in long double:
//   dL/dx_j = g_j / s - (sum_i g_i (x_i - T)) (x_j - mean) / (n s^3).
template <class T>
void expect_backward(long double scale, double tol) {
  const std::int64_t samples = 2, voxels = 60000;
  using A = spotlight::acc_t<T>;
  const auto x = scaled_volume<T>(samples, voxels, scale, 61);
  const auto gv = ref::random_volume(samples * voxels, 63);
  std::vector<T> g, y(x.size()), gx(x.size());
  for (double v : gv) g.push_back(static_cast<T>(v - 0.3));
  std::vector<A> thr(samples);
  std::vector<StandardizeStats<A>> st(samples);
  sc::otsu_standardize_forward(x.data(), samples, voxels, kBins, y.data(), thr.data(), st.data(), sc::ThreadExecutor(2));
  sc::otsu_standardize_backward(g.data(), x.data(), samples, voxels, thr.data(), st.data(), gx.data(),
                                sc::ThreadExecutor(2));
  for (std::int64_t s = 0; s < samples; ++s) {
    const T* v = x.data() + s * voxels;
    const T* gs = g.data() + s * voxels;
    const auto [mean, sd] = exact_moments(v, voxels);
    long double dot = 0;
    for (std::int64_t i = 0; i < voxels; ++i) dot += gs[i] * ((v[i] - static_cast<long double>(thr[s])) / sd);
    double worst = 0;
    for (std::int64_t i = 0; i < voxels; ++i) {
      // times sd: the gradient in units of 1 / std
      const long double want = gs[i] - dot * ((v[i] - mean) / sd) / voxels;
      const long double got = static_cast<long double>(gx[s * voxels + i]) * sd;
      worst = std::max(worst, static_cast<double>(std::fabs(got - want) / (1.0L + std::fabs(want))));
    }
    EXPECT_LE(worst, tol) << "scale " << static_cast<double>(scale) << " sample " << s;
  }
}

TEST(StandardizeBackward, FloatAtEveryScale) {
  for (const long double scale : {1e-30L, 1e-10L, 1.0L, 1e10L, 1e20L, 1e30L}) expect_backward<float>(scale, 1e-5);
}

TEST(StandardizeBackward, DoubleAtTheExtremes) {
  for (const long double scale : {1e-300L, 1.0L, 1e160L, 1e300L}) expect_backward<double>(scale, 1e-12);
}

TEST(StandardizeBackward, ConstantSampleIsIdentity) {
  std::vector<float> x(40, 3.0f), y(40), g(40), gx(40);
  for (int i = 0; i < 40; ++i) g[i] = 0.25f * static_cast<float>(i) - 2.0f;
  std::vector<float> thr(1);
  std::vector<StandardizeStats<float>> st(1);
  sc::otsu_standardize_forward(x.data(), 1, 40, kBins, y.data(), thr.data(), st.data());
  sc::otsu_standardize_backward(g.data(), x.data(), 1, 40, thr.data(), st.data(), gx.data());
  for (int i = 0; i < 40; ++i) EXPECT_EQ(gx[i], g[i]);
}

TEST(StandardizeBackward, RejectsBadArguments) {
  std::vector<float> x(10, 1.0f), g(10), gx(10), thr(1);
  std::vector<StandardizeStats<float>> st(1);
  EXPECT_THROW(sc::otsu_standardize_backward(g.data(), x.data(), 0, 10, thr.data(), st.data(), gx.data()),
               spotlight::Error);
  EXPECT_THROW(sc::otsu_standardize_backward(g.data(), x.data(), 1, 10, thr.data(),
                                             static_cast<const StandardizeStats<float>*>(nullptr), gx.data()),
               spotlight::Error);
}

template <class A>
bool same_stats(const std::vector<StandardizeStats<A>>& a, const std::vector<StandardizeStats<A>>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].scale != b[i].scale || a[i].mean != b[i].mean || a[i].inv_std != b[i].inv_std) return false;
  return true;
}

// Every task split of the forward, forced whatever the machine's core count:
// whole samples (1 thread; fewer threads than samples; as many) and chunked
// passes (more threads than samples), each sample ending in a partial chunk:
// exact against long double, thresholds those of otsu_thresholds, and the
// same bits in every split.
template <class T>
void expect_every_split_alike() {
  const std::int64_t samples = 5, voxels = 70001;
  const auto x = scaled_volume<T>(samples, voxels, 1.0L, 81);
  std::vector<spotlight::acc_t<T>> otsu(samples);
  sc::otsu_thresholds(x.data(), samples, voxels, kBins, otsu.data(), sc::SerialExecutor{});
  std::optional<Standardized<T>> first;
  for (const unsigned threads : {1u, 3u, 5u, 8u}) {
    ASSERT_EQ(sc::whole_samples<T>(samples, voxels, threads), threads <= samples);
    auto r = expect_exact(x, samples, std::is_same_v<T, float> ? 2e-6 : 1e-12, "split", threads);
    EXPECT_EQ(r.thr, otsu) << threads << " threads";
    if (!first) {
      first = std::move(r);
      continue;
    }
    EXPECT_TRUE(r.out == first->out) << threads << " threads";
    EXPECT_TRUE(same_stats(r.st, first->st)) << threads << " threads";
  }
}

TEST(StandardizePaths, EveryTaskSplitAlike) {
  expect_every_split_alike<float>();
  expect_every_split_alike<double>();
}

// More chunk histograms than the fused pass keeps (tasks * bins > 2^26, with
// the most bins: more than 1024 tasks): the histograms get a pass of their
// own. Thresholds as otsu_thresholds, stats as sample_moments, outputs exact.
TEST(StandardizePaths, SeparateHistogramPass) {
  const std::int64_t samples = 1025, voxels = 301;
  const int bins = static_cast<int>(spotlight::kMaxBins);
  const sc::Partition part(samples, voxels);
  ASSERT_GT(part.tasks() * bins, std::int64_t{1} << 26);
  const auto x = scaled_volume<float>(samples, voxels, 1.0L, 83);
  const auto r = expect_exact(x, samples, 2e-6, "separate histograms", 2, bins);
  std::vector<float> otsu(samples);
  sc::otsu_thresholds(x.data(), samples, voxels, bins, otsu.data(), sc::ThreadExecutor(2));
  EXPECT_EQ(r.thr, otsu);
  std::vector<StandardizeStats<float>> moments(samples);
  sc::sample_moments(x.data(), samples, voxels, moments.data(), sc::ThreadExecutor(2));
  EXPECT_TRUE(same_stats(r.st, moments));
}
