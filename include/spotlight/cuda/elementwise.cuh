// The tunable sigmoid op (SPEC section 3), its backward and the backward's
// derivative on the device: one grid-stride elementwise kernel each, with
// 16-byte vector loads and
// stores when every pointer is 16-byte aligned.
#pragma once

#include <cstdint>

#include "spotlight/core/config.hpp"
#include "spotlight/core/math.hpp"
#include "spotlight/cuda/config.cuh"
#include "spotlight/cuda/numeric.cuh"
#include "spotlight/cuda/policy.cuh"

namespace spotlight::cuda {

template <class T, int kLanes>
struct alignas(sizeof(T) * kLanes) Vector {
  T lane[kLanes];
};

// out[i] = op(in0[i], in1[i]) for i < count (in1 is read only when
// kInputs == 2; unary ops get in0[i] twice), or op(in0[i], in1[i], in2[i])
// when kInputs == 3. Thread t of the grid handles
// vectors t, t + threads, ...; the count % kLanes elements past the last
// whole vector go to the first threads of the grid.
template <int kThreads, int kLanes, int kInputs, class T, class Op>
__global__ void __launch_bounds__(kThreads)
    elementwise_kernel(const T* __restrict__ in0, const T* __restrict__ in1, const T* __restrict__ in2,
                       T* __restrict__ out, index_t count, Op op) {
  using V = Vector<T, kLanes>;
  const index_t vectors = count / kLanes;
  const index_t first = index_t{blockIdx.x} * kThreads + threadIdx.x;
  const index_t stride = index_t{gridDim.x} * kThreads;
  for (index_t v = first; v < vectors; v += stride) {
    const V a = reinterpret_cast<const V*>(in0)[v];
    V b = a;
    if constexpr (kInputs >= 2) b = reinterpret_cast<const V*>(in1)[v];
    V r;
    if constexpr (kInputs == 3) {
      const V c = reinterpret_cast<const V*>(in2)[v];
#pragma unroll
      for (int j = 0; j < kLanes; ++j) r.lane[j] = op(a.lane[j], b.lane[j], c.lane[j]);
    } else {
#pragma unroll
      for (int j = 0; j < kLanes; ++j) r.lane[j] = op(a.lane[j], b.lane[j]);
    }
    reinterpret_cast<V*>(out)[v] = r;
  }
  const index_t tail = vectors * kLanes + first;
  if (tail < count) {
    if constexpr (kInputs == 3) {
      out[tail] = op(in0[tail], in1[tail], in2[tail]);
    } else {
      out[tail] = op(in0[tail], kInputs == 2 ? in1[tail] : in0[tail]);
    }
  }
}

template <class T>
struct TunableSigmoidOp {
  acc_t<T> k;
  __device__ __forceinline__ T operator()(T x, T) const {
    return convert<T>(math::clamped_tunable_sigmoid(convert<acc_t<T>>(x), k));
  }
};

template <class T>
struct TunableSigmoidBackwardOp {
  acc_t<T> k;
  __device__ __forceinline__ T operator()(T grad, T x) const {
    using A = acc_t<T>;
    return convert<T>(convert<A>(grad) * math::clamped_tunable_sigmoid_grad(convert<A>(x), k));
  }
};

template <class T>
struct TunableSigmoidDoubleBackwardOp {
  acc_t<T> k;
  __device__ __forceinline__ T operator()(T grad_out, T grad, T x) const {
    using A = acc_t<T>;
    return convert<T>(convert<A>(grad_out) * convert<A>(grad) * math::clamped_tunable_sigmoid_grad2(convert<A>(x), k));
  }
};

namespace detail {

inline bool vector_aligned(const void* p) {
  return reinterpret_cast<std::uintptr_t>(p) % ElementwisePolicy::kVectorBytes == 0;
}

template <int kInputs, class T, class Op>
cudaError_t launch_elementwise(const T* in0, const T* in1, const T* in2, T* out, index_t count, Op op,
                               cudaStream_t stream) {
  if (count <= 0) return cudaSuccess;
  constexpr int kThreads = ElementwisePolicy::kBlockThreads;
  constexpr int kLanes = ElementwisePolicy::kVectorBytes / static_cast<int>(sizeof(T));
  const bool vectorized = vector_aligned(in0) && vector_aligned(out) && (kInputs < 2 || vector_aligned(in1)) &&
                          (kInputs < 3 || vector_aligned(in2));
  const index_t work = vectorized ? count / kLanes : count;  // vectors (or elements) to spread
  index_t blocks = ceil_div(work > 0 ? work : 1, kThreads);
  blocks = blocks < ElementwisePolicy::kMaxBlocks ? blocks : ElementwisePolicy::kMaxBlocks;
  if (vectorized) {
    elementwise_kernel<kThreads, kLanes, kInputs>
        <<<static_cast<unsigned int>(blocks), kThreads, 0, stream>>>(in0, in1, in2, out, count, op);
  } else {
    elementwise_kernel<kThreads, 1, kInputs>
        <<<static_cast<unsigned int>(blocks), kThreads, 0, stream>>>(in0, in1, in2, out, count, op);
  }
  return launch_error();
}

}  // namespace detail

// out[i] = sigma_k(clamp(x[i], -1, 1)).
template <class T>
cudaError_t tunable_sigmoid(const T* x, index_t count, double k, T* out, cudaStream_t stream) {
  return detail::launch_elementwise<1>(x, x, x, out, count, TunableSigmoidOp<T>{static_cast<acc_t<T>>(k)}, stream);
}

// grad_x[i] = grad[i] * sigma_k'(x[i]) inside (-1, 1), 0 outside.
template <class T>
cudaError_t tunable_sigmoid_backward(const T* grad, const T* x, index_t count, double k, T* grad_x,
                                     cudaStream_t stream) {
  return detail::launch_elementwise<2>(grad, x, x, grad_x, count,
                                       TunableSigmoidBackwardOp<T>{static_cast<acc_t<T>>(k)}, stream);
}

// The backward's derivative in x:
// grad_x[i] = grad_out[i] * grad[i] * sigma_k''(x[i]) inside (-1, 1), 0 outside.
template <class T>
cudaError_t tunable_sigmoid_double_backward(const T* grad_out, const T* grad, const T* x, index_t count, double k,
                                            T* grad_x, cudaStream_t stream) {
  return detail::launch_elementwise<3>(grad_out, grad, x, grad_x, count,
                                       TunableSigmoidDoubleBackwardOp<T>{static_cast<acc_t<T>>(k)}, stream);
}

}  // namespace spotlight::cuda
