// CPU outputs that a kernel writes once, in one streaming pass.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>

#include <cstddef>
#include <cstdint>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace spotlight_ops {

// at::empty_like, plus, for outputs of 32 MiB and more on Linux, madvise(MADV_HUGEPAGE) on the
// 2 MiB-aligned interior before the first touch. A fresh 147 MB gradient otherwise costs more in
// 4 KiB first-touch page faults than the kernel's own memory traffic (docs/benchmarks.md); with
// transparent huge pages in "madvise" mode (the common default) this makes them 512x fewer.
// 32 MiB is glibc's largest mmap threshold: blocks this large are always fresh mappings of their
// own (returned to the kernel when freed), never heap memory that was touched before or is shared
// with other blocks. It is advice: where THP is off or the call fails, nothing else changes.
inline at::Tensor empty_streaming_like(const at::Tensor& like) {
  at::Tensor out = at::empty_like(like, at::MemoryFormat::Contiguous);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr std::uintptr_t kHugePage = std::uintptr_t{2} << 20;
  const std::size_t bytes = out.nbytes();
  if (bytes >= 16 * kHugePage) {
    const auto begin = reinterpret_cast<std::uintptr_t>(out.data_ptr());
    const std::uintptr_t first = (begin + kHugePage - 1) & ~(kHugePage - 1);
    const std::uintptr_t last = (begin + bytes) & ~(kHugePage - 1);
    if (last > first) (void)madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
  }
#endif
  return out;
}

}  // namespace spotlight_ops
