// Every CUDA kernel and every path of the launchers on small shapes: the
// cases scripts/gpu_check.sh runs under compute-sanitizer (memcheck,
// racecheck, synccheck, initcheck: --gtest_filter=CudaSmallShapes*), quick
// there even at the sanitizers' slowdown.
//
// Each op runs on a fresh cudaMalloc workspace, never written (initcheck
// flags a read of it before a write), then on the same memory filled with
// stale bytes, as a reused allocation from a caching allocator holds: the
// outputs must be the same bits, so a counter or histogram the op forgets to
// zero fails here even without a sanitizer. The CPU kernels on the same
// values are the reference.
#include "cuda_test_support.cuh"

using namespace spotlight_test;

namespace {

using Bytes = std::vector<unsigned char>;

template <class U>
Bytes bytes_of(const DeviceArray<U>& a) {
  const std::vector<U> h = a.host();
  Bytes b(h.size() * sizeof(U));
  if (!b.empty()) std::memcpy(b.data(), h.data(), b.size());
  return b;
}

template <class U>
std::vector<U> values_of(const Bytes& b) {
  std::vector<U> v(b.size() / sizeof(U));
  if (!v.empty()) std::memcpy(v.data(), b.data(), b.size());
  return v;
}

// op(workspace, bytes) launches and returns its outputs' bytes. Runs it on a
// fresh workspace, then on the same one filled with 0xFF, 0x00 and 0xA5
// bytes; returns the first outputs.
template <class Op>
Bytes expect_workspace_independent(size_t bytes, Op op, const std::string& what) {
  DeviceArray<unsigned char> ws(bytes);
  const Bytes fresh = op(static_cast<void*>(ws.get()), bytes);
  for (const int byte : {0xFF, 0x00, 0xA5}) {
    ws.fill_bytes(byte);
    EXPECT_TRUE(op(static_cast<void*>(ws.get()), bytes) == fresh)
        << what << ": other outputs on a workspace of bytes " << byte;
  }
  return fresh;
}

template <class T>
class CudaSmallShapes : public ::testing::Test {};
using SmallTypes = ::testing::Types<float, double, __half>;
TYPED_TEST_SUITE(CudaSmallShapes, SmallTypes);

}  // namespace

// Several chunks per sample (shared-memory histogram), and a histogram of
// more than kMaxSharedBins bins (global-memory path).
TYPED_TEST(CudaSmallShapes, OtsuThresholds) {
  SKIP_WITHOUT_GPU();
  using T = TypeParam;
  using A = acc_t<T>;
  struct Shape {
    index_t samples, voxels;
    int bins;
  };
  for (const Shape sh : {Shape{3, 40000, 256}, Shape{2, 9001, scu::kMaxSharedBins + 1}}) {
    const Batch<T> b = make_batch<T>(sh.samples, sh.voxels, 41);
    DeviceArray<T> x(b.target);
    const std::string what = "otsu bins=" + std::to_string(sh.bins);
    const Bytes got = expect_workspace_independent(
        scu::otsu_thresholds_workspace_bytes<T>(sh.samples, sh.voxels, sh.bins),
        [&](void* ws, size_t bytes) {
          DeviceArray<A> out(static_cast<size_t>(sh.samples));
          EXPECT_EQ(scu::otsu_thresholds(x.get(), sh.samples, sh.voxels, sh.bins, out.get(), ws, bytes, cudaStream_t{}),
                    cudaSuccess);
          return bytes_of(out);
        },
        what);
    expect_same_bits(values_of<A>(got), cpu_thresholds<T>(b.target_acc, sh.samples, sh.voxels, sh.bins), what);
  }
}

