"""Fake (meta) kernels: output shapes and dtypes of every op, so that
``torch.compile(fullgraph=True)`` and ``torch.export`` trace them with no data."""

from __future__ import annotations

import torch
from torch import Tensor

_FIELDS = 5  # per-sample sums of the fused loss (spotlight::LossSums)


def _acc(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _same_device(t, name: str, like: Tensor, like_name: str) -> None:
    """The device check of the real kernels: a meta or fake input must not
    hide a device mismatch behind a shape-only kernel."""
    if t is not None and t.device != like.device:
        raise RuntimeError(f"spotlight: {name} must be on the device of {like_name} ({like.device}), got {t.device}")


def _reduced(x: Tensor, reduction: str) -> Tensor:
    if reduction not in ("batch", "mean", "none"):
        raise ValueError(f"spotlight: reduction must be one of 'batch', 'mean', 'none', got '{reduction}'")
    return x.new_empty((x.shape[0],) if reduction == "none" else ())


@torch.library.register_fake("spotlight::otsu_threshold")
def _(x, bins=256):
    return x.new_empty((x.shape[0],), dtype=_acc(x.dtype))


@torch.library.register_fake("spotlight::otsu_standardize")
def _(x, bins=256):
    return x.new_empty(x.shape)


@torch.library.register_fake("spotlight::_otsu_standardize_forward")
def _(x, bins):
    n, acc = x.shape[0], _acc(x.dtype)
    return x.new_empty(x.shape), x.new_empty((n,), dtype=acc), x.new_empty((n, 3), dtype=acc)


@torch.library.register_fake("spotlight::_otsu_standardize_backward")
def _(grad, x, thresholds, stats):
    _same_device(grad, "grad", x, "x")
    _same_device(thresholds, "thresholds", x, "x")
    _same_device(stats, "stats", x, "x")
    return x.new_empty(x.shape)


@torch.library.register_fake("spotlight::tunable_sigmoid")
def _(x, k=-0.95):
    return x.new_empty(x.shape)


@torch.library.register_fake("spotlight::_tunable_sigmoid_backward")
def _(grad, x, k):
    return x.new_empty(x.shape)


@torch.library.register_fake("spotlight::masked_mse")
def _(pred, target, mask, mse_normalization="foreground", reduction="batch"):
    _same_device(target, "target", pred, "pred")
    _same_device(mask, "mask", pred, "pred")
    return _reduced(pred, reduction)


@torch.library.register_fake("spotlight::soft_dice")
def _(soft, mask, eps=1e-6, reduction="batch"):
    _same_device(mask, "mask", soft, "soft")
    return _reduced(soft, reduction)


@torch.library.register_fake("spotlight::loss")
def _(pred, target, threshold=None, lam=0.5, k=-0.95, eps=1e-6, bins=256, mse_normalization="foreground",
      reduction="batch"):
    _same_device(target, "target", pred, "pred")
    _same_device(threshold, "threshold", pred, "pred")
    return _reduced(pred, reduction)


@torch.library.register_fake("spotlight::_loss_forward")
def _(pred, target, threshold, lam, k, eps, bins, mse_normalization, reduction):
    _same_device(target, "target", pred, "pred")
    _same_device(threshold, "threshold", pred, "pred")
    n = pred.shape[0]
    return (_reduced(pred, reduction), pred.new_empty((n,), dtype=_acc(pred.dtype)),
            pred.new_empty((n, _FIELDS), dtype=torch.float64))


@torch.library.register_fake("spotlight::_loss_backward")
def _(grad, pred, target, thresholds, sums, lam, k, eps, mse_normalization, reduction, target_grad):
    return pred.new_empty(pred.shape), pred.new_empty(pred.shape if target_grad else (0,))
