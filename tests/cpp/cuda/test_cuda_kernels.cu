// The CUDA kernels of include/spotlight/cuda against the CPU kernels (the
// semantics reference: thresholds must agree to the bit, sums and gradients
// to float rounding) and against the float64 reference of reference.hpp.
// Every test skips when no CUDA device can be used; nothing touches CUDA
// outside a test body, so listing the tests works on any machine.
#include <random>

#include "cuda_test_support.cuh"

using namespace spotlight_test;

namespace {
template <class T>
class CudaKernels : public ::testing::Test {};
using InputTypes = ::testing::Types<float, double, __half, __nv_bfloat16>;
TYPED_TEST_SUITE(CudaKernels, InputTypes);

}  // namespace

// --- Otsu ---------------------------------------------------------------------

TYPED_TEST(CudaKernels, OtsuEqualsCpuBitForBit) {
  SKIP_WITHOUT_GPU();
  using T = TypeParam;
  struct Shape {
    index_t samples, voxels;
    int bins;
  };
  // Several blocks per sample, many small samples, one huge-bin histogram
  // (global-memory path), 2 bins, 1 voxel.
  for (const Shape sh : {Shape{3, 100003, 256}, Shape{1, 1 << 20, 256}, Shape{256, 300, 256},
                         Shape{2, 20000, 10000}, Shape{2, 999, 2}, Shape{4, 1, 256}}) {
    const Batch<T> b = make_batch<T>(sh.samples, sh.voxels, 7);
    const auto got = cuda_thresholds(b.target, sh.samples, sh.voxels, sh.bins);
    const auto want = cpu_thresholds<T>(b.target_acc, sh.samples, sh.voxels, sh.bins);
    expect_same_bits(got, want, "N=" + std::to_string(sh.samples) + " n=" + std::to_string(sh.voxels) +
                                    " bins=" + std::to_string(sh.bins));
  }
}

TYPED_TEST(CudaKernels, OtsuWithinOneBinOfReference) {
  SKIP_WITHOUT_GPU();
  using T = TypeParam;
  const index_t voxels = 50000;
  const Batch<T> b = make_batch<T>(2, voxels, 3);
  const auto got = cuda_thresholds(b.target, 2, voxels, kBins);
  for (index_t s = 0; s < 2; ++s) {
    const std::vector<double> v(b.target_acc.begin() + s * voxels, b.target_acc.begin() + (s + 1) * voxels);
    const double lo = *std::min_element(v.begin(), v.end()), hi = *std::max_element(v.begin(), v.end());
    EXPECT_LE(std::abs(got[s] - ref::otsu(v, kBins)), (hi - lo) / kBins * 1.0001) << "sample " << s;
  }
}

TYPED_TEST(CudaKernels, OtsuConstantSkewedAndNonFiniteSamples) {
  SKIP_WITHOUT_GPU();
  using T = TypeParam;
  const index_t voxels = 40000;
  std::vector<double> x(static_cast<size_t>(4 * voxels), 3.5);   // sample 0: constant
  for (index_t i = 0; i < voxels; ++i) x[voxels + i] = i % 97 == 0 ? 5.0 : 0.25;  // 1: nearly all in one bin
  for (index_t i = 0; i < voxels; ++i) x[2 * voxels + i] = static_cast<double>(i % 13);
  for (index_t i = 0; i < voxels; ++i) x[3 * voxels + i] = static_cast<double>(i % 7);
  x[2 * voxels + 17] = std::numeric_limits<double>::quiet_NaN();  // 2: NaN
  x[3 * voxels + 5] = std::numeric_limits<double>::infinity();    // 3: Inf
  std::vector<T> xt;
  std::vector<acc_t<T>> xa;
  for (double v : x) {
    xt.push_back(from_double<T>(v));
    xa.push_back(static_cast<acc_t<T>>(to_double(xt.back())));
  }
  const auto got = cuda_thresholds(xt, 4, voxels, kBins);
  expect_same_bits(got, cpu_thresholds<T>(xa, 4, voxels, kBins), "special samples");
  EXPECT_EQ(got[0], acc_t<T>(3.5));
  EXPECT_TRUE(std::isnan(got[2]));
  EXPECT_TRUE(std::isnan(got[3]));
}

