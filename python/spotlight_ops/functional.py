r"""Functional API of the Spotlight loss: thin wrappers over ``torch.ops.spotlight``.

Notation: a batch ``[N, ...]`` holds N samples (the indices of dim 0); ``Y`` is
the target, ``P`` the prediction, ``T`` a per-sample threshold.

* Otsu threshold ``T``: the bin centre maximising ``w1 w2 (m1 - m2)^2`` over a
  ``bins``-bin histogram of the sample's [min, max] (scikit-image conventions).
* Mask ``M = Y > T``; soft mask ``S = (1 + sigma_k(clamp(P - T, -1, 1))) / 2`` with
  ``sigma_k(x) = (x - kx) / (k - 2k|x| + 1)``.
* The MSE term: ``MMSE = sum(M (Y - P)^2) / D`` (D = sum(M), or the voxel count), 0 when
  D = 0 (``mse_term="masked"``, the paper); or ``sum((Y - P)^2) / n`` over every voxel
  (``mse_term="plain"``, the objective ``spotlight train`` minimises, docs/collapse.md).
* ``Dice = 1 - 2 sum(S M) / (sum(S) + sum(M) + eps)``.
* ``loss = lam MSE + (1 - lam) Dice``, pooled per ``reduction``: ``"batch"`` (one pool
  of every voxel: one scalar), ``"mean"`` / ``"sum"`` (of per-sample losses) or ``"none"`` (``[N]``).
* The published variants (SPEC 11, docs/variants.md) are options of ``loss``: ``soft_mask``,
  ``mask_rule``, ``mask``, ``dice_denominator``, ``empty_pools``, ``per_channel``, ``mse_term``;
  ``loss_preset`` and ``SpotlightLoss.from_preset`` name whole sets ("spotlight", "trained",
  "authors", "viscy").

Every function validates its arguments up front and raises ``ValueError`` or
``TypeError`` naming the offending argument, in one line. The loss's options are checked in one
place, the op library (``include/spotlight/core/options.hpp``), whichever front end they come
through: ``loss``, ``SpotlightLoss``, ``torch.compile``, ``spotlight train``.
"""

from __future__ import annotations

import numbers
from typing import Any, Optional, Tuple, Union

import torch
from torch import Tensor

from .defaults import (BINS, DICE_DENOMINATOR, EMPTY_POOLS, EPS, K, LAM, LOSS_DEFAULTS, MASK_RULE, MSE_NORMALIZATION,
                       MSE_TERM, OPTIONS, PER_CHANNEL, REDUCTION, SOFT_MASK)


def _dense(*named: tuple[str, object]) -> None:
    """Sparse and other layouts have no kernel: say so by argument name rather
    than with the dispatcher's list of backends."""
    for name, t in named:
        if isinstance(t, Tensor) and t.layout != torch.strided:
            raise TypeError(f"spotlight: {name} must be a dense (strided) tensor, got layout {t.layout}")


def _bins(bins: Any) -> int:
    """``bins`` as the schema's int; a value no int64 holds gets the op library's message."""
    if type(bins) is int and -2 ** 63 <= bins < 2 ** 63:
        return bins
    return loss_options(bins=bins)["bins"]


def otsu_threshold(x: Tensor, bins: int = BINS) -> Tensor:
    """Per-sample Otsu threshold of ``x`` ``[N, ...]`` on a ``bins``-bin histogram: a ``[N]`` tensor.

    ``bins`` lies in [2, 65536]: 65536 is one bin per level of 16-bit data, the finest histogram
    microscopy data has, and bounds the histograms' memory (``bins`` counts per sample).

    The dtype is the accumulation dtype (float64 for float64, else float32): the exact
    threshold ``loss`` uses, so ``loss(p, y) == loss(p, y, otsu_threshold(y))`` for
    every input dtype.

    Treated as a constant (it is a bin centre, moving only with the sample's min and
    max between jumps): the result never requires grad.
    A sample holding NaN or Inf gets a NaN threshold; a constant sample its value.
    """
    _dense(("x", x))
    return torch.ops.spotlight.otsu_threshold(x, _bins(bins))


