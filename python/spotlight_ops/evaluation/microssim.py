r"""MicroSSIM (Ashesh, Deschamps & Jug 2024): SSIM made fair to microscopy intensities.

Plain SSIM punishes a prediction for a background offset or a global gain it could not
know. MicroSSIM removes both before comparing:

1. background offsets :math:`o_Y, o_P`: the ``bg_percentile``-th percentile (default 3)
   of the target and of the prediction;
2. one common scale :math:`m = \max(Y - o_Y)`:
   :math:`Y' = (Y - o_Y)/m`, :math:`P' = (P - o_P)/m`;
3. the SSIM elements of :math:`(Y', P')` (local means :math:`\mu`, variances :math:`v`,
   covariance :math:`v_{YP}`, with scikit-image's window conventions: uniform window of
   ``win_size`` per axis or a Gaussian of ``sigma`` truncated at 3.5 sigma, sample
   covariance :math:`N_P/(N_P-1)`, :math:`C_1 = (0.01R)^2`, :math:`C_2 = (0.03R)^2`,
   :math:`R = \max Y' - \min Y'`);
4. the range-invariance factor :math:`\alpha` maximising the mean over voxels of

   .. math:: S(\alpha) = \frac{(2\alpha\mu_Y\mu_P + C_1)(2\alpha v_{YP} + C_2)}
                             {(\mu_Y^2 + \alpha^2\mu_P^2 + C_1)(v_Y + \alpha^2 v_P + C_2)},

   i.e. SSIM of :math:`Y'` against :math:`\alpha P'`;
5. MicroSSIM = mean of :math:`S(\alpha)` over the voxels away from the border (as SSIM),
   or over the ``mask`` voxels for the foreground value.

Differences from the reference package, stated: here one :math:`\alpha` is fitted per
volume pair (the reference fits one per dataset), and the same window is used to fit and
to score (the reference fits with a uniform window and scores 2D slices with a Gaussian
one; ``gaussian_weights`` and a given ``ri_factor`` reproduce that). Because offsets are
percentiles and :math:`\alpha` absorbs any gain, MicroSSIM is invariant to a positive
affine rescaling of the prediction, so it does not depend on :mod:`.rescaling`.
The ``microssim`` PyPI package pins ``torch<=2.14.0`` (it would downgrade this project's
torch), so this is an independent implementation, compared in the tests against the
port in the authors' ``cubic`` package.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.optimize import minimize_scalar

from ._validation import as_image, as_mask, positive, same_shape

_TRUNCATE = 3.5  # scikit-image's Gaussian SSIM truncation
_LOG_ALPHA_BOUND = np.log(1e4)  # alpha searched in [1e-4, 1e4]
_GRID_POINTS = 41


@dataclass(frozen=True)
class SSIMElements:
    """Local statistics of an image pair, cropped to where the window fits."""

    mean_target: np.ndarray
    mean_prediction: np.ndarray
    var_target: np.ndarray
    var_prediction: np.ndarray
    covariance: np.ndarray
    c1: float
    c2: float
    crop: int


@dataclass(frozen=True)
class MicroSSIMResult:
    """MicroSSIM over the volume (``value``), over the mask (``foreground``) and its fit."""

    value: float
    foreground: float
    ri_factor: float
    offset_target: float
    offset_prediction: float
    scale: float


def ssim_elements(
    target: np.ndarray,
    prediction: np.ndarray,
    data_range: float,
    win_size: int = 7,
    gaussian_weights: bool = False,
    sigma: float = 1.5,
) -> SSIMElements:
    """SSIM elements over every voxel (uncropped maps; ``crop`` says how much to trim)."""
    target = as_image("target", target)
    prediction = as_image("prediction", prediction)
    same_shape("prediction", prediction, "target", target)
    data_range = positive("data_range", data_range)
    if gaussian_weights:
        sigma = positive("sigma", sigma)
        win_size = 2 * int(_TRUNCATE * sigma + 0.5) + 1

        def smooth(a: np.ndarray) -> np.ndarray:
            return ndimage.gaussian_filter(a, sigma=sigma, truncate=_TRUNCATE)

    else:

        def smooth(a: np.ndarray) -> np.ndarray:
            return ndimage.uniform_filter(a, size=win_size)

    if win_size < 3 or win_size % 2 == 0:
        raise ValueError(f"win_size must be odd and at least 3, got {win_size}")
    if min(target.shape) < win_size:
        raise ValueError(f"every axis must be at least win_size={win_size}, got shape {target.shape}")
    samples = win_size**target.ndim
    cov_norm = samples / (samples - 1.0)  # sample covariance, as skimage's default
    mean_t, mean_p = smooth(target), smooth(prediction)
    var_t = cov_norm * (smooth(target * target) - mean_t * mean_t)
    var_p = cov_norm * (smooth(prediction * prediction) - mean_p * mean_p)
    cov = cov_norm * (smooth(target * prediction) - mean_t * mean_p)
    return SSIMElements(
        mean_t, mean_p, var_t, var_p, cov, (0.01 * data_range) ** 2, (0.03 * data_range) ** 2, (win_size - 1) // 2
    )


def ssim_map(elements: SSIMElements, ri_factor: float = 1.0) -> np.ndarray:
    """The SSIM map of the target against ``ri_factor * prediction`` (uncropped)."""
    a = float(ri_factor)
    e = elements
    numerator = (2 * a * e.mean_target * e.mean_prediction + e.c1) * (2 * a * e.covariance + e.c2)
    denominator = (e.mean_target**2 + a * a * e.mean_prediction**2 + e.c1) * (
        e.var_target + a * a * e.var_prediction + e.c2
    )
    return numerator / denominator


def _interior(array: np.ndarray, crop: int) -> np.ndarray:
    return array[tuple(slice(crop, n - crop) for n in array.shape)]


def fit_ri_factor(elements: SSIMElements) -> float:
    r"""The :math:`\alpha` maximising the interior mean of :func:`ssim_map`.

    A log-spaced grid over [1e-4, 1e4] finds the best basin (the mean SSIM is not
    guaranteed unimodal), then bounded Brent refines it between the grid neighbours.
    """
    fields = ("mean_target", "mean_prediction", "var_target", "var_prediction", "covariance")
    interior = (_interior(getattr(elements, name), elements.crop).ravel() for name in fields)
    cropped = SSIMElements(*interior, elements.c1, elements.c2, 0)

    def negative_mean(log_alpha: float) -> float:
        return -float(ssim_map(cropped, np.exp(log_alpha)).mean())

    grid = np.linspace(-_LOG_ALPHA_BOUND, _LOG_ALPHA_BOUND, _GRID_POINTS)
    best = int(np.argmin([negative_mean(g) for g in grid]))
    lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, _GRID_POINTS - 1)]
    result = minimize_scalar(negative_mean, bounds=(lo, hi), method="bounded", options={"xatol": 1e-10})
    return float(np.exp(result.x))


def _check_percentile(bg_percentile: float) -> float:
    bg_percentile = float(bg_percentile)
    if not 0 <= bg_percentile < 100:
        raise ValueError(f"bg_percentile must be in [0, 100), got {bg_percentile}")
    return bg_percentile


def _normalized(target: np.ndarray, prediction: np.ndarray, bg_percentile: float) -> tuple:
    """``(Y - o_Y) / m, (P - o_P) / m, o_Y, o_P, m``: offsets the ``bg_percentile``-th percentiles,
    ``m = max(Y - o_Y)`` (both normalized by the target's scale, as the ``microssim`` package does)."""
    bg_percentile = _check_percentile(bg_percentile)
    offset_t = float(np.percentile(target, bg_percentile))
    offset_p = float(np.percentile(prediction, bg_percentile))
    scale = float((target - offset_t).max())
    if scale <= 0:
        raise ValueError("target has no intensity above its background percentile; MicroSSIM is undefined")
    return (target - offset_t) / scale, (prediction - offset_p) / scale, offset_t, offset_p, scale


def micro_ssim(
    target: np.ndarray,
    prediction: np.ndarray,
    mask: np.ndarray | None = None,
    bg_percentile: float = 3.0,
    win_size: int = 7,
    gaussian_weights: bool = False,
    sigma: float = 1.5,
    ri_factor: float | None = None,
) -> MicroSSIMResult:
    """MicroSSIM of ``prediction`` against ``target`` (2D or 3D), see the module docstring.

    ``ri_factor`` given: use it instead of fitting. ``mask``: also report the mean of the
    map over the mask voxels (``foreground``; NaN without a mask or with an empty one).
    """
    target = as_image("target", target)
    prediction = as_image("prediction", prediction)
    same_shape("prediction", prediction, "target", target)
    if mask is not None:
        mask = as_mask("mask", mask, target.shape)
    target_n, prediction_n, offset_t, offset_p, scale = _normalized(target, prediction, bg_percentile)
    elements = ssim_elements(
        target_n, prediction_n, float(target_n.max() - target_n.min()), win_size, gaussian_weights, sigma
    )
    alpha = fit_ri_factor(elements) if ri_factor is None else positive("ri_factor", ri_factor)
    full_map = ssim_map(elements, alpha)
    value = float(_interior(full_map, elements.crop).mean())
    foreground = float(full_map[mask].mean()) if mask is not None and mask.any() else float("nan")
    return MicroSSIMResult(value, foreground, alpha, offset_t, offset_p, scale)


def micro_ssim_slices(
    target: np.ndarray,
    prediction: np.ndarray,
    mask: np.ndarray | None = None,
    bg_percentile: float = 3.0,
    fit_win_size: int = 7,
    sigma: float = 1.5,
) -> MicroSSIMResult:
    r"""MicroSSIM of a ZYX volume in the ``microssim`` package's convention: XY slices.

    The package (``microssim.MicroSSIM().fit(gt, pred)`` then ``score`` per 2D image) treats
    a 3D array as a stack of 2D images:

    1. offsets = ``bg_percentile``-th percentile of the whole stack (target and prediction),
       ``m = max(Y - o_Y)`` over the stack; both normalized as in :func:`micro_ssim`;
    2. :math:`\alpha` is fitted once for the stack: the SSIM elements of every slice
       (uniform ``fit_win_size`` window, each slice's own data range, cropped by the window
       radius) are pooled, and the mean of the scaled SSIM over all of them is maximised
       (the package keeps the ``C1, C2`` of the last slice for the pooled elements; so does
       this function, to give its numbers);
    3. each slice is scored with a Gaussian window (``sigma`` 1.5, truncated at 3.5 sigma,
       so 11 pixels), its own data range and the fitted :math:`\alpha`; the score of a slice
       is the mean of its map cropped by the window radius;
    4. MicroSSIM = the mean of the slice scores (the package returns the list).

    The foreground value is the mean of the slice maps (uncropped) over the ``mask`` voxels.
    Slices whose target is constant have no data range and are skipped (the package would give
    NaN). XY planes smaller than 11 pixels are an error naming the size.
    """
    target = as_image("target", target, ndim=(3,))
    prediction = as_image("prediction", prediction, ndim=(3,))
    same_shape("prediction", prediction, "target", target)
    if mask is not None:
        mask = as_mask("mask", mask, target.shape)
    _check_percentile(bg_percentile)
    score_window = 2 * int(_TRUNCATE * positive("sigma", sigma) + 0.5) + 1
    if min(target.shape[1:]) < max(score_window, fit_win_size):
        raise ValueError(
            f"XY planes of {target.shape[1:]} are smaller than MicroSSIM's {max(score_window, fit_win_size)}-pixel "
            "window (per-slice convention)"
        )
    target_n, prediction_n, offset_t, offset_p, scale = _normalized(target, prediction, bg_percentile)
    planes = [z for z in range(target.shape[0]) if target_n[z].max() > target_n[z].min()]
    if not planes:
        raise ValueError("every XY slice of the target is constant: MicroSSIM is undefined")
    pooled, last = [], None
    for z in planes:
        data_range = float(target_n[z].max() - target_n[z].min())
        last = ssim_elements(target_n[z], prediction_n[z], data_range, fit_win_size)
        pooled.append([_interior(getattr(last, name), last.crop).ravel() for name in
                       ("mean_target", "mean_prediction", "var_target", "var_prediction", "covariance")])
    stacked = SSIMElements(*(np.concatenate(parts) for parts in zip(*pooled)), last.c1, last.c2, 0)
    alpha = fit_ri_factor(stacked)
    scores, fg_sum, fg_count = [], 0.0, 0
    for z in planes:
        data_range = float(target_n[z].max() - target_n[z].min())
        elements = ssim_elements(target_n[z], prediction_n[z], data_range, gaussian_weights=True, sigma=sigma)
        slice_map = ssim_map(elements, alpha)
        scores.append(float(_interior(slice_map, elements.crop).mean()))
        if mask is not None:
            fg_sum += float(slice_map[mask[z]].sum())
            fg_count += int(mask[z].sum())
    foreground = fg_sum / fg_count if fg_count else float("nan")
    return MicroSSIMResult(float(np.mean(scores)), foreground, alpha, offset_t, offset_p, scale)
