"""The Spotlight loss's defaults and option names, defined once for Python (SPEC 3-5, 10-12).

Every Python signature, check and report (functional API, ``SpotlightLoss``, the float64
reference, the presets, the training config and command, the benchmarks) takes its defaults and
its lists of allowed strings from here. The C++ side defines the same values once in
``include/spotlight/core/options.hpp`` (whose list of options writes the op schemas and does
every check); ``tests/python/test_defaults.py`` checks this module against those schemas,
against the SPEC's numbers and against the README and docs tables that state them.

No torch import: ``spotlight --help`` reads these without loading torch.
"""

from __future__ import annotations

LAM = 0.5  # weight of the MSE term; 1 - LAM weighs the Dice term (SPEC 4)
K = -0.95  # tunable-sigmoid steepness, in (-1, 1) (SPEC 3)
EPS = 1e-6  # Dice smoothing (SPEC 4)
BINS = 256  # Otsu histogram bins (SPEC 1)
PER_CHANNEL = False  # pools per sample, not per (sample, channel) (SPEC 5 and 11)

# Allowed strings of each string option of ``spotlight_ops.loss``, by argument name, the default first.
CHOICES = {
    "reduction": ("batch", "mean", "sum", "none"),  # SPEC 5 (plus PyTorch's "sum")
    "mse_normalization": ("foreground", "all"),  # SPEC 4
    "soft_mask": ("clamped", "unclamped", "viscy"),  # SPEC 3 and 11
    "mask_rule": ("greater", "greater_equal"),  # SPEC 2 and 11
    "dice_denominator": ("linear", "squared"),  # SPEC 4 and 11
    "empty_pools": ("spotlight", "viscy"),  # SPEC 4 and 11
    "mse_term": ("masked", "plain"),  # SPEC 4, 11 and 12: the paper's masked MSE, or the MSE over every voxel
}

REDUCTION = CHOICES["reduction"][0]
MSE_NORMALIZATION = CHOICES["mse_normalization"][0]
SOFT_MASK = CHOICES["soft_mask"][0]
MASK_RULE = CHOICES["mask_rule"][0]
DICE_DENOMINATOR = CHOICES["dice_denominator"][0]
EMPTY_POOLS = CHOICES["empty_pools"][0]
MSE_TERM = CHOICES["mse_term"][0]

# Every defaulted argument of ``spotlight_ops.loss`` (and of ``torch.ops.spotlight.loss``).
LOSS_DEFAULTS = {
    "threshold": None,
    "lam": LAM,
    "k": K,
    "eps": EPS,
    "bins": BINS,
    "mse_normalization": MSE_NORMALIZATION,
    "reduction": REDUCTION,
    "mask": None,
    "soft_mask": SOFT_MASK,
    "mask_rule": MASK_RULE,
    "dice_denominator": DICE_DENOMINATOR,
    "empty_pools": EMPTY_POOLS,
    "per_channel": PER_CHANNEL,
    "mse_term": MSE_TERM,
}

# The options proper (numbers, flags and names; not the threshold and mask tensors), by argument name,
# with the Python type the op schema takes each as: float, int, bool or str.
OPTIONS = {name: type(value) for name, value in LOSS_DEFAULTS.items() if value is not None}

# What each option does, in one line (``spotlight train --help``; docs/variants.md has the formulas).
OPTION_HELP = {
    "lam": "weight of the MSE term; 1 - lam weighs the Dice term",
    "k": "tunable-sigmoid steepness in (-1, 1)",
    "eps": "Dice smoothing",
    "bins": "Otsu histogram bins, in [2, 65536] (where T is each sample's Otsu threshold)",
    "mse_normalization": "the masked MSE term's denominator: the foreground count or every voxel",
    "reduction": "how pools combine (batch: one pool of the whole batch)",
    "soft_mask": "the soft mask of P - T",
    "mask_rule": "the foreground: Y > T (greater) or Y >= T (greater_equal)",
    "dice_denominator": "sum(S) + sum(M) + eps (linear) or sum(S^2) + sum(M) + eps (squared)",
    "empty_pools": "what a pool with an empty or full mask contributes",
    "per_channel": "a pool per (sample, channel) instead of per sample",
    "mse_term": "the MSE term: over every voxel (plain, against the collapse of docs/collapse.md) or over the "
                "target's foreground (masked, the paper's)",
}
