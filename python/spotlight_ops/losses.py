"""``SpotlightLoss``: the Spotlight loss as an ``nn.Module`` criterion."""

# No `from __future__ import annotations`: TorchScript reads the attribute annotation below.
from typing import Any, Optional, Union

import torch
from torch import Tensor, nn

from . import functional as F
from .defaults import (BINS, DICE_DENOMINATOR, EMPTY_POOL, EPS, K, LAM, MASK_RULE, MSE_NORMALIZATION, REDUCTION,
                       SOFT_MASK, check_choice)
from .presets import preset_options


class SpotlightLoss(nn.Module):
    r"""Foreground-aware loss for virtual staining (Spotlight).

    .. math::
        L = \lambda \frac{\sum_i M_i (Y_i - P_i)^2}{\sum_i M_i}
            + (1 - \lambda) \Big(1 - \frac{2 \sum_i S_i M_i}{\sum_i S_i + \sum_i M_i + \epsilon}\Big)

    with the foreground ``M = Y > T`` (T: per-sample Otsu threshold of the target,
    or ``threshold``) and the soft mask ``S = (1 + sigma_k(clamp(P - T, -1, 1))) / 2``,
    ``sigma_k(x) = (x - kx) / (k - 2k|x| + 1)``. The published variants (soft masks, mask
    rule, given masks, squared Dice denominator, VisCy's empty pools, per-channel pools)
    are the arguments of :func:`spotlight_ops.loss`; :meth:`from_preset` names whole sets.

    Example::

        criterion = SpotlightLoss()          # lam=0.5, k=-0.95, Otsu per sample
        loss = criterion(model(signal), target)
        loss.backward()

        criterion = SpotlightLoss.from_preset("viscy")   # VisCy's SpotlightLoss, threshold 0
        loss = criterion(pred, target, mask=fg_mask)      # a precomputed mask, optional

    For Otsu-standardized targets (``spotlight_ops.otsu_standardize``) pass
    ``threshold=0.0``: the foreground then starts at 0 and no histogram is needed.
    The module is scriptable (``torch.jit.script``) and runs under ``torch.autocast``
    (in float32, returning float32, as PyTorch's losses do).
    """

    threshold: Optional[Union[float, Tensor]]

    def __init__(self, lam: float = LAM, k: float = K, eps: float = EPS, bins: int = BINS,
                 threshold: Optional[Union[float, Tensor]] = None, mse_normalization: str = MSE_NORMALIZATION,
                 reduction: str = REDUCTION, soft_mask: str = SOFT_MASK, mask_rule: str = MASK_RULE,
                 dice_denominator: str = DICE_DENOMINATOR, empty_pools: str = EMPTY_POOL,
                 per_channel: bool = False) -> None:
        super().__init__()
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"lam must lie in [0, 1], got {lam}")
        if not -1.0 < k < 1.0:
            raise ValueError(f"k must lie in the open interval (-1, 1), got {k}")
        if not eps >= 0.0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        if int(bins) != bins or bins < 2:
            raise ValueError(f"bins must be an integer >= 2, got {bins}")
        options = {"reduction": reduction, "mse_normalization": mse_normalization, "soft_mask": soft_mask,
                   "mask_rule": mask_rule, "dice_denominator": dice_denominator, "empty_pools": empty_pools}
        for name, value in options.items():
            check_choice(name, value)
        if soft_mask != "clamped" and k > 0.0:
            raise ValueError(f"k must be <= 0 for soft_mask {soft_mask!r}, got {k}")
        if isinstance(threshold, int) and not isinstance(threshold, bool):
            threshold = float(threshold)
        self.lam, self.k, self.eps, self.bins = float(lam), float(k), float(eps), int(bins)
        self.threshold = threshold
        self.mse_normalization, self.reduction = mse_normalization, reduction
        self.soft_mask, self.mask_rule, self.dice_denominator = soft_mask, mask_rule, dice_denominator
        self.empty_pools, self.per_channel = empty_pools, bool(per_channel)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "SpotlightLoss":
        """The loss of a published implementation: ``"spotlight"``, ``"authors"`` or ``"viscy"``
        (see :mod:`spotlight_ops.presets`); ``overrides`` replace single options, e.g.
        ``SpotlightLoss.from_preset("viscy", threshold=None)`` for Otsu thresholds."""
        return cls(**preset_options(name, **overrides))

    def forward(self, pred: Tensor, target: Tensor, threshold: Optional[Union[float, Tensor]] = None,
                mask: Optional[Tensor] = None) -> Tensor:
        """Loss of ``pred`` against ``target``; ``threshold`` overrides the module's; ``mask``:
        a given bool foreground mask of the target's shape (in place of ``Y > T``)."""
        t = self.threshold if threshold is None else threshold
        return F.loss(pred, target, t, self.lam, self.k, self.eps, self.bins, self.mse_normalization,
                      self.reduction, self.soft_mask, mask, self.mask_rule, self.dice_denominator, self.empty_pools,
                      self.per_channel)

    def extra_repr(self) -> str:
        return (f"lam={self.lam}, k={self.k}, eps={self.eps}, bins={self.bins}, threshold={self.threshold}, "
                f"mse_normalization={self.mse_normalization!r}, reduction={self.reduction!r}, "
                f"soft_mask={self.soft_mask!r}, mask_rule={self.mask_rule!r}, "
                f"dice_denominator={self.dice_denominator!r}, empty_pools={self.empty_pools!r}, "
                f"per_channel={self.per_channel}")
