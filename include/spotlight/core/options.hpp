// Parameters of the Spotlight loss (SPEC sections 4, 5 and 11), their string
// names as the PyTorch ops spell them, and their validation.
#pragma once

#include <array>
#include <cmath>
#include <cstddef>
#include <ostream>
#include <string>
#include <string_view>
#include <type_traits>

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

// The MSE term of the loss (SPEC sections 4, 11 and 12).
enum class MseTerm : int {
  kMasked = 0,  // sum(M (Y - P)^2) / D, the paper (D per mse_normalization)
  kPlain = 1,   // sum((Y - P)^2) / n over every voxel of the pool (docs/collapse.md)
};

// Each enum's values and the names the PyTorch ops and the Python package
// spell them with, in the order error messages list them: one table per enum,
// read by parse_option and option_name (the op glue and the schema strings of
// ops/library.cpp use these; nothing else spells a name).
template <class E>
struct NamedValue {
  E value;
  std::string_view name;
};

template <class E>
struct OptionNames;  // argument: the op argument's name; values: the table

template <>
struct OptionNames<Reduction> {
  static constexpr std::string_view argument = "reduction";
  static constexpr std::array<NamedValue<Reduction>, 4> values{{{Reduction::kBatch, "batch"},
                                                                {Reduction::kMean, "mean"},
                                                                {Reduction::kSum, "sum"},
                                                                {Reduction::kNone, "none"}}};
};
template <>
struct OptionNames<MseNormalization> {
  static constexpr std::string_view argument = "mse_normalization";
  static constexpr std::array<NamedValue<MseNormalization>, 2> values{
      {{MseNormalization::kForeground, "foreground"}, {MseNormalization::kAll, "all"}}};
};
template <>
struct OptionNames<SoftMask> {
  static constexpr std::string_view argument = "soft_mask";
  static constexpr std::array<NamedValue<SoftMask>, 3> values{
      {{SoftMask::kClamped, "clamped"}, {SoftMask::kUnclamped, "unclamped"}, {SoftMask::kViscy, "viscy"}}};
};
template <>
struct OptionNames<MaskRule> {
  static constexpr std::string_view argument = "mask_rule";
  static constexpr std::array<NamedValue<MaskRule>, 2> values{
      {{MaskRule::kGreater, "greater"}, {MaskRule::kGreaterEqual, "greater_equal"}}};
};
template <>
struct OptionNames<DiceDenominator> {
  static constexpr std::string_view argument = "dice_denominator";
  static constexpr std::array<NamedValue<DiceDenominator>, 2> values{
      {{DiceDenominator::kLinear, "linear"}, {DiceDenominator::kSquared, "squared"}}};
};
template <>
struct OptionNames<EmptyPools> {
  static constexpr std::string_view argument = "empty_pools";
  static constexpr std::array<NamedValue<EmptyPools>, 2> values{
      {{EmptyPools::kSpotlight, "spotlight"}, {EmptyPools::kViscy, "viscy"}}};
};
template <>
struct OptionNames<MseTerm> {
  static constexpr std::string_view argument = "mse_term";
  static constexpr std::array<NamedValue<MseTerm>, 2> values{{{MseTerm::kMasked, "masked"}, {MseTerm::kPlain, "plain"}}};
};

// The name of an enum value, as the ops spell it.
template <class E>
constexpr std::string_view option_name(E value) {
  for (const auto& v : OptionNames<E>::values)
    if (v.value == value) return v.name;
  return "?";  // unreachable for a value of the enum
}

// The allowed names as error messages list them: "'a' or 'b'", or
// "one of 'a', 'b', 'c'".
template <class E>
std::string allowed_names() {
  constexpr auto& values = OptionNames<E>::values;
  std::string out = values.size() == 2 ? "" : "one of ";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out += values.size() == 2 ? " or " : ", ";
    out += "'";
    out += values[i].name;
    out += "'";
  }
  return out;
}

