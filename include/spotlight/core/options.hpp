// Parameters of the Spotlight loss (SPEC sections 4 and 5), their string
// names as the PyTorch ops spell them, and their validation.
#pragma once

#include <cmath>
#include <string_view>

#include "spotlight/core/error.hpp"

namespace spotlight {

// How the voxels are pooled into losses (SPEC section 5).
enum class Reduction : int {
  kBatch = 0,  // one pool of every voxel of every sample: one scalar
  kMean = 1,   // one pool per sample, the mean of the N losses
  kNone = 2,   // one pool per sample, the N losses
};

// What the masked squared error is divided by (SPEC section 4).
enum class MseNormalization : int {
  kForeground = 0,  // sum(M), the paper
  kAll = 1,         // the voxel count of the pool
};

inline Reduction parse_reduction(std::string_view name) {
  if (name == "batch") return Reduction::kBatch;
  if (name == "mean") return Reduction::kMean;
  if (name == "none") return Reduction::kNone;
  detail::fail("reduction must be one of 'batch', 'mean', 'none', got '", name, "'");
}

inline MseNormalization parse_mse_normalization(std::string_view name) {
  if (name == "foreground") return MseNormalization::kForeground;
  if (name == "all") return MseNormalization::kAll;
  detail::fail("mse_normalization must be 'foreground' or 'all', got '", name, "'");
}

inline void check_bins(long long bins) {
  check(bins >= 2 && bins <= (1 << 24), "bins must be an integer in [2, 16777216], got ", bins);
}
inline void check_k(double k) {
  check(k > -1.0 && k < 1.0, "k must lie in the open interval (-1, 1), got ", k);
}
inline void check_lam(double lam) {
  check(lam >= 0.0 && lam <= 1.0, "lam must lie in [0, 1], got ", lam);
}
// A batch of `samples` samples of `voxels` voxels each; both must be >= 1.
inline void check_batch(long long samples, long long voxels, const char* name) {
  check(samples > 0 && voxels > 0, name, " must hold at least one sample of at least one voxel, got ", samples,
        " samples of ", voxels, " voxels");
}
inline void check_eps(double eps) {
  check(eps >= 0.0 && std::isfinite(eps), "eps must be finite and >= 0, got ", eps);
}

struct LossOptions {
  double lam = 0.5;    // weight of the masked MSE; 1 - lam weighs the Dice term
  double k = -0.95;    // steepness of the tunable sigmoid
  double eps = 1e-6;   // Dice smoothing
  int bins = 256;      // Otsu histogram bins
  MseNormalization mse_normalization = MseNormalization::kForeground;
  Reduction reduction = Reduction::kBatch;

  void validate() const {
    check_lam(lam);
    check_k(k);
    check_eps(eps);
    check_bins(bins);
  }
};

}  // namespace spotlight
