r"""Foreground fractions of a training batch, and the collapse warning built on them.

A Spotlight run that collapses predicts (almost) every voxel above the threshold T, or lets the
foreground vanish, while the loss sits on a plateau that looks like slow progress. The fraction
of voxels predicted above T, next to the targets' own fraction (``M = Y > T``, SPEC 2), shows it
at once; :func:`foreground_fractions` computes both per batch, the trainer logs them
(``log.csv`` columns :data:`FRACTION_COLUMNS`, TensorBoard tags ``foreground_fraction/*``), and
:class:`CollapseMonitor` warns when they diverge (docs/collapse.md).
"""

from __future__ import annotations

import math
from collections import deque
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


def _logit(fraction: float) -> float:
    p = min(max(fraction, 1e-4), 1.0 - 1e-4)  # a window of 0 % or 100 % stays finite
    return math.log(p / (1.0 - p))


class CollapseMonitor:
    r"""Warns when the predicted foreground fraction leaves the targets' for a sustained stretch.

    Over the last ``window`` logged iterations it pools the predicted and the target fractions
    (means p and t) and compares their odds: the run is diverging when
    ``|logit(p) - logit(t)| > log(odds_ratio)``, that is when the odds of a voxel being predicted
    above T differ from the targets' odds by more than ``odds_ratio`` (default 5) either way
    (everything foreground, or nothing). Nothing is judged before the window is full. One warning
    per episode: the monitor re-arms once the log-odds gap falls below half the limit.

    Calibration (docs/collapse.md): on the real Allen pair, over 50-iteration windows, MSE runs stay
    below a gap of 0.3 (odds 1.3 times), the default Spotlight loss below 0.6, the paper's loss sits
    above 3.2 (p near 100 % against t near 36 %) once the window is full; log(5) = 1.61.
    """

    def __init__(self, window: int = 50, odds_ratio: float = 5.0, hint: str = "") -> None:
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be a positive integer, got {window!r}")
        if not odds_ratio > 1.0:
            raise ValueError(f"odds_ratio must be > 1, got {odds_ratio!r}")
        self.window = window
        self.limit = math.log(odds_ratio)
        self.hint = hint
        self._pred: deque = deque(maxlen=window)
        self._target: deque = deque(maxlen=window)
        self.alarmed = False
        self.warnings: list[str] = []

    def gap(self) -> Optional[float]:
        """logit(mean predicted) - logit(mean target) over the window; None until it is full."""
        if len(self._pred) < self.window:
            return None
        return _logit(sum(self._pred) / self.window) - _logit(sum(self._target) / self.window)

    def update(self, iteration: int, pred_fraction: float, target_fraction: float) -> Optional[str]:
        """Adds one iteration's fractions; returns the warning text when a divergence starts."""
        if not (math.isfinite(pred_fraction) and math.isfinite(target_fraction)):
            return None
        self._pred.append(float(pred_fraction))
        self._target.append(float(target_fraction))
        gap = self.gap()
        if gap is None:
            return None
        if self.alarmed:
            self.alarmed = abs(gap) > self.limit / 2
            return None
        if abs(gap) <= self.limit:
            return None
        self.alarmed = True
        p, t = sum(self._pred) / self.window, sum(self._target) / self.window
        side = "above" if gap > 0 else "below"
        message = (f"WARNING: iteration {iteration}: over the last {self.window} iterations the model predicted "
                   f"{100 * p:.1f} % of the training voxels above the threshold T, the targets have {100 * t:.1f} % "
                   f"(odds {math.exp(abs(gap)):.0f} times {'higher' if gap > 0 else 'lower'}): training is "
                   f"collapsing {side} T (docs/collapse.md).")
        if self.hint:
            message += " " + self.hint
        self.warnings.append(message)
        return message


def collapse_hint(config) -> str:
    """What to try, for the configured loss (a :class:`~spotlight_ops.training.TrainConfig`)."""
    if config.loss == "mse":
        return "Try a lower --lr, or check that the targets' foreground is predictable from the signal."
    first = ("the plain MSE term (--mse-term plain, the default; masked is the paper's)"
             if config.mse_term == "masked" else "a larger --lam (the MSE term's weight)")
    return f"Try {first}, a lower --lr, or --loss mse to check that the data train at all."
