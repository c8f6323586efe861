"""``SpotlightLoss``: the Spotlight loss as an ``nn.Module`` criterion."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from . import functional as F
from .functional import Threshold


class SpotlightLoss(nn.Module):
    r"""Foreground-aware loss for virtual staining (Spotlight).

    .. math::
        L = \lambda \frac{\sum_i M_i (Y_i - P_i)^2}{\sum_i M_i}
            + (1 - \lambda) \Big(1 - \frac{2 \sum_i S_i M_i}{\sum_i S_i + \sum_i M_i + \epsilon}\Big)

    with the foreground ``M = Y > T`` (T: per-sample Otsu threshold of the target,
    or ``threshold``) and the soft mask ``S = (1 + sigma_k(clamp(P - T, -1, 1))) / 2``,
    ``sigma_k(x) = (x - kx) / (k - 2k|x| + 1)``.

    Example::

        criterion = SpotlightLoss()          # lam=0.5, k=-0.95, Otsu per sample
        loss = criterion(model(signal), target)
        loss.backward()

    For Otsu-standardized targets (``spotlight_ops.otsu_standardize``) pass
    ``threshold=0.0``: the foreground then starts at 0 and no histogram is needed.
    """

    def __init__(self, lam: float = 0.5, k: float = -0.95, eps: float = 1e-6, bins: int = 256,
                 threshold: Threshold = None, mse_normalization: str = "foreground",
                 reduction: str = "batch") -> None:
        super().__init__()
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"lam must lie in [0, 1], got {lam}")
        if not -1.0 < k < 1.0:
            raise ValueError(f"k must lie in the open interval (-1, 1), got {k}")
        if not eps >= 0.0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        if int(bins) != bins or bins < 2:
            raise ValueError(f"bins must be an integer >= 2, got {bins}")
        if reduction not in ("batch", "mean", "none"):
            raise ValueError(f"reduction must be one of 'batch', 'mean', 'none', got {reduction!r}")
        if mse_normalization not in ("foreground", "all"):
            raise ValueError(f"mse_normalization must be 'foreground' or 'all', got {mse_normalization!r}")
        self.lam, self.k, self.eps, self.bins = float(lam), float(k), float(eps), int(bins)
        self.threshold = threshold
        self.mse_normalization, self.reduction = mse_normalization, reduction

    def forward(self, pred: Tensor, target: Tensor, threshold: Threshold = None) -> Tensor:
        """Loss of ``pred`` against ``target``; ``threshold`` overrides the module's."""
        t = self.threshold if threshold is None else threshold
        return F.loss(pred, target, t, self.lam, self.k, self.eps, self.bins, self.mse_normalization,
                      self.reduction)

    def extra_repr(self) -> str:
        return (f"lam={self.lam}, k={self.k}, eps={self.eps}, bins={self.bins}, threshold={self.threshold}, "
                f"mse_normalization={self.mse_normalization!r}, reduction={self.reduction!r}")
