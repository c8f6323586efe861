// Every device-level function works on the caller's stream alone: with the
// legacy default stream busy (a kernel spinning for a while), the ops run on
// a non-blocking side stream, finish, and give the CPU's results while the
// default stream is still busy. An op that launched, copied or set memory on
// the default stream would wait behind the spinning kernel: the side stream
// would not finish first, or its results would be read before they exist.
#include "cuda_test_support.cuh"

using namespace spotlight_test;

namespace {

// Spins one thread for `nanoseconds` of the GPU's global timer.
__global__ void spin(unsigned long long nanoseconds) {
  unsigned long long start = 0, now = 0;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
  do {
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
  } while (now - start < nanoseconds);
}

}  // namespace

TEST(CudaStreams, SideStreamRunsWhileTheDefaultStreamIsBusy) {
  SKIP_WITHOUT_GPU();
  using A = float;
  const index_t n = 3, v = 30011;
  const Batch<float> b = make_batch<float>(n, v, 71);
  // Everything allocated and uploaded before the default stream gets busy
  // (cudaMalloc, cudaFree and cudaMemcpy may wait for it).
  DeviceArray<float> p(b.pred), y(b.target), standardized(b.target.size()), soft(b.target.size());
  DeviceArray<float> gp(b.pred.size()), gt(b.pred.size()), mse(1);
  DeviceArray<A> otsu(static_cast<size_t>(n)), thr(static_cast<size_t>(n)), given(std::vector<A>(n, A(1)));
  DeviceArray<float> loss_otsu(1), loss_given(static_cast<size_t>(n));
  DeviceArray<LossSums> sums(static_cast<size_t>(n)), sums_given(static_cast<size_t>(n)), mse_sums_dev(static_cast<size_t>(n));
  DeviceArray<double> one(std::vector<double>{1.0});
  std::vector<char> mask_bytes;
  for (const float t : b.target) mask_bytes.push_back(t > 1.0f);
  DeviceArray<char> mask(mask_bytes);
  LossOptions o;
  LossOptions none;
  none.reduction = Reduction::kNone;
  size_t bytes = scu::otsu_thresholds_workspace_bytes<float>(n, v, kBins);
  bytes = std::max(bytes, scu::otsu_standardize_workspace_bytes<float>(n, v, kBins));
  bytes = std::max(bytes, scu::loss_forward_workspace_bytes<float>(n, v, o.bins, true));
  bytes = std::max(bytes, scu::term_workspace_bytes<float>(n, v));
  DeviceArray<unsigned char> ws1(bytes), ws2(bytes), ws3(bytes), ws4(bytes), ws5(bytes);
  float* host = nullptr;
  const size_t host_count = 3 * b.target.size() + 4 * static_cast<size_t>(n) + 2;
  ASSERT_EQ(cudaMallocHost(&host, host_count * sizeof(float)), cudaSuccess);
  cudaStream_t side = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&side, cudaStreamNonBlocking), cudaSuccess);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);

  spin<<<1, 1>>>(2'000'000'000ull);  // 2 s on the legacy default stream
  ASSERT_EQ(cudaGetLastError(), cudaSuccess);
  const bool* m = reinterpret_cast<const bool*>(mask.get());
  ASSERT_EQ(scu::otsu_thresholds(y.get(), n, v, kBins, otsu.get(), ws1.get(), bytes, side), cudaSuccess);
  ASSERT_EQ(scu::otsu_standardize(y.get(), n, v, kBins, standardized.get(), ws2.get(), bytes, side), cudaSuccess);
  ASSERT_EQ(scu::loss_forward(p.get(), y.get(), n, v, static_cast<const A*>(nullptr), o, loss_otsu.get(), thr.get(),
                              sums.get(), ws3.get(), bytes, side),
            cudaSuccess);
  ASSERT_EQ(scu::loss_forward(p.get(), y.get(), n, v, given.get(), none, loss_given.get(), thr.get() , sums_given.get(),
                              ws4.get(), bytes, side),
            cudaSuccess);
  ASSERT_EQ(scu::loss_backward(one.get(), index_t{1}, p.get(), y.get(), n, v, otsu.get(), sums.get(), o, gp.get(),
                               gt.get(), nullptr, 0, side),
            cudaSuccess);
  ASSERT_EQ(scu::masked_mse(p.get(), y.get(), m, n, v, MseNormalization::kForeground, Reduction::kBatch, mse.get(),
                            mse_sums_dev.get(), ws5.get(), bytes, side),
            cudaSuccess);
  ASSERT_EQ(scu::tunable_sigmoid(p.get(), n * v, kK, soft.get(), side), cudaSuccess);
  float* h = host;
  const auto fetch = [&](const float* d, size_t count) {
    EXPECT_EQ(cudaMemcpyAsync(h, d, count * sizeof(float), cudaMemcpyDeviceToHost, side), cudaSuccess);
    h += count;
  };
  fetch(otsu.get(), n);
  fetch(standardized.get(), b.target.size());
  fetch(loss_otsu.get(), 1);
  fetch(loss_given.get(), n);
  fetch(gp.get(), b.pred.size());
  fetch(mse.get(), 1);
  fetch(soft.get(), b.pred.size());
  ASSERT_EQ(cudaStreamSynchronize(side), cudaSuccess);
  EXPECT_EQ(cudaStreamQuery(cudaStreamLegacy), cudaErrorNotReady)
      << "the default stream finished first: some op waited for it (or the GPU spun less than 2 s)";
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);

  // The CPU on the same values.
  h = host;
  expect_same_bits(std::vector<A>(h, h + n), cpu_thresholds<float>(b.target_acc, n, v, kBins), "otsu_thresholds");
  h += n;
  std::vector<float> want(b.target.size());
  sc::otsu_standardize(b.target_acc.data(), n, v, kBins, want.data(), sc::SerialExecutor{});
  for (size_t i = 0; i < want.size(); i += 7) EXPECT_NEAR(h[i], want[i], 4e-6 * std::max(1.0f, std::abs(want[i])));
  h += want.size();
  std::vector<float> cpu_loss(static_cast<size_t>(n));
  const auto st = sc::loss_forward(b.pred_acc.data(), b.target_acc.data(), n, v, static_cast<const A*>(nullptr), o,
                                   cpu_loss.data(), sc::SerialExecutor{});
  expect_close(*h++, cpu_loss[0], 2e-5, "loss, Otsu");
  const std::vector<A> ones(n, A(1));
  sc::loss_forward(b.pred_acc.data(), b.target_acc.data(), n, v, ones.data(), none, cpu_loss.data(),
                   sc::SerialExecutor{});
  for (index_t s = 0; s < n; ++s) expect_close(*h++, cpu_loss[s], 2e-5, "loss, given thresholds");
  std::vector<float> cp(b.pred.size()), ct(b.pred.size());
  const double g = 1.0;
  sc::loss_backward(b.pred_acc.data(), b.target_acc.data(), n, v, st, o, &g, cp.data(), ct.data(), sc::SerialExecutor{});
  double scale = 1e-30;
  for (const float x : cp) scale = std::max(scale, std::abs(static_cast<double>(x)));
  for (size_t i = 0; i < cp.size(); i += 7) EXPECT_NEAR(h[i], cp[i], 4e-6 * scale) << "grad " << i;
  h += cp.size();
  std::vector<LossSums> mse_sums(static_cast<size_t>(n));
  sc::masked_mse_sums(b.pred_acc.data(), b.target_acc.data(), reinterpret_cast<const bool*>(mask_bytes.data()), n, v,
                      mse_sums.data(), sc::SerialExecutor{});
  double want_mse = 0;
  spotlight::finalize_losses(mse_sums.data(), n, v, o, &want_mse, spotlight::Term::kMmse);
  expect_close(*h++, want_mse, 2e-5, "masked_mse");
  std::vector<float> want_soft(b.pred.size());
  sc::tunable_sigmoid(b.pred_acc.data(), n * v, kK, want_soft.data(), sc::SerialExecutor{});
  for (size_t i = 0; i < want_soft.size(); i += 7) EXPECT_NEAR(h[i], want_soft[i], 2e-6);
  cudaStreamDestroy(side);
  cudaFreeHost(host);
}