// Samples spanning more than DBL_MAX (hi - lo overflows double: the
// histogram and bin centre run on halved values, see math::wide_range) and
// the float extremes: finite thresholds, the CPU kernel's bits.
template <class T>
void expect_extreme_thresholds(T m) {
  const index_t samples = 2, voxels = 70001;
  std::mt19937_64 rng(17);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  std::vector<T> x(static_cast<size_t>(samples * voxels));
  for (auto& v : x) v = static_cast<T>(u(rng) * static_cast<double>(m));
  for (index_t s = 0; s < samples; ++s) {
    x[s * voxels] = -m;
    x[s * voxels + 1] = m;
  }
  const auto got = cuda_thresholds(x, samples, voxels, kBins);
  for (index_t s = 0; s < samples; ++s) EXPECT_TRUE(std::isfinite(got[s])) << m << " sample " << s;
  expect_same_bits(got, cpu_thresholds<T>(x, samples, voxels, kBins), "extreme range");
}

TEST(CudaKernelsExtremes, OtsuFiniteWhenTheRangeOverflows) {
  SKIP_WITHOUT_GPU();
  expect_extreme_thresholds<double>(1e308);
  expect_extreme_thresholds<double>(std::numeric_limits<double>::max());
  expect_extreme_thresholds<float>(3e38f);
  expect_extreme_thresholds<float>(std::numeric_limits<float>::max());
}

TEST(CudaKernelsWorkspace, TooSmallIsAnErrorNotAWrite) {
  SKIP_WITHOUT_GPU();
  DeviceArray<float> x(std::vector<float>(1000, 1.0f));
  DeviceArray<float> out(1);
  const size_t bytes = scu::otsu_thresholds_workspace_bytes<float>(1, 1000, kBins);
  DeviceArray<unsigned char> ws(bytes);
  EXPECT_EQ(scu::otsu_thresholds(x.get(), 1, 1000, kBins, out.get(), ws.get(), bytes - 1, cudaStream_t{}),
            cudaErrorInvalidValue);
}

// --- the fused loss -------------------------------------------------------------

TYPED_TEST(CudaKernels, LossForwardMatchesCpuAllReductions) {
  SKIP_WITHOUT_GPU();
  using T = TypeParam;
  using A = acc_t<T>;
  struct Shape {
    index_t samples, voxels;
  };
  for (const Shape sh : {Shape{3, 70001}, Shape{1, 1 << 21}, Shape{256, 400}, Shape{2, 1}}) {
    const Batch<T> b = make_batch<T>(sh.samples, sh.voxels, 5);
    for (const bool otsu : {true, false}) {
      const std::vector<A> given(static_cast<size_t>(sh.samples), A(1));
      for (auto red : {Reduction::kBatch, Reduction::kMean, Reduction::kNone}) {
        for (auto norm : {MseNormalization::kForeground, MseNormalization::kAll}) {
          LossOptions o;
          o.reduction = red;
          o.mse_normalization = norm;
          const std::string what = "N=" + std::to_string(sh.samples) + " n=" + std::to_string(sh.voxels) +
                                   " otsu=" + std::to_string(otsu) + " reduction=" +
                                   std::to_string(static_cast<int>(red)) +
                                   " norm=" + std::to_string(static_cast<int>(norm));
          const ForwardResult got = cuda_forward(b, o, otsu ? nullptr : &given);
          // CPU on the same (rounded) values, in the same accumulation type.
          std::vector<A> cpu_loss(static_cast<size_t>(sh.samples));
          const auto st = sc::loss_forward(b.pred_acc.data(), b.target_acc.data(), sh.samples, sh.voxels,
                                           otsu ? nullptr : given.data(), o, cpu_loss.data(), sc::SerialExecutor{});
          for (index_t s = 0; s < sh.samples; ++s) {
            EXPECT_EQ(static_cast<A>(got.thresholds[s]), st.thresholds[s]) << what << " threshold " << s;
            const LossSums &g = got.sums[s], &w = st.sums[s];
            expect_close(g.fg, w.fg, 0.0, what + " fg");  // integers: exact
            expect_close(g.sq_err, w.sq_err, sum_tolerance<T>(), what + " sq_err");
            expect_close(g.soft, w.soft, sum_tolerance<T>(), what + " soft");
            expect_close(g.soft_fg, w.soft_fg, sum_tolerance<T>(), what + " soft_fg");
          }
          // The loss from the device's own sums, rounded to T once.
          std::vector<double> from_sums(got.loss.size());
          spotlight::finalize_losses(got.sums.data(), sh.samples, sh.voxels, o, from_sums.data());
          for (size_t i = 0; i < from_sums.size(); ++i)
            expect_close(got.loss[i], from_sums[i], 2 * rounding_of<T>(), what + " loss");
        }
      }
    }
  }
}

