// How a batch of `samples` x `voxels` is cut into tasks, the lane-blocked
// summation every reduction kernel uses, and the strips the kernels compute
// in.
//
// Vectorisation. The kernels are plain C++ that GCC and Clang vectorise at
// -O3 for the x86-64 baseline (SSE2) and wider targets alike. Per-element
// work is done in strips of kStrip elements, one simple loop per step over
// the strip through small arrays: a loop holding a clamp and then a division
// of the clamped value would otherwise be split by the compiler into
// branches (it folds the division for the clamped constants), and a division
// under a branch cannot be vectorised without -fno-trapping-math. For the
// same reason a value kept or zeroed by a mask goes through keep_if.
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "spotlight/core/config.hpp"
#include "spotlight/cpu/isa.hpp"

namespace spotlight::cpu {

// Each sample is cut into equal chunks; one chunk is one task. The cut
// depends on the shape alone (never on the thread count), which is what
// makes every sum deterministic.
struct Partition {
  static constexpr index_t kMinChunk = index_t{1} << 15;  // voxels: amortises a task
  static constexpr index_t kMaxChunks = 1024;             // per sample: bounds scratch

  index_t samples = 0, voxels = 0, chunks = 1, chunk = 0;

  Partition(index_t samples_, index_t voxels_, index_t max_chunks = kMaxChunks)
      : samples(samples_), voxels(voxels_) {
    chunks = std::clamp<index_t>((voxels + kMinChunk - 1) / kMinChunk, 1, std::max<index_t>(1, max_chunks));
    chunk = (voxels + chunks - 1) / chunks;
  }
  index_t tasks() const { return samples * chunks; }
  index_t sample_of(index_t task) const { return task / chunks; }
  // Voxel range [begin, end) of a task, as offsets into the whole batch.
  index_t begin(index_t task) const {
    return sample_of(task) * voxels + std::min(voxels, (task % chunks) * chunk);
  }
  index_t end(index_t task) const {
    return sample_of(task) * voxels + std::min(voxels, (task % chunks + 1) * chunk);
  }
};

// Whether the kernels that pass over a sample several times (Otsu: range,
// then histogram; the loss with Otsu: a third pass) give each sample whole to
// one task, which then re-reads it from its core's cache, instead of running
// each pass over all chunks of all samples. Either way every chunk's partial
// results are computed alike and combined in chunk order: the choice changes
// speed, never a bit of the result. Whole samples when they fit in a typical
// L2 cache and are enough to keep every one of the executor's `threads`
// busy (see executor_threads; tests pass executors of every thread count to
// force each path).
template <class T>
inline bool whole_samples(index_t samples, index_t voxels, index_t threads) {
  constexpr index_t kCacheBytes = index_t{1} << 20;
  return samples >= threads && voxels * static_cast<index_t>(sizeof(T)) <= kCacheBytes;
}

// `#pragma GCC unroll 1` where the compiler knows it (nvcc's front end,
// which sees these headers in CUDA tests, does not): keeps a short loop over
// lanes a loop until the vectoriser has seen it (see range_lanes).
#if (defined(__GNUC__) || defined(__clang__)) && !defined(__CUDACC__)
#define SPOTLIGHT_NO_UNROLL _Pragma("GCC unroll 1")
#else
#define SPOTLIGHT_NO_UNROLL
#endif

// Per-element work runs in strips of this many elements (see the top).
inline constexpr int kStrip = 64;

// m ? x : 0, by masking x's bits. The same value, but the compiler cannot
// move the computation of x under a branch (which, for a multiplication or a
// division, keeps the loop from being vectorised without -fno-trapping-math).
template <class A>
inline A keep_if(bool m, A x) {
  using U = std::conditional_t<sizeof(A) == 4, std::uint32_t, std::uint64_t>;
  static_assert(sizeof(A) == sizeof(U));
  return std::bit_cast<A>(std::bit_cast<U>(x) & (U{0} - static_cast<U>(m)));
}

// Element values of type A from a strip of x: x itself when T is A, else
// converted into `buf` (float16 and bfloat16 converters are scalar code, which
// then stays out of the vectorised loops).
template <class A, class T>
inline const A* strip_values(const T* x, int n, A* buf) {
  if constexpr (std::is_same_v<T, A>) {
    (void)n;
    (void)buf;
    return x;
  } else {
    for (int j = 0; j < n; ++j) buf[j] = static_cast<A>(x[j]);
    return buf;
  }
}

// The summation scheme: F values per element are summed in `A` (float for
// float inputs) in kLanes independent lanes over blocks of kBlock elements:
// element `block + j` goes to lane j % kLanes, except the last (block length
// % kLanes) elements of a block, which go to lane 0. Block totals are added in
// double (lane 0 first), so the float error is bounded by the block length
// however long the range.
inline constexpr int kLanes = 16;
inline constexpr index_t kBlock = 4096;
static_assert(kBlock % kStrip == 0 && kStrip % kLanes == 0);

// Calls body(n) for the strip at i of a range ending at end, n = min(kStrip,
// end - i), with n the constant kStrip for a full strip (every strip but a
// range's last): inlined, the strip's loops then compile with no checks for
// a shorter strip. The same operations in the same order either way.
template <class Body>
inline void strip_at(index_t i, index_t end, const Body& body) {
  if (end - i >= kStrip)
    body(kStrip);
  else
    body(static_cast<int>(end - i));
}

// Sums over [begin, end) into out[0..F) (added to what is there).
// `strip(i, n, v)` writes the F values of elements i .. i + n - 1 (n <=
// kStrip) into v[f][0 .. n).
template <class A, int F, class Strip>
inline void lane_sums_strips(index_t begin, index_t end, const Strip& strip, double* out) {
  A v[F][kStrip];
  for (index_t block = begin; block < end; block += kBlock) {
    const index_t stop = std::min(end, block + kBlock);
    A acc[F][kLanes] = {};
    for (index_t i = block; i < stop; i += kStrip) {
      strip_at(i, stop, [&](const int n) {
        strip(i, n, v);
        const int full = n / kLanes * kLanes;
        for (int f = 0; f < F; ++f) {
          for (int j = 0; j < full; j += kLanes)
            for (int l = 0; l < kLanes; ++l) acc[f][l] += v[f][j + l];
          for (int j = full; j < n; ++j) acc[f][0] += v[f][j];
        }
      });
    }
    for (int f = 0; f < F; ++f) {
      double s = 0;
      for (int l = 0; l < kLanes; ++l) s += static_cast<double>(acc[f][l]);
      out[f] += s;
    }
  }
}

// A strip functor (see lane_sums_strips) from a per-element functor:
// `element(i, v)` writes the F values of element i into v[0 .. F). For
// elements with no clamp-then-divide in them.
template <class A, int F, class Element>
struct ByElement {
  Element element;
  void operator()(index_t i, int n, A (*v)[kStrip]) const {
    for (int j = 0; j < n; ++j) {
      A e[F];
      element(i + j, e);
      for (int f = 0; f < F; ++f) v[f][j] = e[f];
    }
  }
};
template <class A, int F, class Element>
inline ByElement<A, F, Element> by_element(const Element& element) {
  return {element};
}

// lane_sums_strips with a per-element functor.
template <class A, int F, class Element>
inline void lane_sums(index_t begin, index_t end, const Element& element, double* out) {
  lane_sums_strips<A, F>(begin, end, by_element<A, F>(element), out);
}

// out[s * F + f] = the sum over sample s's chunks, in chunk order, of
// partial[task * F + f].
template <int F>
inline void combine_chunks(const Partition& part, const double* partial, double* out) {
  for (index_t s = 0; s < part.samples; ++s) {
    for (int f = 0; f < F; ++f) {
      double total = 0;
      for (index_t c = 0; c < part.chunks; ++c) total += partial[(s * part.chunks + c) * F + f];
      out[s * F + f] = total;
    }
  }
}

// Per-sample sums of F values per element: out[s * F + f]. `strip_of(s)`
// returns the strip functor of sample s (see lane_sums_strips; it captures
// the sample's threshold, say). Chunks are summed in parallel, then combined
// in chunk order.
template <class A, int F, class Exec, class StripOf>
inline void per_sample_sums(index_t samples, index_t voxels, const Exec& exec, const StripOf& strip_of,
                            double* out) {
  const Partition part(samples, voxels);
  std::vector<double> partial(static_cast<size_t>(part.tasks() * F), 0.0);
  exec(part.tasks(), [&](index_t t) {
    with_best_isa([&] {
      lane_sums_strips<A, F>(part.begin(t), part.end(t), strip_of(part.sample_of(t)), partial.data() + t * F);
    });
  });
  combine_chunks<F>(part, partial.data(), out);
}

// Runs strip(i, n) over [0, count) in strips of at most kStrip elements,
// split into tasks.
template <class Exec, class Strip>
inline void parallel_strips(index_t count, const Exec& exec, const Strip& strip) {
  const Partition part(1, count);
  exec(part.tasks(), [&](index_t t) {
    with_best_isa([&] {
      for (index_t i = part.begin(t), end = part.end(t); i < end; i += kStrip)
        strip_at(i, end, [&](const int n) { strip(i, n); });
    });
  });
}

// Runs strip(i, n) over every task of a batch of samples (the backward
// passes); make(sample) builds a sample's strip.
template <class Exec, class Make>
void backward_strips(index_t samples, index_t voxels, const Exec& exec, const Make& make) {
  const Partition part(samples, voxels);
  exec(part.tasks(), [&](index_t task) {
    const auto strip = make(part.sample_of(task));
    with_best_isa([&] {
      for (index_t i = part.begin(task), end = part.end(task); i < end; i += kStrip)
        strip_at(i, end, [&](const int n) { strip(i, n); });
    });
  });
}

}  // namespace spotlight::cpu