TYPED_TEST(CudaSmallShapes, OtsuStandardize) {
  SKIP_WITHOUT_GPU();
  using T = TypeParam;
  using A = acc_t<T>;
  const Batch<T> b = make_batch<T>(3, 30011, 43);
  DeviceArray<T> x(b.target);
  const Bytes got = expect_workspace_independent(
      scu::otsu_standardize_workspace_bytes<T>(3, b.voxels, kBins),
      [&](void* ws, size_t bytes) {
        DeviceArray<T> out(b.target.size());
        EXPECT_EQ(scu::otsu_standardize(x.get(), 3, b.voxels, kBins, out.get(), ws, bytes, cudaStream_t{}), cudaSuccess);
        return bytes_of(out);
      },
      "otsu_standardize");
  std::vector<A> want(b.target.size());
  sc::otsu_standardize(b.target_acc.data(), 3, b.voxels, kBins, want.data(), sc::SerialExecutor{});
  const std::vector<T> out = values_of<T>(got);
  for (size_t i = 0; i < want.size(); i += 5)
    EXPECT_NEAR(to_double(out[i]), want[i], 4 * rounding_of<T>() * std::max(1.0, std::abs(double(want[i]))));
}

// Forward with Otsu thresholds (three kernels, the first zeroing the
// counters) and with given ones (a memset, one kernel), every reduction; then
// the backward from the device's own state, with the batch pooled in every
// block (3 samples) and by its own kernel (more than kMaxInlinePoolSamples).
TYPED_TEST(CudaSmallShapes, LossForwardAndBackward) {
  SKIP_WITHOUT_GPU();
  using T = TypeParam;
  using A = acc_t<T>;
  struct Shape {
    index_t samples, voxels;
  };
  for (const Shape sh : {Shape{3, 20001}, Shape{scu::kMaxInlinePoolSamples + 76, 64}}) {
    const Batch<T> b = make_batch<T>(sh.samples, sh.voxels, 47);
    DeviceArray<T> p(b.pred), y(b.target);
    const std::vector<A> given_host(static_cast<size_t>(sh.samples), A(1));
    DeviceArray<A> given(given_host);
    for (const bool otsu : {true, false}) {
      for (const auto red : {Reduction::kBatch, Reduction::kMean, Reduction::kNone}) {
        LossOptions o;
        o.reduction = red;
        const std::string what = "N=" + std::to_string(sh.samples) + " otsu=" + std::to_string(otsu) +
                                 " reduction=" + std::to_string(static_cast<int>(red));
        const size_t outputs = static_cast<size_t>(spotlight::loss_output_size(red, sh.samples));
        DeviceArray<A> thresholds(static_cast<size_t>(sh.samples));
        DeviceArray<LossSums> sums(static_cast<size_t>(sh.samples));
        const Bytes loss = expect_workspace_independent(
            scu::loss_forward_workspace_bytes<T>(sh.samples, sh.voxels, o.bins, otsu),
            [&](void* ws, size_t bytes) {
              DeviceArray<T> out(outputs);
              EXPECT_EQ(scu::loss_forward(p.get(), y.get(), sh.samples, sh.voxels, otsu ? nullptr : given.get(), o,
                                          out.get(), thresholds.get(), sums.get(), ws, bytes, cudaStream_t{}),
                        cudaSuccess);
              Bytes all = bytes_of(out), s = bytes_of(sums), t = bytes_of(thresholds);
              all.insert(all.end(), s.begin(), s.end());
              all.insert(all.end(), t.begin(), t.end());
              return all;
            },
            what + " forward");
        std::vector<A> cpu_loss(static_cast<size_t>(sh.samples));
        const auto st = sc::loss_forward(b.pred_acc.data(), b.target_acc.data(), sh.samples, sh.voxels,
                                         otsu ? nullptr : given_host.data(), o, cpu_loss.data(), sc::SerialExecutor{});
        const std::vector<A> thr = thresholds.host();
        const std::vector<LossSums> dev_sums = sums.host();
        for (index_t s = 0; s < sh.samples; ++s) {
          EXPECT_EQ(thr[s], st.thresholds[s]) << what << " threshold " << s;
          expect_close(dev_sums[s].sq_err, st.sums[s].sq_err, sum_tolerance<T>(), what + " sq_err");
          expect_close(dev_sums[s].soft, st.sums[s].soft, sum_tolerance<T>(), what + " soft");
        }
        const std::vector<T> loss_values = values_of<T>(Bytes(loss.begin(), loss.begin() + outputs * sizeof(T)));
        for (size_t j = 0; j < outputs; ++j)
          expect_close(to_double(loss_values[j]), cpu_loss[j], 2 * rounding_of<T>() + sum_tolerance<T>(), what);

        // Backward from the device state (the forward's thresholds and sums).
        std::vector<T> grad_host;
        for (size_t j = 0; j < outputs; ++j) grad_host.push_back(from_double<T>(1.0 + 0.5 * static_cast<double>(j % 3)));
        DeviceArray<T> g(grad_host);
        const Bytes grads = expect_workspace_independent(
            scu::loss_backward_workspace_bytes<T>(sh.samples, red),
            [&](void* ws, size_t bytes) {
              DeviceArray<T> gp(b.pred.size()), gt(b.pred.size());
              EXPECT_EQ(scu::loss_backward(g.get(), index_t{1}, p.get(), y.get(), sh.samples, sh.voxels,
                                           thresholds.get(), sums.get(), o, gp.get(), gt.get(), ws, bytes,
                                           cudaStream_t{}),
                        cudaSuccess);
              Bytes all = bytes_of(gp), t = bytes_of(gt);
              all.insert(all.end(), t.begin(), t.end());
              return all;
            },
            what + " backward");
        sc::LossForwardState<A> cpu_state;
        cpu_state.thresholds = thr;
        cpu_state.sums = dev_sums;
        std::vector<double> g_double;
        for (const T& v : grad_host) g_double.push_back(to_double(v));
        std::vector<A> cp(b.pred.size()), ct(b.pred.size());
        sc::loss_backward(b.pred_acc.data(), b.target_acc.data(), sh.samples, sh.voxels, cpu_state, o,
                          g_double.data(), cp.data(), ct.data(), sc::SerialExecutor{});
        const std::vector<T> dp = values_of<T>(Bytes(grads.begin(), grads.begin() + b.pred.size() * sizeof(T)));
        double scale = 1e-30;
        for (const A& v : cp) scale = std::max(scale, std::abs(static_cast<double>(v)));
        for (size_t i = 0; i < cp.size(); i += 11)
          EXPECT_NEAR(to_double(dp[i]), cp[i], 4 * rounding_of<T>() * scale) << what << " grad_pred " << i;
      }
    }
  }
}

