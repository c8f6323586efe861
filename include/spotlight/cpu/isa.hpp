// Function-level multiversioning of the CPU kernels: each task's work is
// compiled twice, for the x86-64 baseline (SSE2) and for AVX2, and runs as
// AVX2 where the CPU has it. The kernels are plain C++ written for the
// vectoriser (see partition.hpp); the AVX2 copy only gives it 8-wide
// vectors. Results are the same bits on either path: every lane, sum order
// and rounding is fixed by the source, and the AVX2 target leaves out FMA, so
// no multiply-add is contracted into one rounding on one path only.
//
// SPOTLIGHT_CPU_ISA=baseline in the environment forces the baseline path (for
// tests and comparisons). Define SPOTLIGHT_CPU_NO_DISPATCH to compile the
// baseline path only; a build whose baseline already has AVX2 (-mavx2,
// -march=x86-64-v3 or newer) has one path, the baseline.
#pragma once

#include <cstdlib>
#include <cstring>

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(__AVX2__) && !defined(SPOTLIGHT_CPU_NO_DISPATCH)
#define SPOTLIGHT_CPU_AVX2_DISPATCH 1
#else
#define SPOTLIGHT_CPU_AVX2_DISPATCH 0
#endif

namespace spotlight::cpu {

#if SPOTLIGHT_CPU_AVX2_DISPATCH
// f() with everything it calls inlined into an AVX2 function.
template <class F>
[[gnu::target("avx2"), gnu::flatten]] inline void run_avx2(const F& f) {
  f();
}

inline bool cpu_has_avx2() {
  static const bool yes = [] {
    const char* isa = std::getenv("SPOTLIGHT_CPU_ISA");
    if (isa && std::strcmp(isa, "baseline") == 0) return false;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") != 0;
  }();
  return yes;
}
#endif

// Runs f() on the widest path the CPU has. Call it inside a task, around
// the task's loops: the dispatch is one predictable branch per task.
template <class F>
inline void with_best_isa(const F& f) {
#if SPOTLIGHT_CPU_AVX2_DISPATCH
  if (cpu_has_avx2()) {
    run_avx2(f);
    return;
  }
#endif
  f();
}

}  // namespace spotlight::cpu
