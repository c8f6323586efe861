r"""Pure-PyTorch reference of the Spotlight method (SPEC sections 1-7).

Readable, float64 throughout, one sample at a time: the test oracle of the
compiled ops, and a fallback for platforms the op library does not build on.
It is differentiable through autograd with respect to ``pred`` (and the MMSE
term with respect to ``target``); the mask and thresholds are constants.
Results are returned in the dtype of the input.
"""

from __future__ import annotations

import torch
from torch import Tensor

# The defaults and option names only (spotlight_ops.defaults); the math below is this module's own.
from .defaults import (BINS, CHOICES, DICE_DENOMINATOR, EMPTY_POOLS, EPS, K, LAM, MASK_RULE, MSE_NORMALIZATION,
                       MSE_TERM, PER_CHANNEL, REDUCTION, SOFT_MASK)


def _samples(x: Tensor) -> Tensor:
    return x.reshape(x.shape[0], -1)


def otsu_threshold(x: Tensor, bins: int = BINS) -> Tensor:
    """Per-sample Otsu threshold with scikit-image's histogram conventions."""
    out = []
    for v in _samples(x.detach()).double():
        if not torch.isfinite(v).all():
            out.append(v.new_tensor(float("nan")))
            continue
        lo, hi = v.min(), v.max()
        if lo == hi:
            out.append(lo)
            continue
        idx = ((v - lo) / (hi - lo) * bins).floor().long().clamp(0, bins - 1)
        counts = torch.bincount(idx, minlength=bins).double()
        centres = lo + (torch.arange(bins, dtype=torch.float64) + 0.5) * ((hi - lo) / bins)
        # Class means on the unit interval: Otsu's criterion is invariant to an
        # affine map of the values up to a common factor, and this one cannot
        # underflow on tiny ranges.
        unit = (torch.arange(bins, dtype=torch.float64) + 0.5) / bins
        w1 = counts.cumsum(0)
        w2 = counts.flip(0).cumsum(0).flip(0)
        m1 = (counts * unit).cumsum(0) / w1
        m2 = (counts * unit).flip(0).cumsum(0).flip(0) / w2
        crit = w1[:-1] * w2[1:] * (m1[:-1] - m2[1:]) ** 2
        crit = torch.nan_to_num(crit, nan=-1.0)  # empty classes never win
        out.append(centres[int(torch.argmax(crit))])  # first maximum
    return torch.stack(out).to(torch.float64 if x.dtype == torch.float64 else torch.float32)


def otsu_standardize(x: Tensor, bins: int = BINS) -> Tensor:
    """(x - T) / std(x) per sample; std with ddof 0, 1 for a constant sample."""
    t = otsu_threshold(x, bins).double().detach()
    v = _samples(x).double()
    sd = v.std(dim=1, unbiased=False, keepdim=True)
    sd = torch.where(sd > 0, sd, torch.ones_like(sd))
    return ((v - t[:, None]) / sd).reshape(x.shape).to(x.dtype)


def tunable_sigmoid(x: Tensor, k: float = K) -> Tensor:
    r"""\sigma_k(clamp(x, -1, 1)) = (x - kx) / (k - 2k|x| + 1).

    Its derivative is the sigmoid's inside the open interval (-1, 1) and 0 at ``|x| >= 1``, ends
    included (docs/design.md), written out here rather than left to ``torch.clamp``'s backward, whose
    value at the ends differs between torch versions."""
    v = x.double()
    inside = (v > -1.0) & (v < 1.0)
    c = torch.where(inside, v, v.detach().clamp(-1.0, 1.0))
    return ((c - k * c) / (k - 2.0 * k * c.abs() + 1.0)).to(x.dtype)


def soft_mask(pred: Tensor, threshold: Tensor, k: float = K) -> Tensor:
    """S = (1 + sigma_k(clamp(P - T))) / 2 with T broadcast per sample."""
    t = threshold.double().reshape(-1, *([1] * (pred.dim() - 1)))
    return 0.5 * (1.0 + tunable_sigmoid(pred.double() - t, k))


def _pool(x: Tensor, reduction: str) -> Tensor:
    """Per-pool sums of a [N, n] tensor: [1] for 'batch', [N] otherwise."""
    return x.sum().reshape(1) if reduction == "batch" else x.sum(dim=1)


