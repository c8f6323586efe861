r"""Foreground fractions of a training batch, and the trainer's collapse warning built on them.

A Spotlight run that collapses predicts (almost) every voxel above the threshold T, or lets the
foreground vanish, while the loss sits on a plateau that looks like slow progress. The fraction
of voxels predicted above T, next to the targets' own fraction (``M = Y > T``, SPEC 2), shows it
at once. :func:`batch_fractions` gives both per batch: for the Spotlight loss from the counts its
fused pass made (``SpotlightLoss.fractions()``, no extra pass), for MSE runs from
:func:`foreground_fractions`. The trainer logs them (``log.csv`` columns :data:`FRACTION_COLUMNS`,
TensorBoard tags ``foreground_fraction/*``), and :class:`~spotlight_ops.collapse.CollapseMonitor`,
the judge ``SpotlightLoss``'s own guard uses, warns on stderr when they diverge (docs/collapse.md).
"""

from __future__ import annotations

from typing import Union

import torch
from torch import Tensor

from ..collapse import CollapseMonitor  # noqa: F401  (the trainer's judge: the library's)

# log.csv column -> TensorBoard tag
FRACTION_COLUMNS = {"fg_fraction_pred": "foreground_fraction/train_pred",
                    "fg_fraction_target": "foreground_fraction/train_target"}


def foreground_fractions(prediction: Tensor, target: Tensor, threshold: Union[None, float, Tensor] = None) -> Tensor:
    r"""``[fraction of P > T, fraction of Y > T]`` over the whole batch, as a float32 tensor of 2.

    ``threshold``: a float for every sample (0.0 on Otsu-standardized targets), a tensor of one value
    per sample, or None for each target sample's own Otsu threshold (SPEC 1; of each (sample, channel)
    for ``[N, C, ...]`` targets of several channels, as the data pipeline thresholds each channel on its
    own). The prediction is
    compared with the target's T, the threshold its soft mask is centred on. Stays on the device
    (no host sync).
    """
    if prediction.shape != target.shape:
        raise ValueError(f"prediction and target must have the same shape, got {tuple(prediction.shape)} and "
                         f"{tuple(target.shape)}")
    if prediction.dim() < 1 or prediction.numel() == 0:
        raise ValueError("prediction must hold at least one voxel")
    if threshold is None:
        import spotlight_ops

        y = target.detach().float()
        if y.dim() > 2 and y.shape[1] > 1:  # one threshold per (sample, channel)
            threshold = spotlight_ops.otsu_threshold(y.reshape(-1, *y.shape[2:])).reshape(y.shape[:2])
            t = threshold.reshape(*y.shape[:2], *([1] * (y.dim() - 2)))
            return torch.stack([(prediction.detach().float() > t).float().mean(), (y > t).float().mean()])
        threshold = spotlight_ops.otsu_threshold(y)
    if isinstance(threshold, Tensor):
        t = threshold.detach().to(device=target.device, dtype=torch.float32)
        if t.numel() != target.shape[0]:
            raise ValueError(f"threshold must hold one value per sample ({target.shape[0]}), got {t.numel()}")
        t = t.reshape(-1, *([1] * (target.dim() - 1)))
    else:
        t = float(threshold)
    p = prediction.detach().float()
    y = target.detach().float()
    return torch.stack([(p > t).float().mean(), (y > t).float().mean()])


def batch_fractions(criterion, prediction: Tensor, target: Tensor, threshold: Union[None, float, Tensor]) -> Tensor:
    """``[fraction of P > T, fraction of M]`` of the batch the criterion was just called on, float32,
    on the device: a :class:`~spotlight_ops.SpotlightLoss`'s from its fused pass's counts (its T and
    mask), any other criterion's from :func:`foreground_fractions` at ``threshold``."""
    from ..losses import SpotlightLoss

    if isinstance(criterion, SpotlightLoss):
        return criterion.fractions().float()
    return foreground_fractions(prediction, target, threshold)


def collapse_hint(config) -> str:
    """What to try, for the configured loss (a :class:`~spotlight_ops.training.TrainConfig`)."""
    if config.loss == "mse":
        return "Try a lower --lr, or check that the targets' foreground is predictable from the signal."
    first = ("the plain MSE term (--mse-term plain, as the default preset 'trained' has it; masked is the paper's)"
             if config.mse_term == "masked" else "a larger --lam (the MSE term's weight)")
    return f"Try {first}, a lower --lr, or --loss mse to check that the data train at all."
