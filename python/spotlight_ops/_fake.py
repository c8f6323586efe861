"""Fake (meta) kernels: output shapes and dtypes of the Otsu, sigmoid and term ops, so that
``torch.compile(fullgraph=True)`` and ``torch.export`` trace them with no data. The loss ops have
C++ meta kernels instead (``ops/loss/loss_meta.cpp``), which run the real kernels' checks."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .defaults import BINS, CHOICES, EPS, K, MSE_NORMALIZATION, REDUCTION

_FIELDS = 7  # per-pool sums of the fused loss (spotlight::LossSums::kFields)


def _acc(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _same_device(t, name: str, like: Tensor, like_name: str) -> None:
    """The device check of the real kernels: a meta or fake input must not
    hide a device mismatch behind a shape-only kernel."""
    if t is not None and t.device != like.device:
        raise RuntimeError(f"spotlight: {name} must be on the device of {like_name} ({like.device}), got {t.device}")


def _shape(t: Tensor) -> str:
    return "[" + ", ".join(str(d) for d in t.shape) + "]"


def _choice(name: str, value: str, allowed: tuple) -> None:
    """The message of spotlight::parse_option (core/options.hpp)."""
    if value not in allowed:
        listed = f"'{allowed[0]}' or '{allowed[1]}'" if len(allowed) == 2 else \
            "one of " + ", ".join(f"'{a}'" for a in allowed)
        raise ValueError(f"spotlight: {name} must be {listed}, got '{value}'")


def _reduced(x: Tensor, reduction: str) -> Tensor:
    _choice("reduction", reduction, CHOICES["reduction"])
    return x.new_empty((x.shape[0],) if reduction == "none" else ())


@torch.library.register_fake("spotlight::otsu_threshold")
def _(x, bins=BINS):
    return x.new_empty((x.shape[0],), dtype=_acc(x.dtype))


@torch.library.register_fake("spotlight::otsu_standardize")
def _(x, bins=BINS):
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
def _(x, k=K):
    return x.new_empty(x.shape)


@torch.library.register_fake("spotlight::_tunable_sigmoid_backward")
def _(grad, x, k):
    return x.new_empty(x.shape)


@torch.library.register_fake("spotlight::_tunable_sigmoid_double_backward")
def _(grad_out, grad, x, k):
    return x.new_empty(x.shape)


@torch.library.register_fake("spotlight::masked_mse")
def _(pred, target, mask, mse_normalization=MSE_NORMALIZATION, reduction=REDUCTION):
    _same_device(target, "target", pred, "pred")
    _same_device(mask, "mask", pred, "pred")
    return _reduced(pred, reduction)


@torch.library.register_fake("spotlight::soft_dice")
def _(soft, mask, eps=EPS, reduction=REDUCTION):
    _same_device(mask, "mask", soft, "soft")
    return _reduced(soft, reduction)


@torch.library.register_fake("spotlight::_masked_mse_forward")
def _(pred, target, mask, mse_normalization, reduction):
    _same_device(target, "target", pred, "pred")
    _same_device(mask, "mask", pred, "pred")
    return _reduced(pred, reduction), pred.new_empty((pred.shape[0], _FIELDS), dtype=torch.float64)


def _check_term_state(grad, sums, like, like_name: str, reduction: str) -> None:
    """The checks of ops/terms/terms_checks.h, check_term_state."""
    n = like.shape[0]
    outputs = n if reduction == "none" else 1
    if grad.numel() != outputs:
        raise ValueError(f"spotlight: grad must hold {outputs} values, got shape {_shape(grad)}")
    if sums.dim() != 2 or sums.shape[0] != n or sums.shape[1] != _FIELDS or sums.dtype != torch.float64:
        of = "" if sums.dtype == torch.float64 else " of another dtype"
        raise ValueError(f"spotlight: sums must be the forward's, float64 [{n}, {_FIELDS}], got {_shape(sums)}{of}")
    if grad.device != like.device or sums.device != like.device:
        raise RuntimeError(f"spotlight: grad and sums must be on the device of {like_name} ({like.device})")


@torch.library.register_fake("spotlight::_masked_mse_backward")
def _(grad, pred, target, mask, sums, mse_normalization, reduction, target_grad):
    _reduced(pred, reduction)
    _same_device(target, "target", pred, "pred")
    _same_device(mask, "mask", pred, "pred")
    _check_term_state(grad, sums, pred, "pred", reduction)
    return pred.new_empty(pred.shape), pred.new_empty(pred.shape if target_grad else (0,))


@torch.library.register_fake("spotlight::_soft_dice_forward")
def _(soft, mask, eps, reduction):
    _same_device(mask, "mask", soft, "soft")
    return _reduced(soft, reduction), soft.new_empty((soft.shape[0], _FIELDS), dtype=torch.float64)


@torch.library.register_fake("spotlight::_soft_dice_backward")
def _(grad, soft, mask, sums, eps, reduction):
    _reduced(soft, reduction)
    _same_device(mask, "mask", soft, "soft")
    _check_term_state(grad, sums, soft, "soft", reduction)
    return soft.new_empty(soft.shape)
