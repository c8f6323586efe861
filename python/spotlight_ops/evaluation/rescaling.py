r"""Putting a prediction on the target's intensity scale before pixel metrics.

A virtual stain comes out in whatever units the network was trained in (z-scores,
Otsu-standardized values, [0, 1]); the target is in camera counts. PSNR and SSIM
need both on one scale and an explicit data range. The convention here:

- ``"minmax"`` (default, the paper's "rescaled to the target's intensity range"):
  :math:`P' = \min Y + (P - \min P)\,\frac{\max Y - \min Y}{\max P - \min P}`, so
  ``P'`` spans exactly ``[min Y, max Y]``. A constant prediction maps to ``min Y``.
- ``"affine"``: the least-squares fit :math:`P' = aP + b` minimising
  :math:`\sum (Y - aP - b)^2` over all voxels (a = cov(P, Y) / var(P)); the best any
  affine recalibration can do, useful to separate shape errors from scale errors.
- ``"none"``: ``P`` is used as given (it must already be in target units).

The data range used by PSNR and SSIM is always the target's: :math:`R = \max Y - \min Y`.
"""

from __future__ import annotations

import numpy as np

from ._validation import as_image, same_shape

RESCALE_MODES = ("minmax", "affine", "none")


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


def rescale_to_target(prediction: np.ndarray, target: np.ndarray, rescale: str = "minmax") -> np.ndarray:
    """The prediction on the target's scale (float64), by the rule named in ``rescale``."""
    check_rescale(rescale)
    target = as_image("target", target)
    prediction = as_image("prediction", prediction)
    same_shape("prediction", prediction, "target", target)
    if rescale == "none":
        return prediction.copy()
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