TYPED_TEST(CudaKernels, LossForwardMatchesFloat64Reference) {
  SKIP_WITHOUT_GPU();
  using T = TypeParam;
  const Batch<T> b = make_batch<T>(2, 30000, 11);
  LossOptions o;
  o.reduction = Reduction::kNone;
  const ForwardResult got = cuda_forward(b, o, nullptr);
  for (index_t s = 0; s < 2; ++s) {
    std::vector<double> p(b.pred_acc.begin() + s * b.voxels, b.pred_acc.begin() + (s + 1) * b.voxels);
    std::vector<double> y(b.target_acc.begin() + s * b.voxels, b.target_acc.begin() + (s + 1) * b.voxels);
    const ref::Terms r = ref::terms(p.data(), y.data(), b.voxels, got.thresholds[s], o.k);
    const double want = ref::loss_of(r, static_cast<double>(b.voxels), o.lam, o.eps, true);
    expect_close(got.loss[s], want, 2 * rounding_of<T>() + 1e-5, "sample " + std::to_string(s));
  }
}

TYPED_TEST(CudaKernels, LossIsDeterministic) {
  SKIP_WITHOUT_GPU();
  using T = TypeParam;
  const Batch<T> b = make_batch<T>(2, 1 << 20, 23);
  LossOptions o;
  const ForwardResult first = cuda_forward(b, o, nullptr), second = cuda_forward(b, o, nullptr);
  ASSERT_EQ(first.sums.size(), second.sums.size());
  EXPECT_EQ(std::memcmp(first.sums.data(), second.sums.data(), first.sums.size() * sizeof(LossSums)), 0);
  EXPECT_EQ(std::memcmp(first.loss.data(), second.loss.data(), first.loss.size() * sizeof(double)), 0);
}

TYPED_TEST(CudaKernels, NaNPoisonsOnlyItsPool) {
  SKIP_WITHOUT_GPU();
  using T = TypeParam;
  Batch<T> b = make_batch<T>(2, 1000, 17);
  b.pred[5] = from_double<T>(std::numeric_limits<double>::quiet_NaN());
  LossOptions o;
  o.reduction = Reduction::kNone;
  const std::vector<acc_t<T>> given(2, acc_t<T>(1));
  ForwardResult got = cuda_forward(b, o, &given);
  EXPECT_TRUE(std::isnan(got.loss[0]));
  EXPECT_FALSE(std::isnan(got.loss[1]));
  o.reduction = Reduction::kBatch;
  got = cuda_forward(b, o, &given);
  EXPECT_TRUE(std::isnan(got.loss[0]));
}

