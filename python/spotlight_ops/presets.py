"""Named option sets of the Spotlight loss (SPEC sections 11 and 12).

* ``"spotlight"``: the paper's loss as SPEC sections 2-5 define it (the defaults of ``loss`` and
  ``SpotlightLoss()``): ``Y > T``, the masked MSE, the clamped soft mask, the linear Dice
  denominator, one pool per batch, Otsu thresholds per sample.
* ``"trained"``: the objective ``spotlight train`` minimises by default (SPEC 12,
  docs/collapse.md): ``lam * MSE + (1 - lam) * Dice`` with the MSE over every voxel
  (``mse_term="plain"``), lam 0.5, k -0.95, ``T = 0`` on Otsu-standardized targets
  (``spotlight_ops.otsu_standardize``). The paper's loss collapses to an all-foreground prediction
  on the real data of docs/collapse.md; this one trains.
* ``"authors"``: ``WMSEDiceLoss`` of alxndrkalinin/pytorch_fnet: ``Y > T`` or a given
  weight map, the unclamped soft mask ``(1 + sigma_k(P - T)) / 2``, the squared Dice
  denominator of pytorch-3dunet's ``DiceLoss``, the MSE over all voxels, one pool per batch.
* ``"viscy"``: ``SpotlightLoss`` of mehta-lab/VisCy: ``Y >= T`` or a given mask,
  ``clamp(sigma_k(P - T), 0, 1)``, the linear denominator, per-(sample, channel) pools
  averaged, VisCy's empty-pool policy.

The published ones train on Otsu-standardized targets and take ``threshold=0.0``, as
``"trained"`` does; a given threshold or mask overrides it. docs/variants.md lists every
difference and its source.
"""

from __future__ import annotations

from typing import Any

TRAINED = "trained"  # the preset of spotlight train's default objective

PRESETS: dict[str, dict[str, Any]] = {
    "spotlight": {},
    TRAINED: {
        "threshold": 0.0,
        "mse_term": "plain",
    },
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


def check_preset(name: str) -> None:
    """A ValueError naming the presets when ``name`` is not one."""
    if name not in PRESETS:
        raise ValueError(f"spotlight: preset must be one of {', '.join(repr(p) for p in PRESETS)}, got {name!r}")


def preset_options(name: str, **overrides: Any) -> dict[str, Any]:
    """The keyword arguments of ``spotlight_ops.loss`` for preset ``name``, with ``overrides`` applied."""
    check_preset(name)
    return {**PRESETS[name], **overrides}