def otsu_standardize(x: Tensor, bins: int = BINS) -> Tensor:
    """``(x - T) / std(x)`` per sample: Spotlight's target standardization.

    ``std`` has ddof 0 (1 for a constant sample); the foreground then starts at 0.
    Differentiable with ``T`` held constant (a stop-gradient, like the loss's mask).
    """
    _dense(("x", x))
    return torch.ops.spotlight.otsu_standardize(x, _bins(bins))


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


def _option_text(value: Any) -> str:
    """An option as the op library's parser reads it (``name=value``): a number as Python writes it,
    True or False, a name as it is; anything else by its repr, for the error message."""
    if isinstance(value, str):
        return value
    if type(value).__name__ in ("bool", "bool_"):  # Python's and numpy's
        return str(bool(value))
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return repr(float(value))
    return repr(value)


def loss_options(**options: Any) -> dict:
    """Every option of :func:`loss` (not ``threshold`` and ``mask``): the defaults with ``options``
    applied, checked by the op library and converted to the types its schema takes.

    The checks are the op's own (``include/spotlight/core/options.hpp``): a bad value raises the
    ``ValueError`` every front end raises for it, e.g. ``spotlight: bins must be an integer in
    [2, 65536], got 2.5``. Numbers may be given as numeric strings (as YAML 1.1 reads ``5e-1``).
    """
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise TypeError(f"spotlight: unknown loss option(s) {', '.join(unknown)}; the options are "
                        f"{', '.join(OPTIONS)}")
    merged = {name: options.get(name, LOSS_DEFAULTS[name]) for name in OPTIONS}
    torch.ops.spotlight._pack_loss_options([f"{name}={_option_text(v)}" for name, v in merged.items()])
    out = {}
    for name, kind in OPTIONS.items():
        value = merged[name]
        if kind is bool:
            out[name] = value if isinstance(value, bool) else _option_text(value) == "True"
        else:
            out[name] = kind(value)
    return out


def _schema_typed(options: dict) -> bool:
    """Whether every option already has the exact Python type of its schema argument (an int
    within int64): then the op itself checks the values."""
    for name, value in options.items():
        kind = OPTIONS[name]
        if type(value) is not kind or (kind is int and not -2 ** 63 <= value < 2 ** 63):
            return False
    return True


def threshold_argument(threshold: Any) -> Optional[Union[float, Tensor]]:
    """``threshold`` as the op takes it: None, a float, or a tensor; a TypeError naming it otherwise."""
    if threshold is None or isinstance(threshold, Tensor):
        return threshold
    if isinstance(threshold, numbers.Real) and type(threshold).__name__ not in ("bool", "bool_"):
        return float(threshold)
    raise TypeError(f"spotlight: threshold must be None, a number or a tensor of 1 or N values, got {threshold!r}")


@torch.jit.unused
def _eager_arguments(lam: float, k: float, eps: float, bins: int, mse_normalization: str, reduction: str,
                     soft_mask: str, mask_rule: str, dice_denominator: str, empty_pools: str, per_channel: bool,
                     mse_term: str, threshold: Optional[Union[float, Tensor]]
                     ) -> Tuple[float, float, float, int, bool, Optional[Union[float, Tensor]]]:
    """The Python arguments of :func:`loss` in the schema's types: a value no schema type holds is checked
    by the op library (its message); the threshold as :func:`threshold_argument` takes it."""
    options = {"lam": lam, "k": k, "eps": eps, "bins": bins, "mse_normalization": mse_normalization,
               "reduction": reduction, "soft_mask": soft_mask, "mask_rule": mask_rule,
               "dice_denominator": dice_denominator, "empty_pools": empty_pools, "per_channel": per_channel,
               "mse_term": mse_term}
    if not _schema_typed(options):
        options = loss_options(**options)
    return (options["lam"], options["k"], options["eps"], options["bins"], options["per_channel"],
            threshold_argument(threshold))


