// Helpers shared by the CUDA GoogleTest files: device arrays, batches in the
// four input types, the CUDA and CPU calls the comparisons make, tolerances.
// Nothing here touches CUDA at static initialization, so listing the tests
// works on machines without a GPU.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "reference.hpp"
#include "spotlight/cpu/elementwise.hpp"
#include "spotlight/cpu/loss.hpp"
#include "spotlight/cpu/otsu.hpp"
#include "spotlight/cpu/standardize.hpp"
#include "spotlight/cpu/terms.hpp"
#include "spotlight/cuda.cuh"

namespace spotlight_test {

namespace scu = spotlight::cuda;
namespace sc = spotlight::cpu;
using spotlight::acc_t;
using spotlight::index_t;
using spotlight::LossOptions;
using spotlight::LossSums;
using spotlight::MseNormalization;
using spotlight::Reduction;
using spotlight::defaults::kBins;  // the default Otsu bins and sigmoid k
using spotlight::defaults::kK;

inline bool cuda_usable() {
  int devices = 0;
  return cudaGetDeviceCount(&devices) == cudaSuccess && devices > 0;
}

#define SKIP_WITHOUT_GPU() \
  if (!::spotlight_test::cuda_usable()) GTEST_SKIP() << "no usable CUDA device"

// Host conversions between double and the four input types.
template <class T>
T from_double(double v) {
  if constexpr (std::is_same_v<T, __half>) {
    return __float2half_rn(static_cast<float>(v));
  } else if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __float2bfloat16_rn(static_cast<float>(v));
  } else {
    return static_cast<T>(v);
  }
}

template <class T>
double to_double(T v) {
  if constexpr (std::is_same_v<T, __half>) {
    return __half2float(v);
  } else if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __bfloat162float(v);
  } else {
    return static_cast<double>(v);
  }
}

// Relative tolerance of one rounding to T.
template <class T>
double rounding_of() {
  if constexpr (std::is_same_v<T, __half>) return std::ldexp(1.0, -10);
  if constexpr (std::is_same_v<T, __nv_bfloat16>) return std::ldexp(1.0, -7);
  if constexpr (std::is_same_v<T, float>) return 1e-6;
  return 1e-13;
}

// Relative tolerance of sums accumulated in acc_t<T> in short runs.
template <class T>
double sum_tolerance() {
  return std::is_same_v<T, double> ? 1e-11 : 2e-5;
}

inline void expect_close(double got, double want, double rtol, const std::string& what) {
  if (std::isnan(want)) {
    EXPECT_TRUE(std::isnan(got)) << what;
    return;
  }
  EXPECT_NEAR(got, want, rtol * std::max(1.0, std::abs(want))) << what;
}

// A device array that frees itself.
template <class U>
class DeviceArray {
 public:
  explicit DeviceArray(size_t count) : count_(count) {
    EXPECT_EQ(cudaMalloc(&ptr_, std::max<size_t>(count, 1) * sizeof(U)), cudaSuccess);
  }
  explicit DeviceArray(const std::vector<U>& host) : DeviceArray(host.size()) {
    EXPECT_EQ(cudaMemcpy(ptr_, host.data(), host.size() * sizeof(U), cudaMemcpyHostToDevice), cudaSuccess);
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  ~DeviceArray() { cudaFree(ptr_); }

  U* get() const { return static_cast<U*>(ptr_); }
  size_t size() const { return count_; }
  // Every byte set to `byte` (stale data, as a reused allocation holds).
  void fill_bytes(int byte) { EXPECT_EQ(cudaMemset(ptr_, byte, count_ * sizeof(U)), cudaSuccess); }
  std::vector<U> host() const {
    std::vector<U> out(count_);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(out.data(), ptr_, count_ * sizeof(U), cudaMemcpyDeviceToHost), cudaSuccess);
    return out;
  }

 private:
  void* ptr_ = nullptr;
  size_t count_;
};

