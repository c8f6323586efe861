"""The published Spotlight implementations as named option sets (SPEC section 11).

* ``"spotlight"``: this project's defaults (SPEC sections 2-5): ``Y > T``, the clamped soft
  mask, the linear Dice denominator, one pool per batch, Otsu thresholds per sample.
* ``"authors"``: ``WMSEDiceLoss`` of alxndrkalinin/pytorch_fnet: ``Y > T`` or a given
  weight map, the unclamped soft mask ``(1 + sigma_k(P - T)) / 2``, the squared Dice
  denominator of pytorch-3dunet's ``DiceLoss``, the MSE over all voxels, one pool per batch.
* ``"viscy"``: ``SpotlightLoss`` of mehta-lab/VisCy: ``Y >= T`` or a given mask,
  ``clamp(sigma_k(P - T), 0, 1)``, the linear denominator, per-(sample, channel) pools
  averaged, VisCy's empty-pool policy.

Both published ones train on Otsu-standardized targets and take ``threshold=0.0``; a given
threshold or mask overrides it. docs/variants.md lists every difference and its source.
"""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    "spotlight": {},
    "authors": {
        "threshold": 0.0,
        "soft_mask": "unclamped",
        "dice_denominator": "squared",
        "mse_normalization": "all",
        "reduction": "batch",
    },
    "viscy": {
        "threshold": 0.0,
        "mask_rule": "greater_equal",
        "soft_mask": "viscy",
        "dice_denominator": "linear",
        "empty_pools": "viscy",
        "per_channel": True,
        "reduction": "mean",
    },
}


def preset_options(name: str, **overrides: Any) -> dict[str, Any]:
    """The keyword arguments of ``spotlight_ops.loss`` for preset ``name``, with ``overrides`` applied."""
    if name not in PRESETS:
        raise ValueError(f"spotlight: preset must be one of {', '.join(repr(p) for p in PRESETS)}, got {name!r}")
    return {**PRESETS[name], **overrides}
