r"""Foreground fractions of a training batch, and the collapse warning built on them.

A Spotlight run that collapses predicts (almost) every voxel above the threshold T, or lets the
foreground vanish, while the loss sits on a plateau that looks like slow progress. The fraction
of voxels predicted above T, next to the targets' own fraction (``M = Y > T``, SPEC 2), shows it
at once; :func:`foreground_fractions` computes both per batch, the trainer logs them
(``log.csv`` columns :data:`FRACTION_COLUMNS`, TensorBoard tags ``foreground_fraction/*``), and
:class:`CollapseMonitor` warns when they diverge (docs/collapse.md).
"""

from __future__ import annotations

from typing import Optional, Union

import torch
from torch import Tensor

# log.csv column -> TensorBoard tag
FRACTION_COLUMNS = {"fg_fraction_pred": "foreground_fraction/train_pred",
                    "fg_fraction_target": "foreground_fraction/train_target"}


def foreground_fractions(prediction: Tensor, target: Tensor, threshold: Union[None, float, Tensor] = None) -> Tensor:
    r"""``[fraction of P > T, fraction of Y > T]`` over the whole batch, as a float32 tensor of 2.

    ``threshold``: a float for every sample (0.0 on Otsu-standardized targets), a tensor of one value
    per sample, or None for each target sample's own Otsu threshold (SPEC 1). The prediction is
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

        threshold = spotlight_ops.otsu_threshold(target.detach().float())
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
