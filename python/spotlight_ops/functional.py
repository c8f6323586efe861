r"""Functional API of the Spotlight loss: thin wrappers over ``torch.ops.spotlight``.

Notation: a batch ``[N, ...]`` holds N samples (the indices of dim 0); ``Y`` is
the target, ``P`` the prediction, ``T`` a per-sample threshold.

* Otsu threshold ``T``: the bin centre maximising ``w1 w2 (m1 - m2)^2`` over a
  ``bins``-bin histogram of the sample's [min, max] (scikit-image conventions).
* Mask ``M = Y > T``; soft mask ``S = (1 + sigma_k(clamp(P - T, -1, 1))) / 2`` with
  ``sigma_k(x) = (x - kx) / (k - 2k|x| + 1)``.
* ``MMSE = sum(M (Y - P)^2) / D`` (D = sum(M), or the voxel count), 0 when D = 0.
* ``Dice = 1 - 2 sum(S M) / (sum(S) + sum(M) + eps)``.
* ``loss = lam MMSE + (1 - lam) Dice``, pooled per ``reduction``: ``"batch"`` (one pool
  of every voxel: one scalar), ``"mean"`` / ``"sum"`` (of per-sample losses) or ``"none"`` (``[N]``).
* The published variants (SPEC 11, docs/variants.md) are options of ``loss``: ``soft_mask``,
  ``mask_rule``, ``mask``, ``dice_denominator``, ``empty_pools``, ``per_channel``; ``loss_preset``
  and ``SpotlightLoss.from_preset`` name the published sets ("spotlight", "authors", "viscy").

Every function validates its arguments up front and raises ``ValueError`` or
``TypeError`` naming the offending argument.
"""

from __future__ import annotations

from typing import Optional, Union

import torch
from torch import Tensor

from .defaults import (BINS, DICE_DENOMINATOR, EMPTY_POOL, EPS, K, LAM, MASK_RULE, MSE_NORMALIZATION, REDUCTION,
                       SOFT_MASK)

Threshold = Optional[Union[float, Tensor]]


def _dense(*named: tuple[str, object]) -> None:
    """Sparse and other layouts have no kernel: say so by argument name rather
    than with the dispatcher's list of backends."""
    for name, t in named:
        if isinstance(t, Tensor) and t.layout != torch.strided:
            raise TypeError(f"spotlight: {name} must be a dense (strided) tensor, got layout {t.layout}")


def otsu_threshold(x: Tensor, bins: int = BINS) -> Tensor:
    """Per-sample Otsu threshold of ``x`` ``[N, ...]``: a ``[N]`` tensor.

    The dtype is the accumulation dtype (float64 for float64, else float32): the exact
    threshold ``loss`` uses, so ``loss(p, y) == loss(p, y, otsu_threshold(y))`` for
    every input dtype.

    Treated as a constant (it is a bin centre, moving only with the sample's min and
    max between jumps): the result never requires grad.
    A sample holding NaN or Inf gets a NaN threshold; a constant sample its value.
    """
    _dense(("x", x))
    return torch.ops.spotlight.otsu_threshold(x, bins)


def otsu_standardize(x: Tensor, bins: int = BINS) -> Tensor:
    """``(x - T) / std(x)`` per sample: Spotlight's target standardization.

    ``std`` has ddof 0 (1 for a constant sample); the foreground then starts at 0.
    Differentiable with ``T`` held constant (a stop-gradient, like the loss's mask).
    """
    _dense(("x", x))
    return torch.ops.spotlight.otsu_standardize(x, bins)


def tunable_sigmoid(x: Tensor, k: float = K) -> Tensor:
    """``sigma_k(clamp(x, -1, 1)) = (x - kx) / (k - 2k|x| + 1)``, k in (-1, 1).

    Odd, ``sigma_k(+-1) = +-1``; negative k makes a steep step at 0. Its gradient is
    ``(1 - k^2) / (k - 2k|x| + 1)^2`` inside (-1, 1) and 0 outside; differentiable again
    (second derivatives under ``create_graph=True``).
    """
    _dense(("x", x))
    return torch.ops.spotlight.tunable_sigmoid(x, k)


def masked_mse(pred: Tensor, target: Tensor, mask: Tensor, mse_normalization: str = MSE_NORMALIZATION,
               reduction: str = REDUCTION) -> Tensor:
    """``sum(M (Y - P)^2) / D`` per pool with a given bool ``mask`` (0 when D = 0).

    ``mse_normalization``: ``"foreground"`` divides by ``sum(M)`` (the paper), ``"all"``
    by the pool's voxel count. Differentiable in ``pred`` and ``target``.
    """
    _dense(("pred", pred), ("target", target), ("mask", mask))
    return torch.ops.spotlight.masked_mse(pred, target, mask, mse_normalization, reduction)


def soft_dice(soft: Tensor, mask: Tensor, eps: float = EPS, reduction: str = REDUCTION) -> Tensor:
    """``1 - 2 sum(S M) / (sum(S) + sum(M) + eps)`` per pool with a given bool ``mask``.

    Differentiable in ``soft``.
    """
    _dense(("soft", soft), ("mask", mask))
    return torch.ops.spotlight.soft_dice(soft, mask, eps, reduction)


def _check_dense(name: str, t: Optional[Tensor]) -> None:
    """``_dense`` for one argument, in TorchScript too."""
    if t is not None and t.layout != torch.strided:
        raise TypeError(f"spotlight: {name} must be a dense (strided) tensor, got layout {t.layout}")


