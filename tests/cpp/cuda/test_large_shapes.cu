// The shapes that take the launchers' other branches, on the GPU, against
// exactly known values or the CPU kernels:
//   - one float16 sample of more than 2^31 voxels (64-bit offsets, histogram
//     counts above 2^31), with the exactly known threshold, sums and
//     gradients of large_pattern.hpp;
//   - one float sample of more than 2048 * 8192 = 16.8M voxels (chunks longer
//     than kMinChunk, more chunk partials per sample than a block has threads);
//   - more than 65,535 samples (a 1-D grid past the 2-D grid's limit, the
//     batch pool of the backward in its own kernel).
// The CPU side of each comparison (the pattern's sums, the grids) is checked
// without a GPU by the *CpuSide tests.
#include "cuda_test_support.cuh"
#include "large_pattern.hpp"

using namespace spotlight_test;

namespace {

constexpr index_t kHugeVoxels = (index_t{1} << 31) + 4099;  // float16: 4.3 GB per tensor
constexpr index_t kLongVoxels = 2048 * 8192 + 12345;         // float: past 16.8M
constexpr index_t kManySamples = 70001;                      // past 65,535

template <class T>
__global__ void fill_pattern(T* target, T* pred, index_t count) {
  const index_t stride = index_t{gridDim.x} * blockDim.x;
  for (index_t i = index_t{blockIdx.x} * blockDim.x + threadIdx.x; i < count; i += stride) {
    const pattern::Pair p = pattern::pair_of(pattern::class_of(i));
    target[i] = scu::convert<T>(static_cast<float>(p.target));
    pred[i] = scu::convert<T>(static_cast<float>(p.pred));
  }
}

bool enough_device_memory(size_t bytes) {
  size_t free = 0, total = 0;
  return cudaMemGetInfo(&free, &total) == cudaSuccess && free > bytes + (size_t{1} << 30);
}

// The CPU kernels' loss backward of one pattern voxel per class, from the exact
// sums of a sample of `voxels` voxels and the upstream gradient g: the gradient
// every voxel of that class has.
std::vector<float> pattern_gradients(index_t voxels, const LossOptions& o, double g = 1.0) {
  std::vector<float> p, y;
  for (int c = 0; c < pattern::kClasses; ++c) {
    y.push_back(static_cast<float>(pattern::pair_of(c).target));
    p.push_back(static_cast<float>(pattern::pair_of(c).pred));
  }
  sc::LossForwardState<float> st;
  st.thresholds = {static_cast<float>(pattern::kThreshold)};
  st.sums = {pattern::sums_of(voxels)};
  std::vector<float> gp(pattern::kClasses), gt(pattern::kClasses);
  // mse_normalization "foreground": the coefficients depend on the sums only,
  // so a 7-voxel call gives the gradients of the whole sample.
  sc::loss_backward(p.data(), y.data(), 1, pattern::kClasses, st, o, &g, gp.data(), gt.data(), sc::SerialExecutor{});
  return gp;
}

}  // namespace

// --- the CPU side ------------------------------------------------------------

TEST(CudaLargeShapesCpuSide, PatternSumsAreTheCpuKernelsSums) {
  for (const index_t voxels : {index_t{7 * 1000 + 5}, index_t{300007}}) {
    std::vector<float> y, p;
    for (index_t i = 0; i < voxels; ++i) {
      const pattern::Pair v = pattern::pair_of(pattern::class_of(i));
      y.push_back(static_cast<float>(v.target));
      p.push_back(static_cast<float>(v.pred));
    }
    LossOptions o;
    o.reduction = Reduction::kNone;
    std::vector<float> loss(1);
    const auto st = sc::loss_forward(p.data(), y.data(), 1, voxels, static_cast<const float*>(nullptr), o,
                                     loss.data(), sc::SerialExecutor{});
    EXPECT_EQ(st.thresholds[0], static_cast<float>(pattern::kThreshold));
    const LossSums want = pattern::sums_of(voxels);
    EXPECT_EQ(st.sums[0].fg, want.fg);
    EXPECT_EQ(st.sums[0].sq_err, want.sq_err);
    EXPECT_EQ(st.sums[0].soft, want.soft);
    EXPECT_EQ(st.sums[0].soft_fg, want.soft_fg);
    // And the per-class gradients are those of the whole sample.
    const std::vector<float> per_class = pattern_gradients(voxels, o);
    std::vector<float> gp(p.size()), gt(p.size());
    const double g = 1.0;
    sc::loss_backward(p.data(), y.data(), 1, voxels, st, o, &g, gp.data(), gt.data(), sc::SerialExecutor{});
    // (Vectorized strips and the scalar tail may round apart by an ulp.)
    for (index_t i = 0; i < voxels; i += 13)
      EXPECT_NEAR(gp[i], per_class[pattern::class_of(i)], 1e-6 * std::abs(per_class[pattern::class_of(i)])) << i;
  }
}