// One batch in T, with the rounded values in acc_t<T> for the CPU kernels
// (the CPU kernel on acc_t<T> values computes exactly what it computes on T).
template <class T>
struct Batch {
  index_t samples = 0, voxels = 0;
  std::vector<T> pred, target;
  std::vector<acc_t<T>> pred_acc, target_acc;
};

template <class T>
Batch<T> make_batch(index_t samples, index_t voxels, unsigned seed) {
  Batch<T> b;
  b.samples = samples;
  b.voxels = voxels;
  for (index_t s = 0; s < samples; ++s) {
    const auto y = ref::random_volume(voxels, seed + 2 * static_cast<unsigned>(s), 0.1 + 0.01 * (s % 20));
    const auto p = ref::random_volume(voxels, seed + 2 * static_cast<unsigned>(s) + 1, 0.1);
    for (index_t i = 0; i < voxels; ++i) {
      b.target.push_back(from_double<T>(y[i]));
      b.pred.push_back(from_double<T>(0.8 * p[i]));
    }
  }
  for (const T& v : b.pred) b.pred_acc.push_back(static_cast<acc_t<T>>(to_double(v)));
  for (const T& v : b.target) b.target_acc.push_back(static_cast<acc_t<T>>(to_double(v)));
  return b;
}

template <class T>
std::vector<acc_t<T>> cuda_thresholds(const std::vector<T>& x, index_t samples, index_t voxels, int bins) {
  using A = acc_t<T>;
  DeviceArray<T> dx(x);
  DeviceArray<A> out(static_cast<size_t>(samples));
  const size_t bytes = scu::otsu_thresholds_workspace_bytes<T>(samples, voxels, bins);
  DeviceArray<unsigned char> ws(bytes);
  EXPECT_EQ(scu::otsu_thresholds(dx.get(), samples, voxels, bins, out.get(), ws.get(), bytes, cudaStream_t{}),
            cudaSuccess);
  return out.host();
}

template <class T>
std::vector<acc_t<T>> cpu_thresholds(const std::vector<acc_t<T>>& x, index_t samples, index_t voxels, int bins) {
  std::vector<acc_t<T>> out(static_cast<size_t>(samples));
  sc::otsu_thresholds(x.data(), samples, voxels, bins, out.data(), sc::SerialExecutor{});
  return out;
}

// Bit-for-bit equality, NaN equal to NaN.
template <class A>
void expect_same_bits(const std::vector<A>& got, const std::vector<A>& want, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(want[i])) {
      EXPECT_TRUE(std::isnan(got[i])) << what << " [" << i << "]";
    } else {
      EXPECT_EQ(got[i], want[i]) << what << " [" << i << "]";
    }
  }
}

struct ForwardResult {
  std::vector<double> loss;  // in double, from T
  std::vector<double> thresholds;
  std::vector<LossSums> sums;
};

template <class T>
ForwardResult cuda_forward(const Batch<T>& b, const LossOptions& o, const std::vector<acc_t<T>>* given) {
  using A = acc_t<T>;
  DeviceArray<T> p(b.pred), y(b.target);
  const size_t outputs = static_cast<size_t>(spotlight::loss_output_size(o.reduction, b.samples));
  DeviceArray<T> loss(outputs);
  DeviceArray<A> thr(static_cast<size_t>(b.samples));
  DeviceArray<LossSums> sums(static_cast<size_t>(b.samples));
  DeviceArray<A> given_d(given ? *given : std::vector<A>{});
  const size_t bytes = scu::loss_forward_workspace_bytes<T>(b.samples, b.voxels, o.bins, given == nullptr);
  DeviceArray<unsigned char> ws(bytes);
  EXPECT_EQ(scu::loss_forward(p.get(), y.get(), b.samples, b.voxels, given ? given_d.get() : nullptr, o, loss.get(),
                              thr.get(), sums.get(), ws.get(), bytes, cudaStream_t{}),
            cudaSuccess);
  ForwardResult r;
  for (const T& v : loss.host()) r.loss.push_back(to_double(v));
  for (const A& v : thr.host()) r.thresholds.push_back(v);
  r.sums = sums.host();
  return r;
}


}  // namespace spotlight_test