def loss(pred: Tensor, target: Tensor, threshold: Optional[Union[float, Tensor]] = None, lam: float = LAM,
         k: float = K, eps: float = EPS, bins: int = BINS, mse_normalization: str = MSE_NORMALIZATION,
         reduction: str = REDUCTION, soft_mask: str = SOFT_MASK, mask: Optional[Tensor] = None,
         mask_rule: str = MASK_RULE, dice_denominator: str = DICE_DENOMINATOR, empty_pools: str = EMPTY_POOL,
         per_channel: bool = False) -> Tensor:
    r"""The Spotlight loss ``lam * MMSE + (1 - lam) * Dice``, fused (one pass over memory with a
    given threshold; every option below keeps that).

    Args:
        pred: prediction ``[N, ...]`` (float32, float64, float16 or bfloat16).
        target: target of the same shape, dtype and device.
        threshold: ``None`` (Otsu per sample of ``target``, SPEC 1), a float for the
            whole batch (0 for Otsu-standardized targets), or a tensor of 1 or N values.
        lam: weight of the masked MSE in [0, 1]; ``1 - lam`` weighs the Dice term.
        k: tunable-sigmoid steepness in (-1, 1) (``<= 0`` for the unclamped soft masks).
        eps: Dice smoothing, >= 0.
        bins: Otsu histogram bins, >= 2.
        mse_normalization: ``"foreground"`` (``D = sum(M)``) or ``"all"`` (the pool's voxel count).
        reduction: how pools combine. ``"batch"`` (default, the paper): one pool of every voxel
            of the batch, one scalar. ``"mean"``, ``"sum"``, ``"none"``: each sample (or each
            (sample, channel) with ``per_channel``) is its own pool; the mean, the sum, or the
            losses themselves (``[N]``, ``[N, C]`` per channel), as PyTorch losses reduce.
        soft_mask: ``S`` of ``x = P - T``. ``"clamped"``: ``(1 + sigma_k(clamp(x, -1, 1))) / 2``
            (SPEC 3). ``"unclamped"``: ``(1 + sigma_k(x)) / 2`` (the authors' code; about
            -0.013 to 1.013 at k = -0.95). ``"viscy"``: ``clamp(sigma_k(x), 0, 1)`` (0 below T).
        mask: a given bool foreground mask of the target's shape (a precomputed weight map),
            or ``None`` for ``M`` from ``mask_rule``; T still centres the soft mask.
        mask_rule: ``"greater"`` (``M = Y > T``, SPEC 2) or ``"greater_equal"`` (``Y >= T``, VisCy).
        dice_denominator: ``"linear"`` (``sum(S) + sum(M) + eps``) or ``"squared"``
            (``sum(S^2) + sum(M) + eps``, the V-Net form of the authors' code).
        empty_pools: ``"spotlight"`` (MMSE 0 when D = 0, SPEC 4) or ``"viscy"``: the MMSE
            denominator is ``D + eps``; a pool with no foreground takes the plain MSE over the
            pool; Dice counts only pools whose mask is neither empty nor full ("mean" averages
            the MSE over every pool and the Dice over those, 0 when there is none).
        per_channel: pool each (sample, channel) of a ``[N, C, ...]`` batch (VisCy); Otsu
            thresholds then come per (sample, channel) too, a given one is shared by a sample's channels.

    Returns:
        A scalar, or the per-pool losses for ``reduction="none"``, in ``pred.dtype`` (float32
        under ``torch.autocast``, as PyTorch's losses: float16 and bfloat16 inputs are computed in float32).

    Gradients flow to ``pred``, and to ``target`` through the MMSE term when it
    requires grad; the mask and threshold are constants. Second derivatives are not
    implemented: differentiating the gradient again raises an error naming this.

    Raises:
        ValueError, TypeError: for a bad argument, naming it, before any work.
    """
    _check_dense("pred", pred)
    _check_dense("target", target)
    _check_dense("mask", mask)
    if isinstance(threshold, Tensor):
        _check_dense("threshold", threshold)
        return torch.ops.spotlight.loss(pred, target, threshold, lam, k, eps, bins, mse_normalization, reduction,
                                        soft_mask=soft_mask, mask=mask, mask_rule=mask_rule,
                                        dice_denominator=dice_denominator, empty_pools=empty_pools,
                                        per_channel=per_channel)
    if threshold is None:
        return torch.ops.spotlight.loss(pred, target, None, lam, k, eps, bins, mse_normalization, reduction,
                                        soft_mask=soft_mask, mask=mask, mask_rule=mask_rule,
                                        dice_denominator=dice_denominator, empty_pools=empty_pools,
                                        per_channel=per_channel)
    return torch.ops.spotlight.loss(pred, target, float(threshold), lam, k, eps, bins, mse_normalization,
                                    reduction, soft_mask=soft_mask, mask=mask, mask_rule=mask_rule,
                                    dice_denominator=dice_denominator, empty_pools=empty_pools,
                                    per_channel=per_channel)


def loss_preset(pred: Tensor, target: Tensor, preset: str, **overrides) -> Tensor:
    """``loss`` with the options of a published implementation: ``"spotlight"``, ``"authors"``
    or ``"viscy"`` (:mod:`spotlight_ops.presets`); ``overrides`` replace single options, e.g.
    ``loss_preset(p, y, "authors", mask=weight_map)``."""
    from .presets import preset_options

    return loss(pred, target, **preset_options(preset, **overrides))
