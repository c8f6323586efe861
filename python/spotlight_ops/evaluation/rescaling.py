r"""Putting targets and predictions in the same units before pixel metrics.

Two steps, both options of the evaluation:

**Target units** (``target_norm``):

- ``"otsu"`` (default): each target is Otsu-standardized, :math:`(Y - T) / \mathrm{std}(Y)`
  (SPEC 6), with the data pipeline's T (``otsu_threshold_volume``; ``smooth_threshold`` takes
  it from the smoothed copy, as training can) and std (``moments``, ddof 0): the numbers its
  lazy loader standardizes with, which agree with the eager ``otsu_standardize`` op within
  2e-6. These are the units in which ``spotlight train`` learns and ``spotlight predict``
  writes its predictions. (An already standardized target is unchanged, up to rounding.)
- ``"none"``: targets are used as given (camera counts, say).

Before any rescaling, each model's predictions are put into the targets' evaluation units
by the same map as the targets (:mod:`.prediction_units`): predictions in the targets' own
units are Otsu-standardized with the target's T and std, standardized predictions are taken
as they are (or mapped back, under ``target_norm="none"``).

**Prediction rescaling** (``rescale``), onto the target scale:

- ``"none"`` (default): ``P`` is used as it comes out of that unit map.
- ``"range"`` (the paper's appendix A.3): every prediction is min-max mapped to the
  range ``[lo, hi]`` of the *combined training targets*,
  :math:`P' = lo + (P - \min P)\,(hi - lo) / (\max P - \min P)`; ``[lo, hi]`` is given
  (``target_range``) or read from a training run (``training_run``: the run's manifest
  targets, in the units of ``target_norm``).
- ``"minmax"``: the same to each target's own range,
  :math:`P' = \min Y + (P - \min P)\,\frac{\max Y - \min Y}{\max P - \min P}`.
  It ties the prediction's darkest voxel to the target's, which punishes a model whose
  background is free to be darker (Spotlight's is).
- ``"affine"``: the least-squares fit :math:`P' = aP + b` minimising
  :math:`\sum (Y - aP - b)^2` over all voxels (a = cov(P, Y) / var(P)); the best any
  affine recalibration can do, useful to separate shape errors from scale errors.

A constant prediction maps to ``lo`` / ``min Y`` (``"range"``, ``"minmax"``) or to the
target mean (``"affine"``). The data range used by PSNR and SSIM is always the target's:
:math:`R = \max Y - \min Y`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._validation import as_image, same_shape

RESCALE_MODES = ("none", "range", "minmax", "affine")
TARGET_NORMS = ("otsu", "none")


def check_target_norm(target_norm: str) -> str:
    """Returns ``target_norm`` after checking it is one of :data:`TARGET_NORMS`."""
    if target_norm not in TARGET_NORMS:
        raise ValueError(f"target_norm must be one of {TARGET_NORMS}, got {target_norm!r}")
    return target_norm


@dataclass(frozen=True)
class Standardization:
    """The Otsu standardization of one target, ``x -> (x - T) / s`` (float64)."""

    threshold: float  # T, the target's Otsu threshold
    std: float  # s, the target's std (ddof 0; 1 for a constant target)
    mean: float = 0.0  # the target's mean: the offset of z-scored units, (x - mean) / s

    def apply(self, volume: np.ndarray) -> np.ndarray:
        return (np.asarray(volume, dtype=np.float64) - self.threshold) / self.std

    def invert(self, volume: np.ndarray) -> np.ndarray:
        return np.asarray(volume, dtype=np.float64) * self.std + self.threshold


def otsu_standardization(target: np.ndarray, smooth_threshold: bool = False) -> Standardization:
    """The data pipeline's T and std of ``target`` (``otsu_threshold_volume``, ``moments``)."""
    from ..data.preprocess import moments, otsu_threshold_volume

    target = as_image("target", target)
    mean, std = moments(target)
    return Standardization(otsu_threshold_volume(target, smooth=bool(smooth_threshold)), std if std > 0 else 1.0, mean)