// masked_mse and soft_dice: a memset of the counters and one kernel each.
TYPED_TEST(CudaSmallShapes, MaskedMseAndSoftDice) {
  SKIP_WITHOUT_GPU();
  using T = TypeParam;
  const Batch<T> b = make_batch<T>(3, 20011, 53);
  std::vector<char> mask_bytes;
  for (const T& v : b.target) mask_bytes.push_back(to_double(v) > 1.0);
  DeviceArray<char> mask(mask_bytes);
  const bool* m = reinterpret_cast<const bool*>(mask.get());
  const bool* mask_host = reinterpret_cast<const bool*>(mask_bytes.data());
  DeviceArray<T> p(b.pred), y(b.target);
  std::vector<LossSums> mse_sums(3), dice_sums(3);
  sc::masked_mse_sums(b.pred_acc.data(), b.target_acc.data(), mask_host, 3, b.voxels, mse_sums.data(),
                      sc::SerialExecutor{});
  sc::soft_dice_sums(b.pred_acc.data(), mask_host, 3, b.voxels, dice_sums.data(), sc::SerialExecutor{});
  const size_t bytes = scu::term_workspace_bytes<T>(3, b.voxels);
  for (const auto red : {Reduction::kBatch, Reduction::kMean, Reduction::kNone}) {
    LossOptions o;
    o.reduction = red;
    const size_t outputs = static_cast<size_t>(spotlight::loss_output_size(red, 3));
    const auto mse = values_of<T>(expect_workspace_independent(
        bytes,
        [&](void* ws, size_t n) {
          DeviceArray<T> out(outputs);
          DeviceArray<LossSums> sums(3);
          EXPECT_EQ(scu::masked_mse(p.get(), y.get(), m, 3, b.voxels, MseNormalization::kForeground, red, out.get(),
                                    sums.get(), ws, n, cudaStream_t{}),
                    cudaSuccess);
          return bytes_of(out);
        },
        "masked_mse"));
    const auto dice = values_of<T>(expect_workspace_independent(
        bytes,
        [&](void* ws, size_t n) {
          DeviceArray<T> out(outputs);
          DeviceArray<LossSums> sums(3);
          EXPECT_EQ(scu::soft_dice(p.get(), m, 3, b.voxels, o.eps, red, out.get(), sums.get(), ws, n, cudaStream_t{}),
                    cudaSuccess);
          return bytes_of(out);
        },
        "soft_dice"));
    std::vector<double> want_mse(outputs), want_dice(outputs);
    spotlight::finalize_losses(mse_sums.data(), 3, b.voxels, o, want_mse.data(), spotlight::Term::kMmse);
    spotlight::finalize_losses(dice_sums.data(), 3, b.voxels, o, want_dice.data(), spotlight::Term::kDice);
    for (size_t j = 0; j < outputs; ++j) {
      expect_close(to_double(mse[j]), want_mse[j], 2 * rounding_of<T>() + sum_tolerance<T>(), "masked_mse");
      expect_close(to_double(dice[j]), want_dice[j], 2 * rounding_of<T>() + sum_tolerance<T>(), "soft_dice");
    }
  }
}

