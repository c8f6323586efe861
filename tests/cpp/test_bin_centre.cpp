// The CPU Otsu threshold is a bin centre with its product rounded before its
// sum whatever the compiler's floating-point flags: this file is compiled
// with -march=native -ffp-contract=fast (FMA contraction allowed wherever the
// CPU has FMA), the reference with contraction off (bin_centre_unfused.cpp).
// Thresholds must equal the reference to the bit, as the CUDA kernel's do.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "spotlight/core/math.hpp"
#include "spotlight/cpu/otsu.hpp"

double unfused_bin_centre(double lo, double hi, int bins, int i);

namespace {

struct Case {
  double lo, hi;
  int bins, bin;
};

std::vector<Case> cases(int count) {
  std::mt19937_64 rng(20261201);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  std::vector<Case> out;
  for (int n = 0; n < count; ++n) {
    const double lo = u(rng) * std::pow(10.0, static_cast<int>(rng() % 7) - 3);
    const double hi = lo + std::ldexp(1.0 + std::abs(u(rng)), static_cast<int>(rng() % 20) - 10);
    const int bins = 2 + static_cast<int>(rng() % 2000);
    out.push_back({lo, hi, bins, static_cast<int>(rng() % static_cast<std::uint64_t>(bins - 1))});
  }
  return out;
}

// A histogram whose first Otsu maximum is the split after bin `bin`: counts
// only in bins `bin` and `bin + 1`.
template <class A>
A threshold_at(const Case& c) {
  std::vector<std::int64_t> hist(static_cast<size_t>(c.bins), 0);
  hist[c.bin] = 3;
  hist[c.bin + 1] = 5;
  spotlight::cpu::SampleRange<A> r;
  r.lo = static_cast<A>(c.lo);
  r.hi = static_cast<A>(c.hi);
  r.poison = 0;
  return spotlight::cpu::threshold_from_histogram(r, hist.data(), c.bins);
}

}  // namespace

TEST(OtsuBinCentre, EqualsTheUnfusedCentreUnderContractingFlags) {
  int fused_differs = 0, naive_differs = 0;
  for (const Case& c : cases(20000)) {
    const double want = unfused_bin_centre(c.lo, c.hi, c.bins, c.bin);
    ASSERT_EQ(threshold_at<double>(c), want) << c.lo << " " << c.hi << " " << c.bins << " " << c.bin;
    const float lo = static_cast<float>(c.lo), hi = static_cast<float>(c.hi);
    ASSERT_EQ(threshold_at<float>(c), static_cast<float>(unfused_bin_centre(lo, hi, c.bins, c.bin)));
    // The cases tell a fused centre from an unfused one (so this test can fail)...
    const double width = (c.hi - c.lo) / c.bins;
    fused_differs += std::fma(c.bin + 0.5, width, c.lo) != want;
    // ... and math::bin_centre, compiled here with these flags, is how often fused?
    naive_differs += spotlight::math::bin_centre(c.lo, c.hi, c.bins, c.bin) != want;
  }
  EXPECT_GT(fused_differs, 100);
  RecordProperty("fused_centres_differing", fused_differs);
  RecordProperty("plain_formula_differing_in_this_build", naive_differs);
  std::printf("of 20000 centres: an fma gives %d other values; the plain formula compiled here, %d\n",
              fused_differs, naive_differs);
}
