// More than 2^31 voxels in one sample: every offset must be 64-bit. Runs
// when SPOTLIGHT_LARGE_TESTS=1 (4.3 GB of memory, seconds of CPU).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <vector>

#include "spotlight/cpu/loss.hpp"
#include "spotlight/core/options.hpp"

namespace sc = spotlight::cpu;
using spotlight::defaults::kBins;
using spotlight::index_t;

TEST(LargeVolume, MoreThan2To31VoxelsIndexCorrectly) {
  if (!std::getenv("SPOTLIGHT_LARGE_TESTS")) GTEST_SKIP() << "set SPOTLIGHT_LARGE_TESTS=1 to run";
  const index_t voxels = (index_t{1} << 31) + 4099;
  // Every 5th voxel is foreground (200, predicted 190); the rest background
  // (10, predicted exactly). One voxel past 2^31 holds the maximum (250,
  // predicted 0): a 32-bit offset would miss it and change every sum.
  std::vector<std::uint8_t> target(static_cast<size_t>(voxels)), pred(static_cast<size_t>(voxels));
  for (index_t i = 0; i < voxels; ++i) {
    const bool fg = i % 5 == 0;
    target[static_cast<size_t>(i)] = fg ? 200 : 10;
    pred[static_cast<size_t>(i)] = fg ? 190 : 10;
  }
  const index_t marker = voxels - 8;
  ASSERT_NE(marker % 5, 0);
  target[static_cast<size_t>(marker)] = 250;
  pred[static_cast<size_t>(marker)] = 0;

  const sc::ThreadExecutor exec(2);
  // Otsu over the whole range [10, 250]: the split lies between the classes.
  float otsu = 0;
  sc::otsu_thresholds(target.data(), 1, voxels, kBins, &otsu, exec);
  EXPECT_GT(otsu, 10.0f);
  EXPECT_LT(otsu, 200.0f);

  // With T = 100 the soft mask is exactly 0 or 1 (|P - T| >= 1 everywhere),
  // so every sum is an integer, and integer sums are exact here (float lanes
  // over 4096-voxel blocks, double above).
  spotlight::LossOptions opt;
  const float threshold = 100.0f;
  float loss = 0;
  const auto st = sc::loss_forward(pred.data(), target.data(), 1, voxels, &threshold, opt, &loss, exec);
  const double regular_fg = static_cast<double>((voxels + 4) / 5);
  EXPECT_EQ(st.sums[0].fg, regular_fg + 1);
  EXPECT_EQ(st.sums[0].sq_err, regular_fg * 100.0 + 250.0 * 250.0);
  EXPECT_EQ(st.sums[0].soft, regular_fg);     // S = 1 on predicted foreground, 0 elsewhere
  EXPECT_EQ(st.sums[0].soft_fg, regular_fg);  // the marker is foreground with S = 0
  EXPECT_EQ(st.sums[0].poison, 0.0);
}