// The GPU test's expected gradients at 2^31 voxels (upstream 2^20) are zero or
// normal float16 values, so a comparison in float16 means something.
TEST(CudaLargeShapesCpuSide, PatternGradientsAt2To31VoxelsAreNormalHalves) {
  const std::vector<float> per_class = pattern_gradients(kHugeVoxels, LossOptions{}, 1048576.0);
  int nonzero = 0;
  for (const float w : per_class) {
    EXPECT_TRUE(w == 0.0f || std::abs(w) > 6.2e-5f) << w;  // 6.1e-5: float16's least normal
    EXPECT_LT(std::abs(w), 60000.0f);
    nonzero += w != 0.0f;
  }
  EXPECT_EQ(nonzero, 3);  // classes 1, 2 (squared error) and 4 (soft mask at T)
}

TEST(CudaLargeShapesCpuSide, GridsTakeTheLargeBranches) {
  const auto huge = scu::make_grid<scu::StreamingPolicy<__half>>(1, kHugeVoxels);
  // (ceil(voxels / 2048) rounded up to whole tiles: a few chunks fewer than 2048.)
  EXPECT_GT(huge.chunks, 2000);
  EXPECT_LE(huge.chunks, scu::StreamingPolicy<__half>::kMaxChunks);
  EXPECT_GT(huge.end(huge.tasks() - 1), index_t{1} << 31);
  EXPECT_EQ(huge.end(huge.tasks() - 1), kHugeVoxels);
  const auto long_sample = scu::make_grid<scu::StreamingPolicy<float>>(1, kLongVoxels);
  EXPECT_GT(long_sample.chunk, scu::StreamingPolicy<float>::kMinChunk);
  // More chunk partials than threads: the per-sample merges loop.
  EXPECT_GT(long_sample.chunks, scu::StreamingPolicy<float>::kBlockThreads);
  const auto many = scu::make_grid<scu::StreamingPolicy<float>>(kManySamples, 37);
  EXPECT_GT(many.tasks(), 65535);
  EXPECT_TRUE(many.launchable());
  EXPECT_TRUE(scu::needs_batch_coefficients_kernel(kManySamples, Reduction::kBatch));
}

// --- the GPU side --------------------------------------------------------------