// The elementwise kernels, vectorized (aligned) and scalar (offset by one).
TYPED_TEST(CudaSmallShapes, TunableSigmoidAndBackward) {
  SKIP_WITHOUT_GPU();
  using T = TypeParam;
  using A = acc_t<T>;
  const index_t count = 4099;
  std::vector<T> x;
  std::vector<A> xa, ones(static_cast<size_t>(count), A(1));
  for (index_t i = 0; i < count; ++i) {
    x.push_back(from_double<T>(-1.5 + 3.0 * static_cast<double>(i) / static_cast<double>(count)));
    xa.push_back(static_cast<A>(to_double(x.back())));
  }
  std::vector<A> want(xa.size()), want_grad(xa.size());
  sc::tunable_sigmoid(xa.data(), count, kK, want.data(), sc::SerialExecutor{});
  sc::tunable_sigmoid_backward(ones.data(), xa.data(), count, kK, want_grad.data(), sc::SerialExecutor{});
  DeviceArray<T> dx(x), dones(std::vector<T>(x.size(), from_double<T>(1.0)));
  for (const index_t offset : {index_t{0}, index_t{1}}) {
    DeviceArray<T> out(x.size()), grad(x.size());
    out.fill_bytes(0);
    grad.fill_bytes(0);
    const index_t n = count - offset;
    ASSERT_EQ(scu::tunable_sigmoid(dx.get() + offset, n, kK, out.get() + offset, cudaStream_t{}), cudaSuccess);
    ASSERT_EQ(scu::tunable_sigmoid_backward(dones.get() + offset, dx.get() + offset, n, kK, grad.get() + offset,
                                            cudaStream_t{}),
              cudaSuccess);
    const auto got = out.host(), got_grad = grad.host();
    for (index_t i = offset; i < count; ++i) {
      EXPECT_NEAR(to_double(got[i]), want[i], 2 * rounding_of<T>()) << "i=" << i;
      EXPECT_NEAR(to_double(got_grad[i]), want_grad[i], 2 * rounding_of<T>() * std::max(1.0, double(want_grad[i])))
          << "i=" << i;
    }
  }
}