def normalize_target(target: np.ndarray, target_norm: str = "otsu", smooth_threshold: bool = False) -> np.ndarray:
    """The target in the evaluation's units (float64): Otsu-standardized as the data pipeline does, or as given."""
    check_target_norm(target_norm)
    target = as_image("target", target)
    if target_norm == "none":
        return target
    return otsu_standardization(target, smooth_threshold).apply(target)


def check_range(value) -> tuple[float, float]:
    """``(lo, hi)`` as two finite floats with ``lo < hi``; an error names ``target_range``."""
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"target_range must be two numbers (lo, hi), got {value!r}") from err
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise ValueError(f"target_range must be finite with lo < hi, got {(lo, hi)}")
    return lo, hi


def training_target_range(run_dir, target_norm: str = "otsu") -> tuple[float, float]:
    """Min and max over the combined training targets of a ``spotlight train`` run folder.

    Reads the run's ``config.yaml`` (``train_csv``, ``smooth_threshold``), then every target of
    that manifest, normalized by ``target_norm`` as the evaluation normalizes its targets.
    """
    from pathlib import Path

    import yaml

    from ..data import read_manifest, read_volume

    run_dir = Path(run_dir)
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise FileNotFoundError(f"training_run: no config.yaml in {run_dir} (not a spotlight train run folder)")
    config = yaml.safe_load(config_path.read_text()) or {}
    manifest = config.get("train_csv")
    if not manifest:
        raise ValueError(f"training_run: {config_path} names no train_csv")
    manifest = Path(manifest)
    if not manifest.is_absolute() and not manifest.is_file():
        manifest = run_dir / manifest
    lo, hi = np.inf, -np.inf
    for row in read_manifest(manifest):
        target = normalize_target(read_volume(row.target, "target"), target_norm, config.get("smooth_threshold", False))
        lo, hi = min(lo, float(target.min())), max(hi, float(target.max()))
    return check_range((lo, hi))


def check_rescale(rescale: str) -> str:
    """Returns ``rescale`` after checking it is one of :data:`RESCALE_MODES`."""
    if rescale not in RESCALE_MODES:
        raise ValueError(f"rescale must be one of {RESCALE_MODES}, got {rescale!r}")
    return rescale


def target_data_range(target: np.ndarray) -> float:
    """``max(Y) - min(Y)``; a constant target has no range and is an error."""
    target = as_image("target", target)
    data_range = float(target.max() - target.min())
    if data_range <= 0:
        raise ValueError("target is constant: its intensity range (the PSNR/SSIM data range) is 0")
    return data_range


def rescale_to_target(
    prediction: np.ndarray, target: np.ndarray, rescale: str = "none", target_range=None
) -> np.ndarray:
    """The prediction on the target's scale (float64), by the rule named in ``rescale``.

    ``target_range``: ``(lo, hi)`` of the combined training targets, for ``rescale="range"``.
    """
    check_rescale(rescale)
    target = as_image("target", target)
    prediction = as_image("prediction", prediction)
    same_shape("prediction", prediction, "target", target)
    if rescale == "none":
        return prediction.copy()
    if rescale == "range":
        if target_range is None:
            raise ValueError("rescale='range' needs target_range=(lo, hi) or training_run=RUN_FOLDER")
        lo, hi = check_range(target_range)
        p_lo, p_hi = float(prediction.min()), float(prediction.max())
        if p_hi == p_lo:
            return np.full_like(target, lo)
        return lo + (prediction - p_lo) * ((hi - lo) / (p_hi - p_lo))
    if rescale == "affine":
        centred = prediction - prediction.mean()
        variance = float(np.mean(centred**2))
        if variance == 0:  # nothing to fit: the best constant is the target mean
            return np.full_like(target, target.mean())
        slope = float(np.mean(centred * (target - target.mean()))) / variance
        return target.mean() + slope * centred
    lo, hi = float(prediction.min()), float(prediction.max())
    if hi == lo:
        return np.full_like(target, target.min())
    return target.min() + (prediction - lo) * ((target.max() - target.min()) / (hi - lo))