TEST(CudaLargeShapes, Float16SampleOfMoreThan2To31VoxelsHasItsExactSums) {
  SKIP_WITHOUT_GPU();
  using T = __half;
  const size_t n = static_cast<size_t>(kHugeVoxels);
  if (!enough_device_memory(3 * n * sizeof(T))) GTEST_SKIP() << "needs 13 GB of free device memory";
  DeviceArray<T> y(n), p(n), gp(n);
  fill_pattern<<<4096, 256>>>(y.get(), p.get(), kHugeVoxels);
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);

  // The threshold alone, then the fused forward (every reduction).
  {
    DeviceArray<float> t(1);
    const size_t bytes = scu::otsu_thresholds_workspace_bytes<T>(1, kHugeVoxels, kBins);
    DeviceArray<unsigned char> ws(bytes);
    ASSERT_EQ(scu::otsu_thresholds(y.get(), 1, kHugeVoxels, kBins, t.get(), ws.get(), bytes, cudaStream_t{}),
              cudaSuccess);
    EXPECT_EQ(t.host()[0], static_cast<float>(pattern::kThreshold));
  }
  const LossSums want = pattern::sums_of(kHugeVoxels);
  DeviceArray<float> thresholds(1);
  DeviceArray<LossSums> sums(1);
  for (const auto red : {Reduction::kBatch, Reduction::kMean, Reduction::kNone}) {
    LossOptions o;
    o.reduction = red;
    DeviceArray<T> loss(1);
    const size_t bytes = scu::loss_forward_workspace_bytes<T>(1, kHugeVoxels, o.bins, true);
    DeviceArray<unsigned char> ws(bytes);
    ASSERT_EQ(scu::loss_forward(p.get(), y.get(), 1, kHugeVoxels, static_cast<const float*>(nullptr), o, loss.get(),
                                thresholds.get(), sums.get(), ws.get(), bytes, cudaStream_t{}),
              cudaSuccess);
    EXPECT_EQ(thresholds.host()[0], static_cast<float>(pattern::kThreshold));
    const LossSums got = sums.host()[0];
    EXPECT_EQ(got.fg, want.fg);
    EXPECT_EQ(got.sq_err, want.sq_err);
    EXPECT_EQ(got.soft, want.soft);
    EXPECT_EQ(got.soft_fg, want.soft_fg);
    EXPECT_EQ(got.poison, 0.0);
    double value = 0;
    spotlight::finalize_losses(&want, 1, kHugeVoxels, o, &value);
    expect_close(to_double(loss.host()[0]), value, rounding_of<T>(), "loss");
  }

  // The backward: every voxel of a class has its class's gradient. The
  // upstream gradient 2^20 lifts the gradients (about 1e-9 per unit at 2^31
  // voxels) into float16's normal range.
  LossOptions o;
  constexpr double kUpstream = 1048576.0;
  const std::vector<float> per_class = pattern_gradients(kHugeVoxels, o, kUpstream);
  DeviceArray<double> g(std::vector<double>{kUpstream});
  ASSERT_EQ(scu::loss_backward(g.get(), index_t{1}, p.get(), y.get(), 1, kHugeVoxels, thresholds.get(), sums.get(), o,
                               gp.get(), static_cast<T*>(nullptr), nullptr, 0, cudaStream_t{}),
            cudaSuccess);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  // Within one float16 rounding of the CPU's float gradient of the class.
  constexpr size_t kPiece = size_t{1} << 28;
  std::vector<T> host(kPiece);
  size_t mismatches = 0, first_bad = n;
  for (size_t begin = 0; begin < n; begin += kPiece) {
    const size_t count = std::min(kPiece, n - begin);
    ASSERT_EQ(cudaMemcpy(host.data(), gp.get() + begin, count * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    for (size_t j = 0; j < count; ++j) {
      const double w = per_class[(begin + j) % pattern::kClasses];
      if (std::abs(to_double(host[j]) - w) > rounding_of<T>() * std::abs(w) + 0x1p-24 && ++mismatches == 1)
        first_bad = begin + j;
    }
  }
  EXPECT_EQ(mismatches, 0u) << "first at voxel " << first_bad;
}

TEST(CudaLargeShapes, FloatSampleOfMoreThan16_8MVoxelsMatchesCpu) {
  SKIP_WITHOUT_GPU();
  using T = float;
  const Batch<T> b = make_batch<T>(1, kLongVoxels, 61);
  expect_same_bits(cuda_thresholds(b.target, 1, kLongVoxels, kBins), cpu_thresholds<T>(b.target_acc, 1, kLongVoxels, kBins),
                   "threshold");
  for (const auto red : {Reduction::kBatch, Reduction::kNone}) {
    LossOptions o;
    o.reduction = red;
    const ForwardResult got = cuda_forward(b, o, nullptr);
    std::vector<float> cpu_loss(1);
    const auto st = sc::loss_forward(b.pred_acc.data(), b.target_acc.data(), 1, kLongVoxels,
                                     static_cast<const float*>(nullptr), o, cpu_loss.data(), sc::SerialExecutor{});
    EXPECT_EQ(static_cast<float>(got.thresholds[0]), st.thresholds[0]);
    EXPECT_EQ(got.sums[0].fg, st.sums[0].fg);
    // Sums of 16.8M float terms: relative agreement of float rounding.
    expect_close(got.sums[0].sq_err, st.sums[0].sq_err, 1e-5, "sq_err");
    expect_close(got.sums[0].soft, st.sums[0].soft, 1e-5, "soft");
    expect_close(got.sums[0].soft_fg, st.sums[0].soft_fg, 1e-5, "soft_fg");
    expect_close(got.loss[0], cpu_loss[0], 2e-5, "loss");
    if (red != Reduction::kBatch) continue;
    // Backward from the device state, against the CPU backward on it.
    DeviceArray<T> p(b.pred), y(b.target), gp(b.pred.size());
    DeviceArray<float> thr(std::vector<float>{static_cast<float>(got.thresholds[0])});
    DeviceArray<LossSums> sums(got.sums);
    DeviceArray<double> g(std::vector<double>{1.0});
    ASSERT_EQ(scu::loss_backward(g.get(), index_t{1}, p.get(), y.get(), 1, kLongVoxels, thr.get(), sums.get(), o,
                                 gp.get(), static_cast<T*>(nullptr), nullptr, 0, cudaStream_t{}),
              cudaSuccess);
    sc::LossForwardState<float> state;
    state.thresholds = {static_cast<float>(got.thresholds[0])};
    state.sums = got.sums;
    const double one = 1.0;
    std::vector<float> cp(b.pred.size()), ct(b.pred.size());
    sc::loss_backward(b.pred_acc.data(), b.target_acc.data(), 1, kLongVoxels, state, o, &one, cp.data(), ct.data(),
                      sc::SerialExecutor{});
    const std::vector<float> dp = gp.host();
    double scale = 1e-30;
    for (const float v : cp) scale = std::max(scale, std::abs(static_cast<double>(v)));
    size_t bad = 0;
    for (size_t i = 0; i < cp.size(); ++i) bad += std::abs(dp[i] - cp[i]) > 4e-6 * scale;
    EXPECT_EQ(bad, 0u);
  }
}

TEST(CudaLargeShapes, MoreThan65535SamplesMatchCpu) {
  SKIP_WITHOUT_GPU();
  using T = float;
  const Batch<T> b = make_batch<T>(kManySamples, 37, 67);
  expect_same_bits(cuda_thresholds(b.target, kManySamples, 37, kBins),
                   cpu_thresholds<T>(b.target_acc, kManySamples, 37, kBins), "thresholds");
  for (const auto red : {Reduction::kBatch, Reduction::kMean, Reduction::kNone}) {
    LossOptions o;
    o.reduction = red;
    const ForwardResult got = cuda_forward(b, o, nullptr);
    std::vector<float> cpu_loss(static_cast<size_t>(kManySamples));
    const auto st = sc::loss_forward(b.pred_acc.data(), b.target_acc.data(), kManySamples, 37,
                                     static_cast<const float*>(nullptr), o, cpu_loss.data(), sc::SerialExecutor{});
    for (size_t j = 0; j < got.loss.size(); ++j)
      expect_close(got.loss[j], cpu_loss[j], 2e-5, "loss " + std::to_string(j));
    for (index_t s = 0; s < kManySamples; s += 997) EXPECT_EQ(static_cast<float>(got.thresholds[s]), st.thresholds[s]);
    // Backward: the batch pool in its own kernel, per-sample coefficients otherwise.
    const size_t outputs = got.loss.size();
    std::vector<double> g_host(outputs, 1.0);
    DeviceArray<double> g(g_host);
    DeviceArray<T> p(b.pred), y(b.target), gp(b.pred.size());
    std::vector<float> thr_host(got.thresholds.begin(), got.thresholds.end());
    DeviceArray<float> thr(thr_host);
    DeviceArray<LossSums> sums(got.sums);
    const size_t bytes = scu::loss_backward_workspace_bytes<T>(kManySamples, red);
    DeviceArray<unsigned char> ws(bytes);
    ASSERT_EQ(scu::loss_backward(g.get(), index_t{1}, p.get(), y.get(), kManySamples, 37, thr.get(), sums.get(), o,
                                 gp.get(), static_cast<T*>(nullptr), ws.get(), bytes, cudaStream_t{}),
              cudaSuccess);
    sc::LossForwardState<float> state;
    state.thresholds = thr_host;
    state.sums = got.sums;
    std::vector<float> cp(b.pred.size()), ct(b.pred.size());
    sc::loss_backward(b.pred_acc.data(), b.target_acc.data(), kManySamples, 37, state, o, g_host.data(), cp.data(),
                      ct.data(), sc::SerialExecutor{});
    const std::vector<float> dp = gp.host();
    double scale = 1e-30;
    for (const float v : cp) scale = std::max(scale, std::abs(static_cast<double>(v)));
    size_t bad = 0;
    for (size_t i = 0; i < cp.size(); ++i) bad += std::abs(dp[i] - cp[i]) > 4e-6 * scale;
    EXPECT_EQ(bad, 0u) << "reduction " << static_cast<int>(red);
  }
}