TYPED_TEST(CudaKernels, LossBackwardMatchesCpu) {
  SKIP_WITHOUT_GPU();
  using T = TypeParam;
  using A = acc_t<T>;
  struct Shape {
    index_t samples, voxels;
  };
  // 1100 samples: above kMaxInlinePoolSamples, the batch pool runs in its own kernel.
  for (const Shape sh : {Shape{3, 20001}, Shape{1100, 64}}) {
    const Batch<T> b = make_batch<T>(sh.samples, sh.voxels, 29);
    for (auto red : {Reduction::kBatch, Reduction::kMean, Reduction::kNone}) {
      LossOptions o;
      o.reduction = red;
      const ForwardResult fwd = cuda_forward(b, o, nullptr);
      const size_t outputs = fwd.loss.size();
      std::vector<T> grad_out;
      for (size_t j = 0; j < outputs; ++j) grad_out.push_back(from_double<T>(0.5 + 0.25 * static_cast<double>(j % 5)));
      // Device backward, from the device forward's thresholds and sums.
      DeviceArray<T> p(b.pred), y(b.target), g(grad_out);
      std::vector<A> thr_host(fwd.thresholds.begin(), fwd.thresholds.end());
      DeviceArray<A> thr(thr_host);
      DeviceArray<LossSums> sums(fwd.sums);
      DeviceArray<T> gp(b.pred.size()), gt(b.pred.size());
      const size_t bytes = scu::loss_backward_workspace_bytes<T>(sh.samples, red);
      DeviceArray<unsigned char> ws(bytes);
      ASSERT_EQ(scu::loss_backward(g.get(), index_t{1}, p.get(), y.get(), sh.samples, sh.voxels, thr.get(),
                                   sums.get(), o, gp.get(), gt.get(), ws.get(), bytes, cudaStream_t{}),
                cudaSuccess);
      // CPU backward from the same thresholds and sums.
      sc::LossForwardState<A> st;
      st.thresholds = thr_host;
      st.sums = fwd.sums;
      std::vector<double> g_double;
      for (const T& v : grad_out) g_double.push_back(to_double(v));
      std::vector<A> cp(b.pred.size()), ct(b.pred.size());
      sc::loss_backward(b.pred_acc.data(), b.target_acc.data(), sh.samples, sh.voxels, st, o, g_double.data(),
                        cp.data(), ct.data(), sc::SerialExecutor{});
      const auto dp = gp.host(), dt = gt.host();
      double scale = 0;
      for (const A& v : cp) scale = std::max(scale, std::abs(static_cast<double>(v)));
      for (size_t i = 0; i < cp.size(); i += 7) {
        EXPECT_NEAR(to_double(dp[i]), cp[i], 4 * rounding_of<T>() * std::max(scale, 1e-30)) << "grad_pred " << i;
        EXPECT_NEAR(to_double(dt[i]), ct[i], 4 * rounding_of<T>() * std::max(scale, 1e-30)) << "grad_target " << i;
      }
    }
  }
}

// --- the term ops, standardization, the sigmoid ---------------------------------

