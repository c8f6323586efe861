r"""The collapse guard and the units check of :class:`~spotlight_ops.SpotlightLoss` (docs/collapse.md).

A Spotlight run that collapses predicts (almost) every voxel above the threshold T, or lets the
foreground vanish, while the loss sits on a plateau that looks like slow progress. The fused pass
already counts what shows it: the voxels predicted above T (``P > T``) and the target's foreground
(``M``), per pool (``spotlight::LossSums``, the second output of the private op
``torch.ops.spotlight._loss_and_sums``). :class:`CollapseMonitor` judges a run from those fractions;
:class:`CollapseGuard` feeds it from a criterion's training calls with at most one host sync every
``check_every`` calls (and one at the first call), and warns with Python :mod:`warnings`:

* **collapse**: over the last ``window`` calls the odds of "predicted above T" differ from the
  targets' by more than ``odds_ratio`` either way (``|logit(p) - logit(t)| > log 5``), once per
  episode (the warning re-arms when the gap falls below half the limit);
* **units** (once each): a given threshold with every voxel of every pool above it, in every call
  since the previous check (targets not standardized for the T they are given); or a loss per pool
  above ``1000 * (1 - lam)`` in every such call: the MSE term is then over 999 times what the Dice
  term (at most ``1 - lam``) can add, so the Dice term cannot steer training, and the soft mask,
  whose step is one unit of ``P - T`` wide, is a hard step. Standardized targets (unit std)
  give losses of order 1.
"""

from __future__ import annotations

import math
import warnings
from collections import deque
from typing import Optional

import torch
from torch import Tensor

# The scale rule of the units check: a loss per pool above this times (1 - lam).
UNITS_LOSS_RATIO = 1000.0


class CollapseWarning(UserWarning):
    """A Spotlight criterion's predictions are collapsing, or its targets are in other units than T assumes."""


def _logit(fraction: float) -> float:
    p = min(max(fraction, 1e-4), 1.0 - 1e-4)  # a window of 0 % or 100 % stays finite
    return math.log(p / (1.0 - p))


class CollapseMonitor:
    r"""Judges whether the predicted foreground fraction leaves the targets' for a sustained stretch.

    Over the last ``window`` updates (training iterations, or a criterion's calls) it pools the
    predicted and the target fractions (means p and t) and compares their odds: the run is
    diverging when ``|logit(p) - logit(t)| > log(odds_ratio)``, that is when the odds of a voxel
    being predicted above T differ from the targets' odds by more than ``odds_ratio`` (default 5)
    either way (everything foreground, or nothing). Nothing is judged before the window is full.
    One warning per episode: the monitor re-arms once the log-odds gap falls below half the limit.

    Calibration (docs/collapse.md): on the real Allen pair, over 50-iteration windows, MSE runs stay
    below a gap of 0.3 (odds 1.3 times), the default Spotlight loss below 0.6, the paper's loss sits
    above 3.2 (p near 100 % against t near 36 %) once the window is full; log(5) = 1.61.
    """

    def __init__(self, window: int = 50, odds_ratio: float = 5.0, hint: str = "", unit: str = "iteration",
                 prefix: str = "WARNING: ") -> None:
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be a positive integer, got {window!r}")
        if not odds_ratio > 1.0:
            raise ValueError(f"odds_ratio must be > 1, got {odds_ratio!r}")
        self.window = window
        self.limit = math.log(odds_ratio)
        self.hint, self.unit, self.prefix = hint, unit, prefix
        self._pred: deque = deque(maxlen=window)
        self._target: deque = deque(maxlen=window)
        self.alarmed = False
        self.warnings: list[str] = []

    def gap(self) -> Optional[float]:
        """logit(mean predicted) - logit(mean target) over the window; None until it is full."""
        if len(self._pred) < self.window:
            return None
        return _logit(sum(self._pred) / self.window) - _logit(sum(self._target) / self.window)

    def update(self, step: int, pred_fraction: float, target_fraction: float) -> Optional[str]:
        """Adds one step's fractions; returns the warning text when a divergence starts."""
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
        message = (f"{self.prefix}{self.unit} {step}: over the last {self.window} {self.unit}s the model predicted "
                   f"{100 * p:.1f} % of the training voxels above the threshold T, the targets have {100 * t:.1f} % "
                   f"(odds {math.exp(abs(gap)):.0f} times {'higher' if gap > 0 else 'lower'}): training is "
                   f"collapsing {side} T (docs/collapse.md).")
        if self.hint:
            message += " " + self.hint
        self.warnings.append(message)
        return message


