"""``SpotlightLoss``: the Spotlight loss as an ``nn.Module`` criterion, with its collapse guard."""

# No `from __future__ import annotations`: TorchScript reads the attribute annotations below.
from typing import Any, Optional, Union

import torch
from torch import Tensor, nn

from . import functional as F
from .collapse import CollapseGuard, library_hint
from .defaults import (BINS, DICE_DENOMINATOR, EMPTY_POOLS, EPS, K, LAM, MASK_RULE, MSE_NORMALIZATION, MSE_TERM,
                       PER_CHANNEL, REDUCTION, SOFT_MASK)
from .presets import preset_options


class SpotlightLoss(nn.Module):
    r"""Foreground-aware loss for virtual staining (Spotlight).

    .. math::
        L = \lambda \, \mathrm{MSE}
            + (1 - \lambda) \Big(1 - \frac{2 \sum_i S_i M_i}{\sum_i S_i + \sum_i M_i + \epsilon}\Big)

    with the foreground ``M = Y > T`` (T: per-sample Otsu threshold of the target, or
    ``threshold``), the soft mask ``S = (1 + sigma_k(clamp(P - T, -1, 1))) / 2``,
    ``sigma_k(x) = (x - kx) / (k - 2k|x| + 1)``, and the MSE term over the foreground,
    ``sum(M (Y - P)^2) / sum(M)`` (``mse_term="masked"``, the paper's loss, the default) or over
    every voxel, ``mean((Y - P)^2)`` (``mse_term="plain"``). The published variants and the
    other options are the arguments of :func:`spotlight_ops.loss`; :meth:`from_preset` names whole
    sets: ``"trained"`` is the objective ``spotlight train`` minimises (the plain term, T = 0 on
    Otsu-standardized targets), which does not collapse where the paper's loss does
    (docs/collapse.md).

    Example::

        criterion = SpotlightLoss.from_preset("trained")  # on otsu_standardize'd targets
        loss = criterion(model(signal), target)
        loss.backward()

        criterion = SpotlightLoss()                       # the paper's loss: lam=0.5, k=-0.95, Otsu per sample
        criterion = SpotlightLoss.from_preset("viscy")    # VisCy's SpotlightLoss, threshold 0
        loss = criterion(pred, target, mask=fg_mask)       # a precomputed mask, optional

    **Collapse guard** (``collapse_warning=True``, docs/collapse.md): on the calls that build a
    gradient (training), the fused pass's counts of voxels predicted above T and of the target's
    foreground are kept on the device and read once at the first call and then once every
    ``check_every`` calls (one host sync each). A :class:`~spotlight_ops.collapse.CollapseWarning`
    says when, over the last 50 calls, the odds of a voxel being predicted above T differ from
    the targets' by more than 5 times (once per episode), and, once each, when the targets are
    plainly not in the units T assumes: a given threshold with every voxel of every sample above
    it, or a loss per pool above ``1000 (1 - lam)`` (the Dice term can then add under 0.1 %;
    standardized targets give losses of order 1). The guard runs in eager mode; under
    ``torch.compile``, ``torch.export`` and TorchScript the module is the plain loss.

    The module is scriptable (``torch.jit.script``) and runs under ``torch.autocast`` (in float32,
    returning float32, as PyTorch's losses do).
    """

    threshold: Optional[Union[float, Tensor]]
    last_sums: Optional[Tensor]  # the per-pool sums of the last training call (fractions())

    def __init__(self, lam: float = LAM, k: float = K, eps: float = EPS, bins: int = BINS,
                 threshold: Optional[Union[float, Tensor]] = None, mse_normalization: str = MSE_NORMALIZATION,
                 reduction: str = REDUCTION, soft_mask: str = SOFT_MASK, mask_rule: str = MASK_RULE,
                 dice_denominator: str = DICE_DENOMINATOR, empty_pools: str = EMPTY_POOLS,
                 per_channel: bool = PER_CHANNEL, mse_term: str = MSE_TERM, collapse_warning: bool = True,
                 check_every: int = 25) -> None:
        super().__init__()
        options = F.loss_options(lam=lam, k=k, eps=eps, bins=bins, mse_normalization=mse_normalization,
                                 reduction=reduction, soft_mask=soft_mask, mask_rule=mask_rule,
                                 dice_denominator=dice_denominator, empty_pools=empty_pools, per_channel=per_channel,
                                 mse_term=mse_term)
        self.threshold = F.threshold_argument(threshold)
        self.lam, self.k, self.eps, self.bins = options["lam"], options["k"], options["eps"], options["bins"]
        self.mse_normalization, self.reduction = options["mse_normalization"], options["reduction"]
        self.soft_mask, self.mask_rule = options["soft_mask"], options["mask_rule"]
        self.dice_denominator, self.empty_pools = options["dice_denominator"], options["empty_pools"]
        self.per_channel, self.mse_term = options["per_channel"], options["mse_term"]
        self._guard = CollapseGuard(self.lam, library_hint(self.mse_term), check_every) if collapse_warning else None
        self.last_sums = None
        self._last_voxels = 0

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "SpotlightLoss":
        """The loss of a preset: ``"spotlight"`` (the paper's, SPEC 2-5), ``"trained"`` (the objective
        ``spotlight train`` minimises), ``"authors"`` or ``"viscy"`` (see :mod:`spotlight_ops.presets`);
        ``overrides`` replace single options, e.g. ``SpotlightLoss.from_preset("viscy", threshold=None)``
        for Otsu thresholds."""
        return cls(**preset_options(name, **overrides))

    def options(self) -> dict:
        """The keyword arguments of :func:`spotlight_ops.loss` this module calls it with (and ``threshold``)."""
        return {"threshold": self.threshold, "lam": self.lam, "k": self.k, "eps": self.eps, "bins": self.bins,
                "mse_normalization": self.mse_normalization, "reduction": self.reduction,
                "soft_mask": self.soft_mask, "mask_rule": self.mask_rule, "dice_denominator": self.dice_denominator,
                "empty_pools": self.empty_pools, "per_channel": self.per_channel, "mse_term": self.mse_term}

    def forward(self, pred: Tensor, target: Tensor, threshold: Optional[Union[float, Tensor]] = None,
                mask: Optional[Tensor] = None) -> Tensor:
        """Loss of ``pred`` against ``target``; ``threshold`` overrides the module's; ``mask``:
        a given bool foreground mask of the target's shape (in place of ``Y > T``)."""
        t = self.threshold if threshold is None else threshold
        if not torch.jit.is_scripting():
            if not torch.compiler.is_compiling() and torch.is_grad_enabled() and pred.requires_grad:
                return self._watched(pred, target, F.threshold_argument(t), mask)
        return F.loss(pred, target, t, self.lam, self.k, self.eps, self.bins, self.mse_normalization,
                      self.reduction, self.soft_mask, mask, self.mask_rule, self.dice_denominator, self.empty_pools,
                      self.per_channel, self.mse_term)

    @torch.jit.unused
    def _watched(self, pred: Tensor, target: Tensor, threshold: Optional[Union[float, Tensor]],
                 mask: Optional[Tensor]) -> Tensor:
        """A training call: the loss with the per-pool sums of its pass, kept for the guard and
        :meth:`fractions`."""
        for name, t in (("pred", pred), ("target", target), ("mask", mask), ("threshold", threshold)):
            F._check_dense(name, t if isinstance(t, Tensor) else None)
        value, sums = torch.ops.spotlight._loss_and_sums(
            pred, target, threshold, self.lam, self.k, self.eps, self.bins, self.mse_normalization, self.reduction,
            mask=mask, soft_mask=self.soft_mask, mask_rule=self.mask_rule, dice_denominator=self.dice_denominator,
            empty_pools=self.empty_pools, per_channel=self.per_channel, mse_term=self.mse_term)
        self.last_sums, self._last_voxels = sums, pred.numel()
        if self._guard is not None:
            pools_summed = sums.shape[0] if self.reduction == "sum" else 1
            self._guard.record(value, sums, pred.numel(), pools_summed, threshold is not None and mask is None)
        return value

    @torch.jit.unused
    def fractions(self) -> Tensor:
        """``[fraction of voxels predicted above T, fraction in the mask M]`` of the last training call
        (one that built a gradient), as a float64 tensor on its device, from the counts of its fused
        pass (no host sync)."""
        if self.last_sums is None:
            raise RuntimeError("spotlight: SpotlightLoss.fractions() needs a training call first (a pred that "
                               "requires grad, outside torch.no_grad)")
        return torch.ops.spotlight._loss_counts(self.last_sums) / self._last_voxels

    def extra_repr(self) -> str:
        return ", ".join(f"{name}={value!r}" for name, value in self.options().items())
