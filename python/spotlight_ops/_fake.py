"""Fake (meta) kernels: output shapes and dtypes of every op, so that
``torch.compile(fullgraph=True)`` and ``torch.export`` trace them with no data."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .defaults import (BINS, CHOICES, DICE_DENOMINATOR, EMPTY_POOL, EPS, K, LAM, MASK_RULE, MSE_NORMALIZATION,
                       REDUCTION, REDUCTIONS, SOFT_MASK)

_FIELDS = 6  # per-pool sums of the fused loss (spotlight::LossSums)


def _acc(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _same_device(t, name: str, like: Tensor, like_name: str) -> None:
    """The device check of the real kernels: a meta or fake input must not
    hide a device mismatch behind a shape-only kernel."""
    if t is not None and t.device != like.device:
        raise RuntimeError(f"spotlight: {name} must be on the device of {like_name} ({like.device}), got {t.device}")


def _reduced(x: Tensor, reduction: str) -> Tensor:
    _choice("reduction", reduction, REDUCTIONS)
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
        raise ValueError(f"spotlight: sums must be float64 [{n}, {_FIELDS}], got {_shape(sums)} {_name(sums.dtype)}")
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


# The argument checks of the loss kernels (ops/loss/loss_checks.h, ops/common.h,
# spotlight/core/options.hpp), in the same order with the same messages: under
# FakeTensorMode, torch.compile and torch.export a bad call fails while tracing.
_C10_NAMES = {torch.float32: "Float", torch.float64: "Double", torch.float16: "Half", torch.bfloat16: "BFloat16",
              torch.int64: "Long", torch.int32: "Int", torch.int16: "Short", torch.int8: "Char",
              torch.uint8: "Byte", torch.bool: "Bool"}
_FLOATING = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def _name(dtype: torch.dtype) -> str:
    return _C10_NAMES.get(dtype, str(dtype))


def _shape(t: Tensor) -> str:
    return "[" + ", ".join(str(d) for d in t.shape) + "]"


def _check_floating(t, name: str) -> None:
    if t is None:
        raise RuntimeError(f"spotlight: {name} must be a tensor, got None")
    if t.dtype not in _FLOATING:
        raise TypeError(f"spotlight: {name} must be float32, float64, float16 or bfloat16, got {_name(t.dtype)}")
    if t.layout != torch.strided:
        raise RuntimeError(f"spotlight: {name} must be a dense (strided) tensor, got layout {t.layout}")


def _check_same(a: Tensor, a_name: str, b: Tensor, b_name: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"spotlight: {b_name} must have the shape of {a_name} {_shape(a)}, got {_shape(b)}")
    if a.dtype != b.dtype:
        raise TypeError(f"spotlight: {b_name} must have the dtype of {a_name} ({_name(a.dtype)}), got {_name(b.dtype)}")
    _same_device(b, b_name, a, a_name)


def _samples(t: Tensor, name: str) -> int:
    if t.dim() < 1:
        raise ValueError(f"spotlight: {name} must have a batch dimension (at least 1 dim), got a 0-dim tensor")
    if t.shape[0] == 0 or t.numel() == 0:
        raise ValueError(f"spotlight: {name} must hold at least one sample of at least one voxel, got shape "
                         f"{_shape(t)}")
    return t.shape[0]


def _choice(name: str, value: str, allowed: tuple) -> None:
    if value not in allowed:
        if len(allowed) == 2:
            listed = f"'{allowed[0]}' or '{allowed[1]}'"
        else:
            listed = "one of " + ", ".join(f"'{a}'" for a in allowed)
        raise ValueError(f"spotlight: {name} must be {listed}, got '{value}'")


def _check_options(lam, k, eps, bins, mse_normalization, reduction, soft_mask=SOFT_MASK, mask_rule=MASK_RULE,
                   dice_denominator=DICE_DENOMINATOR, empty_pools=EMPTY_POOL) -> None:
    if not 2 <= bins <= 1 << 24:
        raise ValueError(f"spotlight: bins must be an integer in [2, 16777216], got {bins}")
    _choice("mse_normalization", mse_normalization, CHOICES["mse_normalization"])
    _choice("reduction", reduction, CHOICES["reduction"])
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"spotlight: lam must lie in [0, 1], got {lam:g}")
    if not -1.0 < k < 1.0:
        raise ValueError(f"spotlight: k must lie in the open interval (-1, 1), got {k:g}")
    if not (eps >= 0.0 and math.isfinite(eps)):
        raise ValueError(f"spotlight: eps must be finite and >= 0, got {eps:g}")
    _choice("soft_mask", soft_mask, CHOICES["soft_mask"])
    _choice("mask_rule", mask_rule, CHOICES["mask_rule"])
    _choice("dice_denominator", dice_denominator, CHOICES["dice_denominator"])
    _choice("empty_pools", empty_pools, CHOICES["empty_pools"])
    if soft_mask != "clamped" and k > 0.0:
        raise ValueError(f"spotlight: k must be <= 0 for soft_mask '{soft_mask}' (the sigmoid of an unclamped "
                         f"P - T has a pole for k > 0), got {k:g}")


def _pools(pred: Tensor, per_channel: bool) -> int:
    n = _samples(pred, "pred")
    if not per_channel:
        return n
    if pred.dim() < 2:
        raise ValueError(f"spotlight: per_channel needs pred of at least 2 dims [N, C, ...], got shape {_shape(pred)}")
    return n * pred.shape[1]


def _check_threshold(threshold, pred: Tensor) -> None:
    if threshold is None:
        return
    if threshold.dtype.is_complex or threshold.dtype == torch.bool:
        raise TypeError(f"spotlight: threshold must be a real-valued tensor, got {_name(threshold.dtype)}")
    n = pred.shape[0]
    if not (threshold.dim() == 0 or (threshold.dim() == 1 and threshold.shape[0] in (n, 1))):
        raise ValueError(f"spotlight: threshold must be a 0-dim tensor or hold 1 value or one value per sample ({n}), "
                         f"got shape {_shape(threshold)}")
    _same_device(threshold, "threshold", pred, "pred")


def _check_mask(mask, target: Tensor) -> None:
    if mask is None:
        return
    if mask.layout != torch.strided:
        raise RuntimeError(f"spotlight: mask must be a dense (strided) tensor, got layout {mask.layout}")
    if mask.dtype != torch.bool:
        raise TypeError(f"spotlight: mask must be a bool tensor, got {_name(mask.dtype)}")
    if mask.shape != target.shape:
        raise ValueError(f"spotlight: mask must have the shape of target {_shape(target)}, got {_shape(mask)}")
    _same_device(mask, "mask", target, "target")


def _loss_output(pred: Tensor, reduction: str, per_channel: bool) -> Tensor:
    if reduction != "none":
        return pred.new_empty(())
    return pred.new_empty((pred.shape[0], pred.shape[1]) if per_channel else (pred.shape[0],))


def _check_loss_call(pred, target, threshold, lam, k, eps, bins, mse_normalization, reduction, soft_mask, mask,
                     mask_rule, dice_denominator, empty_pools, per_channel) -> int:
    _check_options(lam, k, eps, bins, mse_normalization, reduction, soft_mask, mask_rule, dice_denominator,
                   empty_pools)
    _check_floating(pred, "pred")
    _check_floating(target, "target")
    _check_same(pred, "pred", target, "target")
    pools = _pools(pred, per_channel)
    _check_threshold(threshold, pred)
    _check_mask(mask, target)
    return pools


@torch.library.register_fake("spotlight::loss")
def _(pred, target, threshold=None, lam=LAM, k=K, eps=EPS, bins=BINS, mse_normalization=MSE_NORMALIZATION,
      reduction=REDUCTION, *, soft_mask=SOFT_MASK, mask=None, mask_rule=MASK_RULE, dice_denominator=DICE_DENOMINATOR,
      empty_pools=EMPTY_POOL, per_channel=False):
    _check_loss_call(pred, target, threshold, lam, k, eps, bins, mse_normalization, reduction, soft_mask, mask,
                     mask_rule, dice_denominator, empty_pools, per_channel)
    return _loss_output(pred, reduction, per_channel)


@torch.library.register_fake("spotlight::_loss_forward")
def _(pred, target, threshold, lam, k, eps, bins, mse_normalization, reduction, *, soft_mask=SOFT_MASK, mask=None,
      mask_rule=MASK_RULE, dice_denominator=DICE_DENOMINATOR, empty_pools=EMPTY_POOL, per_channel=False):
    pools = _check_loss_call(pred, target, threshold, lam, k, eps, bins, mse_normalization, reduction, soft_mask,
                             mask, mask_rule, dice_denominator, empty_pools, per_channel)
    return (_loss_output(pred, reduction, per_channel), pred.new_empty((pools,), dtype=_acc(pred.dtype)),
            pred.new_empty((pools, _FIELDS), dtype=torch.float64))


@torch.library.register_fake("spotlight::_loss_backward")
def _(grad, pred, target, thresholds, sums, lam, k, eps, mse_normalization, reduction, target_grad, *,
      soft_mask=SOFT_MASK, mask=None, mask_rule=MASK_RULE, dice_denominator=DICE_DENOMINATOR, empty_pools=EMPTY_POOL,
      per_channel=False):
    _check_options(lam, k, eps, BINS, mse_normalization, reduction, soft_mask, mask_rule, dice_denominator,
                   empty_pools)
    _check_floating(pred, "pred")
    _check_same(pred, "pred", target, "target")
    pools = _pools(pred, per_channel)
    outputs = pools if reduction == "none" else 1
    if grad.numel() != outputs:
        raise ValueError(f"spotlight: grad must hold {outputs} values, got shape {_shape(grad)}")
    return pred.new_empty(pred.shape), pred.new_empty(pred.shape if target_grad else (0,))
