"""The Spotlight loss's defaults and option names, defined once for Python (SPEC 3-5, 10, 11).

Every Python signature, check and report (functional API, ``SpotlightLoss``, the fake kernels,
the float64 reference, the presets, the training config, the benchmarks) takes its defaults and
its lists of allowed strings from here. The C++ side defines the same values once in
``include/spotlight/core/options.hpp`` and states them in the op schemas;
``tests/python/test_defaults.py`` checks this module against those schemas, against the SPEC's
numbers and against the README and docs tables that state them.

No torch import: ``spotlight --help`` reads these without loading torch.
"""

from __future__ import annotations

LAM = 0.5  # weight of the MSE term; 1 - LAM weighs the Dice term (SPEC 4)
K = -0.95  # tunable-sigmoid steepness, in (-1, 1) (SPEC 3)
EPS = 1e-6  # Dice smoothing (SPEC 4)
BINS = 256  # Otsu histogram bins (SPEC 1)

# Allowed strings of each option, the default first.
REDUCTIONS = ("batch", "mean", "sum", "none")  # SPEC 5 (plus PyTorch's "sum")
MSE_NORMALIZATIONS = ("foreground", "all")  # SPEC 4
SOFT_MASKS = ("clamped", "unclamped", "viscy")  # SPEC 3 and 11
MASK_RULES = ("greater", "greater_equal")  # SPEC 2 and 11
DICE_DENOMINATORS = ("linear", "squared")  # SPEC 4 and 11
EMPTY_POOLS = ("spotlight", "viscy")  # SPEC 4 and 11

REDUCTION = REDUCTIONS[0]
MSE_NORMALIZATION = MSE_NORMALIZATIONS[0]
SOFT_MASK = SOFT_MASKS[0]
MASK_RULE = MASK_RULES[0]
DICE_DENOMINATOR = DICE_DENOMINATORS[0]
EMPTY_POOL = EMPTY_POOLS[0]

# The string options of ``spotlight_ops.loss`` by argument name.
CHOICES = {
    "reduction": REDUCTIONS,
    "mse_normalization": MSE_NORMALIZATIONS,
    "soft_mask": SOFT_MASKS,
    "mask_rule": MASK_RULES,
    "dice_denominator": DICE_DENOMINATORS,
    "empty_pools": EMPTY_POOLS,
}

# Every defaulted argument of ``spotlight_ops.loss`` (and of ``torch.ops.spotlight.loss``).
LOSS_DEFAULTS = {
    "threshold": None,
    "lam": LAM,
    "k": K,
    "eps": EPS,
    "bins": BINS,
    "mse_normalization": MSE_NORMALIZATION,
    "reduction": REDUCTION,
    "soft_mask": SOFT_MASK,
    "mask": None,
    "mask_rule": MASK_RULE,
    "dice_denominator": DICE_DENOMINATOR,
    "empty_pools": EMPTY_POOL,
    "per_channel": False,
}


def check_choice(name: str, value: str) -> None:
    """Raises ValueError naming ``name`` when ``value`` is not one of :data:`CHOICES` ``[name]``."""
    allowed = CHOICES[name]
    if value not in allowed:
        listed = ", ".join(repr(c) for c in allowed)
        raise ValueError(f"{name} must be one of {listed}, got {value!r}")