def _reduce(values: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return values
    if reduction == "sum":
        return values.sum()
    return values.mean() if reduction == "mean" else values[0]


def _check(**options: str) -> None:
    for name, value in options.items():
        if value not in CHOICES[name]:
            raise ValueError(f"{name} must be one of {CHOICES[name]}, got {value!r}")


def _poison(*xs: Tensor, reduction: str) -> Tensor:
    """0 per pool, NaN for a pool holding NaN or Inf (SPEC section 8)."""
    bad = sum(_samples(~torch.isfinite(x.detach())).double() for x in xs)
    return torch.where(_pool(bad, reduction) > 0, float("nan"), 0.0)


def masked_mse(pred: Tensor, target: Tensor, mask: Tensor, mse_normalization: str = MSE_NORMALIZATION,
               reduction: str = REDUCTION) -> Tensor:
    """sum(M (Y - P)^2) / D per pool; D = sum(M) or the voxel count; 0 when D = 0."""
    _check(reduction=reduction, mse_normalization=mse_normalization)
    p, y, m = _samples(pred).double(), _samples(target).double(), _samples(mask).double()
    se = _pool(m * (y - p) ** 2, reduction)
    d = _pool(m, reduction) if mse_normalization == "foreground" else _pool(torch.ones_like(m), reduction)
    mmse = torch.where(d > 0, se / d.clamp_min(1e-300), torch.zeros_like(se))
    return _reduce(mmse + _poison(pred, target, reduction=reduction), reduction).to(pred.dtype)


def soft_dice(soft: Tensor, mask: Tensor, eps: float = EPS, reduction: str = REDUCTION) -> Tensor:
    """1 - 2 sum(S M) / (sum(S) + sum(M) + eps) per pool."""
    _check(reduction=reduction)
    s, m = _samples(soft).double(), _samples(mask).double()
    dice = 1.0 - 2.0 * _pool(s * m, reduction) / (_pool(s, reduction) + _pool(m, reduction) + eps)
    return _reduce(dice + _poison(soft, reduction=reduction), reduction).to(soft.dtype)


def _soft(x: Tensor, k: float, soft_mask: str) -> Tensor:
    """The soft mask of x = P - T (SPEC sections 3 and 11), float64, with the
    derivatives the kernels use written out (no reliance on torch.clamp's backward
    at the ends)."""
    if soft_mask == "clamped":
        return 0.5 * (1.0 + tunable_sigmoid(x, k))
    raw = (x - k * x) / (k - 2.0 * k * x.abs() + 1.0)
    if soft_mask == "unclamped":
        return 0.5 * (1.0 + raw)
    inside = (raw > 0.0) & (raw < 1.0)  # VisCy: the sigmoid's derivative inside (0, 1), 0 at the ends
    return torch.where(inside, raw, raw.detach().clamp(0.0, 1.0))


def loss(pred: Tensor, target: Tensor, threshold=None, lam: float = LAM, k: float = K, eps: float = EPS,
         bins: int = BINS, mse_normalization: str = MSE_NORMALIZATION, reduction: str = REDUCTION, *,
         soft_mask: str = SOFT_MASK, mask: Tensor | None = None, mask_rule: str = MASK_RULE,
         dice_denominator: str = DICE_DENOMINATOR, empty_pools: str = EMPTY_POOLS, per_channel: bool = PER_CHANNEL,
         mse_term: str = MSE_TERM) -> Tensor:
    """lam * MSE + (1 - lam) * Dice with M = target > T and S the soft mask of pred, the MSE over
    the mask (masked) or every voxel (plain), and every variant of SPEC section 11 (see
    ``spotlight_ops.functional.loss``)."""
    _check(reduction=reduction, mse_normalization=mse_normalization, soft_mask=soft_mask, mask_rule=mask_rule,
           dice_denominator=dice_denominator, empty_pools=empty_pools, mse_term=mse_term)
    n = pred.shape[0]
    rows = n * pred.shape[1] if per_channel else n
    p, y = pred.reshape(rows, -1), target.reshape(rows, -1)
    if threshold is None:
        t = otsu_threshold(y, bins).double()
    else:
        t = torch.as_tensor(threshold, dtype=torch.float64, device=pred.device).detach().reshape(-1).expand(n)
        if per_channel:
            t = t.repeat_interleave(pred.shape[1])
    t = t[:, None]
    if mask is not None:
        m = mask.reshape(rows, -1).double()
    else:
        m = (y.double() >= t if mask_rule == "greater_equal" else y.double() > t).double()
    p, y = p.double(), y.double()
    s = _soft(p - t, k, soft_mask)
    s_den = s * s if dice_denominator == "squared" else s
    sq = (y - p) ** 2
    voxels = float(p.shape[1] * (rows if reduction == "batch" else 1))
    fg = _pool(m, reduction)
    d = fg if mse_normalization == "foreground" else torch.full_like(fg, voxels)
    se = _pool(m * sq, reduction)
    b = _pool(s_den, reduction) + fg + eps
    dice = 1.0 - 2.0 * _pool(s * m, reduction) / b
    poison = _poison(pred.reshape(rows, -1), target.reshape(rows, -1), reduction=reduction)
    plain = _pool(sq, reduction) / voxels  # the MSE over every voxel of the pool
    if mse_term == "plain":
        mmse = plain
    elif empty_pools == "spotlight":
        mmse = torch.where(d > 0, se / d.clamp_min(1e-300), torch.zeros_like(se))
    else:  # VisCy: masked MSE over D + eps; a pool with no foreground takes its plain MSE
        mmse = torch.where(fg > 0, se / (d + eps), plain)
    dice_weight = torch.ones_like(dice) if empty_pools == "spotlight" else ((fg > 0) & (fg < voxels)).double()
    mmse, dice = mmse + poison, dice + poison
    per_pool = lam * mmse + (1.0 - lam) * dice_weight * dice
    if reduction == "mean" and empty_pools == "viscy":
        real = dice_weight.sum()
        total = lam * mmse.mean() + (1.0 - lam) * (dice_weight * dice).sum() / torch.clamp(real, min=1.0)
    else:
        total = _reduce(per_pool, reduction)
    if reduction == "none" and per_channel:
        total = total.reshape(n, pred.shape[1])
    return total.to(pred.dtype)