def library_hint(mse_term: str) -> str:
    """What to try, for a :class:`~spotlight_ops.SpotlightLoss` with MSE term ``mse_term``."""
    first = ('SpotlightLoss.from_preset("trained") (mse_term="plain": the MSE over every voxel)'
             if mse_term == "masked" else "a larger lam (the MSE term's weight)")
    return (f"Try {first}, a lower learning rate, or torch.nn.MSELoss() to check that the data train at all; "
            f"collapse_warning=False silences this.")


class CollapseGuard:
    """Feeds a :class:`CollapseMonitor` from a criterion's training calls and runs the units check.

    :meth:`record` keeps each call's loss value and per-pool sums on their device; at the first
    call and then every ``check_every`` calls, :meth:`check` reads them in one host sync and warns
    (:class:`CollapseWarning`). ``lam``: the loss's MSE weight (the scale rule's ``1 - lam``).
    """

    def __init__(self, lam: float, hint: str, check_every: int = 25, window: int = 50,
                 odds_ratio: float = 5.0) -> None:
        if isinstance(check_every, bool) or not isinstance(check_every, int) or check_every < 1:
            raise ValueError(f"check_every must be a positive integer, got {check_every!r}")
        self.lam, self.check_every = float(lam), check_every
        self.monitor = CollapseMonitor(window, odds_ratio, hint=hint, unit="call", prefix="SpotlightLoss: ")
        self.calls = 0
        self._pending: list = []
        self._warned_units: set = set()

    def record(self, value: Tensor, sums: Tensor, voxels: int, pools_summed: int, given_threshold: bool) -> None:
        """One training call: its loss ``value``, its ``sums`` ([pools, F], on the device), the voxel
        count of the batch, the pools its value adds up (``reduction="sum"``; else 1) and whether the
        mask came from a given T (a given threshold, no given mask). Device work and host syncs
        wait for :meth:`check`."""
        self.calls += 1
        self._pending.append((value.detach(), sums, voxels, pools_summed, given_threshold))
        if self.calls == 1 or len(self._pending) >= self.check_every:
            self.check()

    @staticmethod
    def _rows(pending: list) -> list:
        """(fraction predicted above T, fraction of the mask, loss per pool) of each pending call."""
        values = [v for v, *_ in pending]
        sums = [s for _, s, *_ in pending]
        if all(s.shape == sums[0].shape for s in sums) and all(v.dim() == 0 for v in values):
            counts = torch.ops.spotlight._loss_counts(torch.stack(sums))  # one op for every call
            per_pool = torch.stack(values).double()
        else:
            counts = torch.stack([torch.ops.spotlight._loss_counts(s) for s in sums])
            per_pool = torch.stack([v.double().mean() for v in values])
        scale = torch.tensor([[1.0 / n, 1.0 / n, 1.0 / p] for _, _, n, p, _ in pending], dtype=torch.float64)
        return (torch.cat([counts, per_pool[:, None]], dim=1).cpu() * scale).tolist()  # the one host sync

    def check(self) -> None:
        """Reads the pending calls (one host sync) and warns where a rule says so."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        first = self.calls - len(pending) + 1
        rows = self._rows(pending)
        for i, (pred_fraction, target_fraction, _) in enumerate(rows):
            message = self.monitor.update(first + i, pred_fraction, target_fraction)
            if message:
                warnings.warn(message, CollapseWarning, stacklevel=4)
        if all(given for *_, given in pending) and all(t == 1.0 for _, t, _ in rows):
            self._units("threshold", "SpotlightLoss: every voxel of every sample lay above the given threshold T "
                                     f"in calls {first}-{self.calls}: the targets are not in the units T assumes. "
                                     "Standardize them with spotlight_ops.otsu_standardize (T = 0 is then each "
                                     "sample's Otsu threshold), or pass threshold=None for the Otsu threshold of "
                                     "each target sample.")
        bound = UNITS_LOSS_RATIO * (1.0 - self.lam)
        if self.lam < 1.0 and all(v > bound for *_, v in rows):
            smallest = min(v for *_, v in rows)
            self._units("scale", f"SpotlightLoss: the loss per pool was at least {smallest:.3g} in calls "
                                 f"{first}-{self.calls}, over {UNITS_LOSS_RATIO:g} times the most the Dice term can "
                                 f"add (1 - lam = {1.0 - self.lam:g}): at this scale the Dice term cannot steer "
                                 "training and the soft mask is a hard step. Standardize the targets with "
                                 "spotlight_ops.otsu_standardize (the soft mask's step is one unit of P - T wide).")

    def _units(self, rule: str, message: str) -> None:
        if rule not in self._warned_units:
            self._warned_units.add(rule)
            warnings.warn(message, CollapseWarning, stacklevel=5)