// The enum value of `name`; spotlight::Error naming the argument and the
// allowed names otherwise, e.g. "reduction must be one of 'batch', 'mean',
// 'sum', 'none', got 'max'".
template <class E>
E parse_option(std::string_view name) {
  for (const auto& v : OptionNames<E>::values)
    if (v.name == name) return v.value;
  detail::fail(OptionNames<E>::argument, " must be ", allowed_names<E>(), ", got '", name, "'");
}

// The defaults of every loss parameter (SPEC sections 3-5 and 11): LossOptions
// below, the op schemas (ops/library.cpp) and the C++ tests read them here.
namespace defaults {
inline constexpr double kLam = 0.5;    // weight of the MSE term
inline constexpr double kK = -0.95;    // steepness of the tunable sigmoid: a steep soft step at T
inline constexpr double kEps = 1e-6;   // Dice smoothing
inline constexpr int kBins = 256;      // Otsu histogram bins (scikit-image's default)
inline constexpr MseNormalization kMseNormalization = MseNormalization::kForeground;
inline constexpr Reduction kReduction = Reduction::kBatch;
inline constexpr SoftMask kSoftMask = SoftMask::kClamped;
inline constexpr MaskRule kMaskRule = MaskRule::kGreater;
inline constexpr DiceDenominator kDiceDenominator = DiceDenominator::kLinear;
inline constexpr EmptyPools kEmptyPools = EmptyPools::kSpotlight;
inline constexpr bool kPerChannel = false;  // pools per sample, not per (sample, channel)
inline constexpr MseTerm kMseTerm = MseTerm::kMasked;  // the paper's (SPEC 4)
}  // namespace defaults

// The most Otsu bins: one bin per grey level of 16-bit data, the finest
// histogram microscopy data has. Each sample's histogram holds `bins` counts
// (the whole batch's at once on the GPU), so the bound also bounds Otsu's
// memory: 65536 bins cost 256 KiB to 512 KiB per sample instead of the 64 to
// 128 MiB of 2^24 bins (which made 200 samples ask for 26.8 GB), and the
// criterion scan over the bins stays short (docs/design.md).
inline constexpr long long kMaxBins = 1 << 16;

// A value as an error message shows it: the value, or `shown` when given
// (the text a caller wrote that did not parse as a value).
template <class V>
struct Shown {
  V value;
  std::string_view shown;
  friend std::ostream& operator<<(std::ostream& out, const Shown& s) {
    if (!s.shown.empty()) return out << s.shown;
    return out << s.value;
  }
};

inline void check_bins(long long bins, std::string_view shown = {}) {
  check(bins >= 2 && bins <= kMaxBins, "bins must be an integer in [2, ", kMaxBins, "], got ",
        Shown<long long>{bins, shown});
}
inline void check_k(double k, std::string_view shown = {}) {
  check(k > -1.0 && k < 1.0, "k must lie in the open interval (-1, 1), got ", Shown<double>{k, shown});
}
inline void check_lam(double lam, std::string_view shown = {}) {
  check(lam >= 0.0 && lam <= 1.0, "lam must lie in [0, 1], got ", Shown<double>{lam, shown});
}
inline void check_eps(double eps, std::string_view shown = {}) {
  check(eps >= 0.0 && std::isfinite(eps), "eps must be finite and >= 0, got ", Shown<double>{eps, shown});
}
// A batch of `samples` samples of `voxels` voxels each; both must be >= 1.
inline void check_batch(long long samples, long long voxels, const char* name) {
  check(samples > 0 && voxels > 0, name, " must hold at least one sample of at least one voxel, got ", samples,
        " samples of ", voxels, " voxels");
}

