r"""Pixel-level similarity of a prediction to its target, whole volume or inside a mask.

All functions take the prediction already on the target's scale (see
:mod:`.rescaling`) and an explicit data range ``R`` (the target's max - min).

- PSNR: :math:`10 \log_{10}(R^2 / \mathrm{MSE})`, MSE the mean of :math:`(Y - P)^2`
  over all voxels or over the masked voxels (the same ``R`` in both cases);
  ``inf`` when the MSE is 0.
- SSIM: scikit-image's ``structural_similarity`` on the whole 2D/3D array (uniform
  7-voxel window, sample covariance, :math:`C_1 = (0.01R)^2`, :math:`C_2 = (0.03R)^2`).
  Whole volume: skimage's value (the SSIM map averaged away from the border where the
  window does not fit). Masked: the mean of the same SSIM map over the mask voxels.
  The window shrinks to the largest odd size that fits a thin axis (at least 3).
- Pearson: :math:`r = \sum (y-\bar y)(p - \bar p) / \sqrt{\sum (y-\bar y)^2 \sum (p-\bar p)^2}`
  over all or masked voxels; NaN when either side is constant.
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity

from ._validation import as_image, as_mask, positive, same_shape


def _pair(target: np.ndarray, prediction: np.ndarray, mask: np.ndarray | None):
    target = as_image("target", target)
    prediction = as_image("prediction", prediction)
    same_shape("prediction", prediction, "target", target)
    if mask is not None:
        mask = as_mask("mask", mask, target.shape)
    return target, prediction, mask


def _masked(values: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    return values.ravel() if mask is None else values[mask]


def psnr(target: np.ndarray, prediction: np.ndarray, data_range: float, mask: np.ndarray | None = None) -> float:
    """Peak signal-to-noise ratio in dB; NaN for an empty mask."""
    target, prediction, mask = _pair(target, prediction, mask)
    data_range = positive("data_range", data_range)
    errors = _masked((target - prediction) ** 2, mask)
    if errors.size == 0:
        return float("nan")
    mse = float(errors.mean())
    if mse == 0:
        return float("inf")
    return float(10.0 * np.log10(data_range**2 / mse))


def ssim_window(shape: tuple[int, ...], win_size: int = 7) -> int:
    """The SSIM window: ``win_size`` or the largest odd size fitting the thinnest axis."""
    if int(win_size) < 3 or int(win_size) % 2 == 0:
        raise ValueError(f"win_size must be odd and at least 3, got {win_size}")
    thinnest = min(shape)
    if thinnest < 3:
        raise ValueError(f"SSIM needs at least 3 voxels along every axis, got shape {tuple(shape)}")
    fitted = min(int(win_size), thinnest if thinnest % 2 else thinnest - 1)
    return fitted


def ssim(
    target: np.ndarray,
    prediction: np.ndarray,
    data_range: float,
    mask: np.ndarray | None = None,
    win_size: int = 7,
) -> float:
    """SSIM over the whole array (skimage's value) or its map averaged over ``mask``."""
    target, prediction, mask = _pair(target, prediction, mask)
    data_range = positive("data_range", data_range)
    window = ssim_window(target.shape, win_size)
    if mask is None:
        return float(structural_similarity(target, prediction, data_range=data_range, win_size=window))
    if not mask.any():
        return float("nan")
    _, ssim_map = structural_similarity(target, prediction, data_range=data_range, win_size=window, full=True)
    return float(ssim_map[mask].mean())


def pearson(target: np.ndarray, prediction: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Pearson correlation coefficient; NaN when fewer than 2 voxels or a constant side."""
    target, prediction, mask = _pair(target, prediction, mask)
    y = _masked(target, mask)
    p = _masked(prediction, mask)
    if y.size < 2:
        return float("nan")
    y = y - y.mean()
    p = p - p.mean()
    denominator = float(np.sqrt(np.dot(y, y) * np.dot(p, p)))
    if denominator == 0:
        return float("nan")
    return float(np.clip(np.dot(y, p) / denominator, -1.0, 1.0))
