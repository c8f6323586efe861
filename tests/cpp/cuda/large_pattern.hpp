// A batch whose Otsu threshold and loss sums are known exactly, whatever its
// size: voxel i holds one of seven (target, prediction) pairs, by i % 7, with
// target in {0, 2} and prediction chosen so that every soft mask value is 0,
// 1/2 or 1 and every squared error a short binary fraction. Every partial sum
// is then exact in float (a thread's tile) and in double (everything after),
// in any order, so the device must produce these sums to the bit. Host and
// device: the CUDA test fills 2^31 voxels with it on the GPU, the CPU side is
// checked against the CPU kernels without a GPU.
#pragma once

#include <cstdint>

#include "spotlight/core/config.hpp"
#include "spotlight/core/loss_terms.hpp"

namespace spotlight_test::pattern {

inline constexpr int kClasses = 7;
// Otsu over a sample whose values are only 0 and 2: every split has the same
// criterion, the first (bin 0) wins, and the threshold is the centre of bin
// 0 of [0, 2] in 256 bins, 1/256 (exact in half, float and double).
inline constexpr double kThreshold = 1.0 / 256;

struct Pair {
  double target, pred;
};

// Class c of a voxel: foreground (target 2) for c < 3. The prediction puts
// pred - T at >= 1 (clamped: soft mask 1), at 0 (soft mask 1/2, gradient of
// the soft mask non-zero) or <= -1 (soft mask 0); squared errors are 0, 1/4
// and 16, so even the CPU kernels' longer float runs add them exactly.
SPOTLIGHT_HD Pair pair_of(int c) {
  switch (c) {
    case 0: return {2.0, 2.0};         // fg, S = 1, no error
    case 1: return {2.0, 1.5};         // fg, S = 1, error 1/4
    case 2: return {2.0, -2.0};        // fg, S = 0, error 16
    case 3: return {0.0, 2.0};         // bg, S = 1
    case 4: return {0.0, kThreshold};  // bg, S = 1/2
    case 5: return {0.0, -2.0};        // bg, S = 0
    default: return {0.0, -1.0};       // bg, S = 0
  }
}

SPOTLIGHT_HD int class_of(std::int64_t i) { return static_cast<int>(i % kClasses); }

// Voxels of class c among [0, voxels).
inline std::int64_t count_of(int c, std::int64_t voxels) {
  return voxels / kClasses + (c < voxels % kClasses ? 1 : 0);
}

// The exact LossSums of one sample of `voxels` voxels.
inline spotlight::LossSums sums_of(std::int64_t voxels) {
  spotlight::LossSums s;
  const double soft[kClasses] = {1.0, 1.0, 0.0, 1.0, 0.5, 0.0, 0.0};
  for (int c = 0; c < kClasses; ++c) {
    const Pair p = pair_of(c);
    const double n = static_cast<double>(count_of(c, voxels));
    const bool fg = p.target > kThreshold;
    const double d = p.target - p.pred;
    s.fg += fg ? n : 0.0;
    s.sq_err += fg ? n * (d * d) : 0.0;
    s.soft += n * soft[c];
    s.soft_fg += fg ? n * soft[c] : 0.0;
  }
  return s;
}

}  // namespace spotlight_test::pattern