TYPED_TEST(CudaKernels, MaskedMseAndSoftDiceMatchCpu) {
  SKIP_WITHOUT_GPU();
  using T = TypeParam;
  const Batch<T> b = make_batch<T>(4, 30011, 31);
  std::vector<char> mask_bytes;
  for (size_t i = 0; i < b.target.size(); ++i) mask_bytes.push_back(to_double(b.target[i]) > 1.0);
  const bool* mask_host = reinterpret_cast<const bool*>(mask_bytes.data());
  DeviceArray<char> mask(mask_bytes);
  const bool* mask_dev = reinterpret_cast<const bool*>(mask.get());
  DeviceArray<T> p(b.pred), y(b.target);
  std::vector<LossSums> mse_sums(4), dice_sums(4);
  sc::masked_mse_sums(b.pred_acc.data(), b.target_acc.data(), mask_host, 4, b.voxels, mse_sums.data(),
                      sc::SerialExecutor{});
  sc::soft_dice_sums(b.pred_acc.data(), mask_host, 4, b.voxels, dice_sums.data(), sc::SerialExecutor{});
  const size_t bytes = scu::term_workspace_bytes<T>(4, b.voxels);
  DeviceArray<unsigned char> ws(bytes);
  for (auto red : {Reduction::kBatch, Reduction::kMean, Reduction::kNone}) {
    LossOptions o;
    o.reduction = red;
    const size_t outputs = static_cast<size_t>(spotlight::loss_output_size(red, 4));
    DeviceArray<T> mse(outputs), dice(outputs);
    DeviceArray<LossSums> mse_sums_dev(4), dice_sums_dev(4);
    ASSERT_EQ(scu::masked_mse(p.get(), y.get(), mask_dev, 4, b.voxels, MseNormalization::kForeground, red, mse.get(),
                              mse_sums_dev.get(), ws.get(), bytes, cudaStream_t{}),
              cudaSuccess);
    ASSERT_EQ(scu::soft_dice(p.get(), mask_dev, 4, b.voxels, o.eps, red, dice.get(), dice_sums_dev.get(), ws.get(),
                             bytes, cudaStream_t{}),
              cudaSuccess);
    // The backwards from the device's saved sums against the CPU header's from its own.
    const std::vector<double> grads = {0.7, -1.3, 2.1, 0.4};
    DeviceArray<double> g_dev(std::vector<double>(grads.begin(), grads.begin() + outputs));
    const size_t back_bytes = scu::term_backward_workspace_bytes(4);
    DeviceArray<unsigned char> back_ws(back_bytes);
    DeviceArray<T> gp(b.pred.size()), gt(b.pred.size()), gs(b.pred.size());
    ASSERT_EQ(scu::masked_mse_backward(g_dev.get(), p.get(), y.get(), mask_dev, 4, b.voxels, mse_sums_dev.get(),
                                       MseNormalization::kForeground, red, gp.get(), gt.get(), back_ws.get(),
                                       back_bytes, cudaStream_t{}),
              cudaSuccess);
    ASSERT_EQ(scu::soft_dice_backward(g_dev.get(), mask_dev, 4, b.voxels, dice_sums_dev.get(), o.eps, red, gs.get(),
                                      back_ws.get(), back_bytes, cudaStream_t{}),
              cudaSuccess);
    using A = acc_t<T>;
    std::vector<A> cp(b.pred.size()), ct(b.pred.size()), cs(b.pred.size());
    sc::masked_mse_backward(grads.data(), b.pred_acc.data(), b.target_acc.data(), mask_host, 4, b.voxels,
                            mse_sums.data(), MseNormalization::kForeground, red, cp.data(), ct.data(),
                            sc::SerialExecutor{});
    sc::soft_dice_backward(grads.data(), mask_host, 4, b.voxels, dice_sums.data(), o.eps, red, cs.data(),
                           sc::SerialExecutor{});
    const auto dp = gp.host(), dt = gt.host(), ds = gs.host();
    double scale_p = 1e-30, scale_s = 1e-30;
    for (size_t i = 0; i < cp.size(); ++i) {
      scale_p = std::max(scale_p, std::abs(static_cast<double>(cp[i])));
      scale_s = std::max(scale_s, std::abs(static_cast<double>(cs[i])));
    }
    for (size_t i = 0; i < cp.size(); i += 7) {
      EXPECT_NEAR(to_double(dp[i]), cp[i], 4 * rounding_of<T>() * scale_p) << "masked_mse grad_pred " << i;
      EXPECT_EQ(to_double(dt[i]), -to_double(dp[i])) << "masked_mse grad_target " << i;
      EXPECT_NEAR(to_double(ds[i]), cs[i], 4 * rounding_of<T>() * scale_s) << "soft_dice grad " << i;
    }
    std::vector<double> want_mse(outputs), want_dice(outputs);
    spotlight::finalize_losses(mse_sums.data(), 4, b.voxels, o, want_mse.data(), spotlight::Term::kMmse);
    spotlight::finalize_losses(dice_sums.data(), 4, b.voxels, o, want_dice.data(), spotlight::Term::kDice);
    const auto got_mse = mse.host(), got_dice = dice.host();
    for (size_t j = 0; j < outputs; ++j) {
      expect_close(to_double(got_mse[j]), want_mse[j], 2 * rounding_of<T>() + sum_tolerance<T>(), "masked_mse");
      expect_close(to_double(got_dice[j]), want_dice[j], 2 * rounding_of<T>() + sum_tolerance<T>(), "soft_dice");
    }
  }
}

