// Parameters of the Spotlight loss (SPEC sections 4, 5 and 11), their string
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
  kSum = 3,    // one pool per sample, the sum of the N losses
};

// What the masked squared error is divided by (SPEC section 4).
enum class MseNormalization : int {
  kForeground = 0,  // sum(M), the paper
  kAll = 1,         // the voxel count of the pool
};

// The soft mask S of the prediction (SPEC sections 3 and 11), x = P - T.
enum class SoftMask : int {
  kClamped = 0,    // (1 + sigma_k(clamp(x, -1, 1))) / 2, the default
  kUnclamped = 1,  // (1 + sigma_k(x)) / 2, the authors' code; needs k <= 0
  kViscy = 2,      // clamp(sigma_k(x), 0, 1), VisCy; needs k <= 0
};

// How the foreground mask M follows from the target (SPEC sections 2 and 11),
// unless a mask is given (LossOptions::mask).
enum class MaskRule : int {
  kGreater = 0,       // M = Y > T, the default
  kGreaterEqual = 1,  // M = Y >= T (VisCy)
};

// The soft term of the Dice denominator (SPEC section 11).
enum class DiceDenominator : int {
  kLinear = 0,   // sum(S) + sum(M) + eps, the default
  kSquared = 1,  // sum(S^2) + sum(M) + eps (V-Net, pytorch-3dunet; the authors)
};

// What a pool with an empty (or full) mask contributes (SPEC sections 4 and 11).
enum class EmptyPools : int {
  kSpotlight = 0,  // MMSE 0 when D = 0; Dice as its formula
  kViscy = 1,      // no foreground: plain MSE over the pool; MMSE denominator D + eps;
                   // Dice averaged over the pools whose mask is neither empty nor full
};

inline Reduction parse_reduction(std::string_view name) {
  if (name == "batch") return Reduction::kBatch;
  if (name == "mean") return Reduction::kMean;
  if (name == "sum") return Reduction::kSum;
  if (name == "none") return Reduction::kNone;
  detail::fail("reduction must be one of 'batch', 'mean', 'sum', 'none', got '", name, "'");
}

inline SoftMask parse_soft_mask(std::string_view name) {
  if (name == "clamped") return SoftMask::kClamped;
  if (name == "unclamped") return SoftMask::kUnclamped;
  if (name == "viscy") return SoftMask::kViscy;
  detail::fail("soft_mask must be one of 'clamped', 'unclamped', 'viscy', got '", name, "'");
}

inline MaskRule parse_mask_rule(std::string_view name) {
  if (name == "greater") return MaskRule::kGreater;
  if (name == "greater_equal") return MaskRule::kGreaterEqual;
  detail::fail("mask_rule must be 'greater' or 'greater_equal', got '", name, "'");
}

inline DiceDenominator parse_dice_denominator(std::string_view name) {
  if (name == "linear") return DiceDenominator::kLinear;
  if (name == "squared") return DiceDenominator::kSquared;
  detail::fail("dice_denominator must be 'linear' or 'squared', got '", name, "'");
}

inline EmptyPools parse_empty_pools(std::string_view name) {
  if (name == "spotlight") return EmptyPools::kSpotlight;
  if (name == "viscy") return EmptyPools::kViscy;
  detail::fail("empty_pools must be 'spotlight' or 'viscy', got '", name, "'");
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
  // The published variants (SPEC section 11); the defaults are sections 2-5.
  SoftMask soft_mask = SoftMask::kClamped;
  MaskRule mask_rule = MaskRule::kGreater;
  DiceDenominator dice_denominator = DiceDenominator::kLinear;
  EmptyPools empty_pools = EmptyPools::kSpotlight;
  // A given foreground mask, [samples * voxels] bools on the device of the
  // kernels (a precomputed weight map), or null for M from mask_rule. T still
  // centres the soft mask.
  const bool* mask = nullptr;

  // Sections 2-5 exactly: the kernels then run their specialised default path.
  bool default_variant() const {
    return mask == nullptr && soft_mask == SoftMask::kClamped && mask_rule == MaskRule::kGreater &&
           dice_denominator == DiceDenominator::kLinear && empty_pools == EmptyPools::kSpotlight;
  }

  void validate() const {
    check_lam(lam);
    check_k(k);
    check_eps(eps);
    check_bins(bins);
    // Without the clamp, k - 2k|x| + 1 stays positive for every x only when k <= 0.
    check(soft_mask == SoftMask::kClamped || k <= 0.0, "k must be <= 0 for soft_mask '",
          soft_mask == SoftMask::kUnclamped ? "unclamped" : "viscy",
          "' (the sigmoid of an unclamped P - T has a pole for k > 0), got ", k);
  }
};

}  // namespace spotlight
