// The shapes and synthetic data shared by bench_cpu.cpp and bench_cuda.cu.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "spotlight/core/config.hpp"

namespace spotlight_bench {

struct Shape {
  const char* name;
  spotlight::index_t samples, voxels;
};

// The training batch 24x1x32x64x64, a full volume 1x1x64x624x924, and 1x1x60x256x256.
constexpr Shape kShapes[] = {
    {"24x1x32x64x64", 24, 32 * 64 * 64},
    {"1x1x64x624x924", 1, 64 * 624 * 924},
    {"1x1x60x256x256", 1, 60 * 256 * 256},
};

inline std::uint32_t next(std::uint64_t& s) {
  s = s * 6364136223846793005ULL + 1442695040888963407ULL;
  return static_cast<std::uint32_t>(s >> 32);
}
inline float uniform(std::uint64_t& s) { return static_cast<float>(next(s) >> 8) * (1.0f / 16777216.0f); }

// A target like a standardized fluorescence volume: dim noisy background,
// about a fifth of the voxels in bright blobs; the prediction is the target
// plus noise. Deterministic, and cheap to make for 37M voxels.
inline void make_data(const Shape& shape, std::vector<float>& pred, std::vector<float>& target) {
  const std::size_t n = static_cast<std::size_t>(shape.samples * shape.voxels);
  pred.resize(n);
  target.resize(n);
  std::uint64_t s = 12345;
  for (std::size_t i = 0; i < n; ++i) {
    const float noise = uniform(s) + uniform(s) + uniform(s) - 1.5f;  // roughly normal, sd 0.5
    const bool blob = ((i / 97) * 2654435761u) % 5 == 0;                // runs of 97 voxels
    const float y = (blob ? 1.5f : -0.4f) + 0.3f * noise;
    target[i] = y;
    pred[i] = y + 0.4f * (uniform(s) - 0.5f);
  }
}

}  // namespace spotlight_bench