struct LossOptions {
  double lam = defaults::kLam;  // weight of the MSE term; 1 - lam weighs the Dice term
  double k = defaults::kK;      // steepness of the tunable sigmoid
  double eps = defaults::kEps;  // Dice smoothing
  int bins = defaults::kBins;   // Otsu histogram bins
  MseNormalization mse_normalization = defaults::kMseNormalization;  // of the masked term
  Reduction reduction = defaults::kReduction;
  // The published variants (SPEC section 11); the defaults are sections 2-5.
  SoftMask soft_mask = defaults::kSoftMask;
  MaskRule mask_rule = defaults::kMaskRule;
  DiceDenominator dice_denominator = defaults::kDiceDenominator;
  EmptyPools empty_pools = defaults::kEmptyPools;
  // Pools per (sample, channel) of [N, C, ...] batches: the op glue reads it
  // and hands the kernels N * C pools; the kernels themselves see pools only.
  bool per_channel = defaults::kPerChannel;
  MseTerm mse_term = defaults::kMseTerm;
  // A given foreground mask, [samples * voxels] bools on the device of the
  // kernels (a precomputed weight map), or null for M from mask_rule. T still
  // centres the soft mask.
  const bool* mask = nullptr;
  // Whether the forward also counts the voxels predicted above T
  // (LossSums::above, for the collapse guard): one accumulator more per voxel
  // in the sums pass, so only the callers that read it ask (not an option of
  // the loss: the op _loss_and_sums sets it).
  bool count_above = false;

  // The defaults of SPEC 11's per-voxel options (either MSE term): the
  // kernels then run their specialised default path.
  bool default_variant() const {
    return mask == nullptr && soft_mask == defaults::kSoftMask && mask_rule == defaults::kMaskRule &&
           dice_denominator == defaults::kDiceDenominator && empty_pools == defaults::kEmptyPools;
  }

  void validate() const {
    check_lam(lam);
    check_k(k);
    check_eps(eps);
    check_bins(bins);
    // Without the clamp, k - 2k|x| + 1 stays positive for every x only when k <= 0.
    check(soft_mask == SoftMask::kClamped || k <= 0.0, "k must be <= 0 for soft_mask '", option_name(soft_mask),
          "' (the sigmoid of an unclamped P - T has a pole for k > 0), got ", k);
  }
};

// One option of the loss: its argument name, its field, whether the op
// schemas take it by keyword only, and the check of a number (null for the
// enums and flags, whose parsing is their check).
template <class V>
struct OptionField {
  using Checked = std::conditional_t<std::is_same_v<V, int>, long long, V>;  // an int is checked before narrowing
  using Field = V LossOptions::*;
  std::string_view name;
  Field field;
  bool keyword_only;
  void (*check)(Checked, std::string_view) = nullptr;
};

// Every option of the loss, once, in the order of the op schemas. The op
// schemas (ops/library.cpp), the op glue that reads, packs and parses options
// (ops/loss/loss_options.h, core/option_text.hpp) and the tests iterate this
// list: adding an option is a field of LossOptions, its line here, its
// default, and its use in the kernels.
template <class F>
constexpr void for_each_option(F&& f) {
  f(OptionField<double>{"lam", &LossOptions::lam, false, &check_lam});
  f(OptionField<double>{"k", &LossOptions::k, false, &check_k});
  f(OptionField<double>{"eps", &LossOptions::eps, false, &check_eps});
  f(OptionField<int>{"bins", &LossOptions::bins, false, &check_bins});
  f(OptionField<MseNormalization>{"mse_normalization", &LossOptions::mse_normalization, false});
  f(OptionField<Reduction>{"reduction", &LossOptions::reduction, false});
  f(OptionField<SoftMask>{"soft_mask", &LossOptions::soft_mask, true});
  f(OptionField<MaskRule>{"mask_rule", &LossOptions::mask_rule, true});
  f(OptionField<DiceDenominator>{"dice_denominator", &LossOptions::dice_denominator, true});
  f(OptionField<EmptyPools>{"empty_pools", &LossOptions::empty_pools, true});
  f(OptionField<bool>{"per_channel", &LossOptions::per_channel, true});
  f(OptionField<MseTerm>{"mse_term", &LossOptions::mse_term, true});
}

}  // namespace spotlight