// A null workspace with a non-zero size is an error before any launch (no
// kernel on null pointers, no sticky error); the launchers return before
// touching CUDA, so this runs without a GPU too.
TEST(CudaSmallShapesNoGpu, NullOrMisalignedWorkspaceIsAnError) {
  const index_t n = 3, v = 20000;
  LossOptions o;
  LossOptions batch;
  const index_t many = scu::kMaxInlinePoolSamples + 1;
  const float* x = reinterpret_cast<const float*>(std::uintptr_t{4096});  // never dereferenced
  float* out = reinterpret_cast<float*>(std::uintptr_t{8192});
  const bool* mask = reinterpret_cast<const bool*>(std::uintptr_t{4096});
  LossSums* sums = reinterpret_cast<LossSums*>(std::uintptr_t{8192});
  void* misaligned = reinterpret_cast<void*>(std::uintptr_t{4096 + 8});
  for (void* ws : {static_cast<void*>(nullptr), misaligned}) {
    const std::string what = ws ? "misaligned" : "null";
    size_t bytes = scu::otsu_thresholds_workspace_bytes<float>(n, v, kBins);
    EXPECT_EQ(scu::otsu_thresholds(x, n, v, kBins, out, ws, bytes, cudaStream_t{}), cudaErrorInvalidValue) << what;
    bytes = scu::otsu_standardize_workspace_bytes<float>(n, v, kBins);
    EXPECT_EQ(scu::otsu_standardize(x, n, v, kBins, out, ws, bytes, cudaStream_t{}), cudaErrorInvalidValue) << what;
    for (const bool otsu : {true, false}) {
      bytes = scu::loss_forward_workspace_bytes<float>(n, v, o.bins, otsu);
      EXPECT_EQ(scu::loss_forward(x, x, n, v, otsu ? nullptr : x, o, out, out, sums, ws, bytes, cudaStream_t{}),
                cudaErrorInvalidValue)
          << what << " otsu=" << otsu;
    }
    bytes = scu::term_workspace_bytes<float>(n, v);
    EXPECT_EQ(scu::masked_mse(x, x, mask, n, v, MseNormalization::kForeground, Reduction::kBatch, out, sums, ws,
                              bytes, cudaStream_t{}),
              cudaErrorInvalidValue)
        << what;
    EXPECT_EQ(scu::soft_dice(x, mask, n, v, 1e-6, Reduction::kBatch, out, sums, ws, bytes, cudaStream_t{}),
              cudaErrorInvalidValue)
        << what;
    bytes = scu::loss_backward_workspace_bytes<float>(many, batch.reduction);
    ASSERT_GT(bytes, 0u);
    EXPECT_EQ(scu::loss_backward(x, index_t{1}, x, x, many, index_t{64}, x, sums, batch, out,
                                 static_cast<float*>(nullptr), ws, bytes, cudaStream_t{}),
              cudaErrorInvalidValue)
        << what;
  }
  // A workspace of size zero needs no pointer.
  EXPECT_EQ(scu::loss_backward_workspace_bytes<float>(n, Reduction::kMean), 0u);
}

// The same with a GPU: the error leaves the context usable.
TEST(CudaSmallShapesErrors, NullWorkspaceLeavesTheContextUsable) {
  SKIP_WITHOUT_GPU();
  const index_t n = 2, v = 10000;
  const Batch<float> b = make_batch<float>(n, v, 59);
  DeviceArray<float> x(b.target), out(static_cast<size_t>(n));
  const size_t bytes = scu::otsu_thresholds_workspace_bytes<float>(n, v, kBins);
  EXPECT_EQ(scu::otsu_thresholds(x.get(), n, v, kBins, out.get(), nullptr, bytes, cudaStream_t{}), cudaErrorInvalidValue);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  DeviceArray<unsigned char> ws(bytes);
  ASSERT_EQ(scu::otsu_thresholds(x.get(), n, v, kBins, out.get(), ws.get(), bytes, cudaStream_t{}), cudaSuccess);
  expect_same_bits(out.host(), cpu_thresholds<float>(b.target_acc, n, v, kBins), "after the error");
}