def loss(pred: Tensor, target: Tensor, threshold: Optional[Union[float, Tensor]] = None, lam: float = LAM,
         k: float = K, eps: float = EPS, bins: int = BINS, mse_normalization: str = MSE_NORMALIZATION,
         reduction: str = REDUCTION, soft_mask: str = SOFT_MASK, mask: Optional[Tensor] = None,
         mask_rule: str = MASK_RULE, dice_denominator: str = DICE_DENOMINATOR, empty_pools: str = EMPTY_POOLS,
         per_channel: bool = PER_CHANNEL, mse_term: str = MSE_TERM) -> Tensor:
    r"""The Spotlight loss ``lam * MSE + (1 - lam) * Dice``, fused (one pass over memory with a
    given threshold; every option below keeps that).

    Args:
        pred: prediction ``[N, ...]`` (float32, float64, float16 or bfloat16).
        target: target of the same shape and device; a target of another floating dtype is
            promoted with ``pred`` as ``torch.nn.functional.mse_loss`` promotes them.
        threshold: ``None`` (Otsu per sample of ``target``, SPEC 1), a float for the
            whole batch (0 for Otsu-standardized targets), or a tensor of 1 or N values.
        lam: weight of the MSE term in [0, 1]; ``1 - lam`` weighs the Dice term.
        k: tunable-sigmoid steepness in (-1, 1) (``<= 0`` for the unclamped soft masks).
        eps: Dice smoothing, >= 0.
        bins: Otsu histogram bins, in [2, 65536] (65536: one bin per level of 16-bit data).
        mse_normalization: the masked term's ``D``: ``"foreground"`` (``sum(M)``) or ``"all"``
            (the pool's voxel count).
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
        mse_term: ``"masked"`` (the paper, SPEC 4: ``MMSE = sum(M (Y - P)^2) / D``) or ``"plain"``
            (``sum((Y - P)^2) / n`` over every voxel of the pool, which keeps a gradient on the
            background where the soft Dice's vanishes: docs/collapse.md; ``mse_normalization``
            then does not apply). Both in the same pass over memory.

    Returns:
        A scalar, or the per-pool losses for ``reduction="none"``, in the (promoted) dtype of
        ``pred`` (float32 under ``torch.autocast``, as PyTorch's losses: float16 and bfloat16 inputs
        are computed in float32).

    Gradients flow to ``pred``, and to ``target`` through the MSE term when it
    requires grad; the mask and threshold are constants. Second derivatives are not
    implemented: differentiating the gradient again raises an error naming this.

    Raises:
        ValueError, TypeError: for a bad argument, naming it, in one line, before any work.
    """
    _check_dense("pred", pred)
    _check_dense("target", target)
    _check_dense("mask", mask)
    if not torch.jit.is_scripting():
        lam, k, eps, bins, per_channel, threshold = _eager_arguments(
            lam, k, eps, bins, mse_normalization, reduction, soft_mask, mask_rule, dice_denominator, empty_pools,
            per_channel, mse_term, threshold)
    if isinstance(threshold, Tensor):
        _check_dense("threshold", threshold)
        return torch.ops.spotlight.loss(pred, target, threshold, lam, k, eps, bins, mse_normalization, reduction,
                                        soft_mask=soft_mask, mask=mask, mask_rule=mask_rule,
                                        dice_denominator=dice_denominator, empty_pools=empty_pools,
                                        per_channel=per_channel, mse_term=mse_term)
    if threshold is None:
        return torch.ops.spotlight.loss(pred, target, None, lam, k, eps, bins, mse_normalization, reduction,
                                        soft_mask=soft_mask, mask=mask, mask_rule=mask_rule,
                                        dice_denominator=dice_denominator, empty_pools=empty_pools,
                                        per_channel=per_channel, mse_term=mse_term)
    return torch.ops.spotlight.loss(pred, target, float(threshold), lam, k, eps, bins, mse_normalization,
                                    reduction, soft_mask=soft_mask, mask=mask, mask_rule=mask_rule,
                                    dice_denominator=dice_denominator, empty_pools=empty_pools,
                                    per_channel=per_channel, mse_term=mse_term)


def loss_preset(pred: Tensor, target: Tensor, preset: str, **overrides) -> Tensor:
    """``loss`` with the options of a preset: ``"spotlight"``, ``"trained"``, ``"authors"`` or
    ``"viscy"`` (:mod:`spotlight_ops.presets`); ``overrides`` replace single options, e.g.
    ``loss_preset(p, y, "authors", mask=weight_map)``."""
    from .presets import preset_options

    return loss(pred, target, **preset_options(preset, **overrides))
