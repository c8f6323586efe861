// Otsu standardization on the device against the CPU kernel (the same std
// algorithm, core/moments.hpp; another summation order): forward at every
// finite scale, the saved thresholds and stats, and the backward.
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <random>
#include <vector>

#include "cuda_test_support.cuh"

namespace spotlight_test {
namespace {

using spotlight::moments::StandardizeStats;

// Offset data of two classes, at `scale`: values in about [100, 120] * scale.
template <class T>
std::vector<T> scaled(index_t n, double scale, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<T> x(static_cast<size_t>(n));
  for (auto& v : x) {
    const double w = u(rng);
    v = static_cast<T>((100.0 + 7.0 * w + (w < 0.1 ? 10.0 : 0.0)) * scale);
  }
  return x;
}

// Forward and backward on the device and on the CPU, compared.
template <class T>
void expect_like_cpu(const std::vector<T>& x, index_t samples, double rtol, const std::string& what) {
  using A = acc_t<T>;
  const index_t voxels = static_cast<index_t>(x.size()) / samples;
  std::vector<A> thr(samples);
  std::vector<StandardizeStats<A>> st(samples);
  std::vector<T> y(x.size()), g(x.size()), gx(x.size());
  for (size_t i = 0; i < g.size(); ++i) g[i] = static_cast<T>(std::sin(0.37 * static_cast<double>(i)));
  sc::otsu_standardize_forward(x.data(), samples, voxels, kBins, y.data(), thr.data(), st.data(), sc::SerialExecutor{});
  sc::otsu_standardize_backward(g.data(), x.data(), samples, voxels, thr.data(), st.data(), gx.data(),
                                sc::SerialExecutor{});

  DeviceArray<T> dx(x), dy(x.size()), dg(g), dgx(x.size());
  DeviceArray<A> dthr(samples);
  DeviceArray<StandardizeStats<A>> dst(samples);
  const size_t bytes = scu::otsu_standardize_workspace_bytes<T>(samples, voxels, kBins);
  DeviceArray<unsigned char> ws(bytes);
  ASSERT_EQ(scu::otsu_standardize_forward(dx.get(), samples, voxels, kBins, dy.get(), dthr.get(), dst.get(), ws.get(),
                                          bytes, cudaStream_t{}),
            cudaSuccess);
  const size_t back_bytes = scu::otsu_standardize_backward_workspace_bytes<T>(samples, voxels);
  DeviceArray<unsigned char> back_ws(back_bytes);
  ASSERT_EQ(scu::otsu_standardize_backward(dg.get(), dx.get(), samples, voxels, dthr.get(), dst.get(), dgx.get(),
                                           back_ws.get(), back_bytes, cudaStream_t{}),
            cudaSuccess);
  const auto got_thr = dthr.host();
  const auto got_st = dst.host();
  const auto got_y = dy.host();
  const auto got_gx = dgx.host();
  for (index_t s = 0; s < samples; ++s) {
    EXPECT_EQ(got_thr[s], thr[s]) << what << " threshold of sample " << s;  // same bits (Otsu)
    EXPECT_EQ(got_st[s].scale, st[s].scale) << what;
    expect_close(got_st[s].mean * got_st[s].inv_std, st[s].mean * st[s].inv_std, rtol, what + " mean / std");
    expect_close(got_st[s].inv_std / st[s].inv_std, 1.0, rtol, what + " inverse std");
  }
  for (size_t i = 0; i < x.size(); i += 7) {
    expect_close(got_y[i], y[i], rtol, what + " y");
    // the gradient in units of 1 / std (which overflows A for denormal data: the same inf both sides)
    const double unit = static_cast<double>(st[i / voxels].inv_std) * static_cast<double>(st[i / voxels].scale);
    if (std::isfinite(static_cast<double>(gx[i])))
      expect_close(static_cast<double>(got_gx[i]) / unit, static_cast<double>(gx[i]) / unit, rtol, what + " grad");
    else
      EXPECT_EQ(got_gx[i], gx[i]) << what << " grad";
  }
}

TEST(CudaStandardize, FloatAtEveryScale) {
  SKIP_WITHOUT_GPU();
  for (int e = -30; e <= 30; e += 10)
    expect_like_cpu(scaled<float>(3 * 40000, std::pow(10.0, e), 5), 3, 2e-6, "float 1e" + std::to_string(e));
  expect_like_cpu(scaled<float>(2 * 40000, 2e36, 6), 2, 2e-6, "float 2e36");
  std::vector<float> tiny(50000);  // denormals
  for (size_t i = 0; i < tiny.size(); ++i) tiny[i] = std::ldexp(static_cast<float>((i * 7919) % 1000003), -149);
  expect_like_cpu(tiny, 1, 2e-6, "float denormal");
}

TEST(CudaStandardize, DoubleAtTheExtremes) {
  SKIP_WITHOUT_GPU();
  for (const double scale : {1e-300, 1e-160, 1.0, 1e160, 1e300, DBL_MAX / 200})
    expect_like_cpu(scaled<double>(2 * 30000, scale, 7), 2, 1e-12, "double " + std::to_string(scale));
  // [-DBL_MAX, DBL_MAX]: hi - lo overflows (Otsu on halved values, math::wide_range)
  std::vector<double> widest = scaled<double>(30000, 1.0, 8);
  for (auto& v : widest) v = (v - 110.0) / 10.0 * DBL_MAX;
  widest[0] = -DBL_MAX;
  widest[1] = DBL_MAX;
  expect_like_cpu(widest, 1, 1e-12, "double [-max, max]");
}

TEST(CudaStandardize, RejectsSmallWorkspace) {
  SKIP_WITHOUT_GPU();
  DeviceArray<float> x(1000), g(1000), out(1000);
  const size_t bytes = scu::otsu_standardize_backward_workspace_bytes<float>(1, 1000);
  DeviceArray<unsigned char> ws(bytes);
  DeviceArray<float> thr(1);
  DeviceArray<StandardizeStats<float>> st(1);
  EXPECT_EQ(scu::otsu_standardize_backward(g.get(), x.get(), 1, 1000, thr.get(), st.get(), out.get(), ws.get(),
                                           bytes - 1, cudaStream_t{}),
            cudaErrorInvalidValue);
}

}  // namespace
}  // namespace spotlight_test