TYPED_TEST(CudaKernels, StandardizeMatchesCpu) {
  SKIP_WITHOUT_GPU();
  using T = TypeParam;
  using A = acc_t<T>;
  const Batch<T> b = make_batch<T>(3, 50021, 37);
  DeviceArray<T> x(b.target), out(b.target.size());
  const size_t bytes = scu::otsu_standardize_workspace_bytes<T>(3, b.voxels, kBins);
  DeviceArray<unsigned char> ws(bytes);
  ASSERT_EQ(scu::otsu_standardize(x.get(), 3, b.voxels, kBins, out.get(), ws.get(), bytes, cudaStream_t{}), cudaSuccess);
  std::vector<A> want(b.target.size());
  sc::otsu_standardize(b.target_acc.data(), 3, b.voxels, kBins, want.data(), sc::SerialExecutor{});
  const auto got = out.host();
  for (size_t i = 0; i < want.size(); i += 3)
    EXPECT_NEAR(to_double(got[i]), want[i], 4 * rounding_of<T>() * std::max(1.0, std::abs(double(want[i]))))
        << "i=" << i;
}

TYPED_TEST(CudaKernels, TunableSigmoidMatchesCpuAlignedAndNot) {
  SKIP_WITHOUT_GPU();
  using T = TypeParam;
  using A = acc_t<T>;
  const index_t count = 100003;
  std::vector<T> x;
  std::vector<A> xa;
  for (index_t i = 0; i < count; ++i) {
    x.push_back(from_double<T>(-1.5 + 3.0 * static_cast<double>(i) / static_cast<double>(count)));
    xa.push_back(static_cast<A>(to_double(x.back())));
  }
  std::vector<A> want(static_cast<size_t>(count)), want_grad(static_cast<size_t>(count)), ones(xa.size(), A(1));
  std::vector<A> want_grad2(static_cast<size_t>(count));
  sc::tunable_sigmoid(xa.data(), count, kK, want.data(), sc::SerialExecutor{});
  sc::tunable_sigmoid_backward(ones.data(), xa.data(), count, kK, want_grad.data(), sc::SerialExecutor{});
  sc::tunable_sigmoid_double_backward(ones.data(), ones.data(), xa.data(), count, kK, want_grad2.data(),
                                      sc::SerialExecutor{});
  DeviceArray<T> dx(x), out(x.size() + 1), grad(x.size() + 1), grad2(x.size() + 1);
  DeviceArray<T> dones(std::vector<T>(x.size() + 1, from_double<T>(1.0)));
  for (const index_t offset : {index_t{0}, index_t{1}}) {  // 1: misaligned, the scalar path
    const index_t n = count - offset;
    ASSERT_EQ(scu::tunable_sigmoid(dx.get() + offset, n, kK, out.get() + offset, cudaStream_t{}), cudaSuccess);
    ASSERT_EQ(scu::tunable_sigmoid_backward(dones.get() + offset, dx.get() + offset, n, kK, grad.get() + offset,
                                            cudaStream_t{}),
              cudaSuccess);
    ASSERT_EQ(scu::tunable_sigmoid_double_backward(dones.get() + offset, dones.get() + offset, dx.get() + offset, n,
                                                   kK, grad2.get() + offset, cudaStream_t{}),
              cudaSuccess);
    const auto got = out.host(), got_grad = grad.host(), got_grad2 = grad2.host();
    for (index_t i = offset; i < count; ++i) {
      EXPECT_NEAR(to_double(got[i]), want[i], 2 * rounding_of<T>()) << "i=" << i;
      EXPECT_NEAR(to_double(got_grad[i]), want_grad[i], 2 * rounding_of<T>() * std::max(1.0, double(want_grad[i])))
          << "i=" << i;
      EXPECT_NEAR(to_double(got_grad2[i]), want_grad2[i],
                  2 * rounding_of<T>() * std::max(1.0, std::abs(double(want_grad2[i]))))
          << "i=" << i;
    }
  }
}
