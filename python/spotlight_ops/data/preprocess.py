r"""Per-volume preprocessing of the Spotlight/F-net pipeline.

* signal: ``(x - mean(x)) / std(x)`` (F-net's standardization; std 1 for a constant volume);
* target: Otsu standardization ``(x - T) / std(x)`` (SPEC 6), so that the foreground is ``> 0``
  and the Spotlight loss takes ``threshold=0.0``; optionally T is chosen on a smoothed copy
  (median filter size 5, then Gaussian sigma 5, as the authors do);
* resampling to isotropic voxels (linear interpolation; nearest for label masks);
* centre crop of every axis to a multiple of 16 (four 2x downsamplings of F-net).
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import scipy.ndimage as ndi
import torch

from ..functional import otsu_standardize, otsu_threshold


def moments(volume: np.ndarray) -> tuple[float, float]:
    """``(mean, std)`` of a whole volume in float64, std with ddof 0: the data pipeline's one std.

    Every standardization of the pipeline divides by this std: the signal's, a z-scored target's,
    an Otsu-standardized target's with a smoothed threshold, and the statistics cached for lazy
    loading (``dataset.volume_stats``), which later standardize a crop box read plane by plane. The op
    ``otsu_standardize`` serves only the eager Otsu target without smoothing: it standardizes a
    whole tensor with its own T and returns no statistics, so it can neither take a smoothed T nor
    give the (T, std) that the lazy path applies to a box; the two agree within 2e-6 (docs/training.md).
    """
    x = np.asarray(volume).astype(np.float64)
    return float(x.mean()), float(x.std())


def standardize_with(volume: np.ndarray, offset: float, std: float) -> np.ndarray:
    """``(x - offset) / std`` in float64, returned as float32; std 0 (a constant volume) divides by 1."""
    return ((np.asarray(volume).astype(np.float64) - offset) / (std if std > 0 else 1.0)).astype(np.float32)


def standardize(volume: np.ndarray) -> np.ndarray:
    """``(x - mean) / std`` in float32, std with ddof 0 (1 where the volume is constant)."""
    mean, std = moments(volume)
    return standardize_with(volume, mean, std)


def otsu_threshold_volume(volume: np.ndarray, smooth: bool = False, median_size: int = 5,
                          gaussian_sigma: float = 5.0) -> float:
    """Otsu threshold T of one volume (SPEC 1), optionally of its smoothed copy."""
    x = volume.astype(np.float32)
    if smooth:
        x = ndi.gaussian_filter(ndi.median_filter(x, size=median_size), sigma=gaussian_sigma)
    return float(otsu_threshold(torch.from_numpy(np.ascontiguousarray(x))[None])[0])


def otsu_standardize_volume(volume: np.ndarray, smooth: bool = False) -> np.ndarray:
    """``(x - T) / std(x)`` (SPEC 6) in float32; with ``smooth`` T comes from the smoothed copy."""
    x = np.ascontiguousarray(volume, dtype=np.float32)
    if not smooth:
        return otsu_standardize(torch.from_numpy(x)[None])[0].numpy()
    return standardize_with(x, otsu_threshold_volume(x, smooth=True), moments(x)[1])


def zoom_factors(voxel_size: Sequence[float], isotropic_size: Optional[float] = None) -> tuple:
    """Per-axis zoom taking ``voxel_size`` (z, y, x) to cubes of ``isotropic_size`` (default: the smallest)."""
    sizes = tuple(float(s) for s in voxel_size)
    if len(sizes) != 3 or any(not s > 0 for s in sizes):
        raise ValueError(f"voxel_size must be three positive numbers (z, y, x), got {voxel_size!r}")
    target = float(isotropic_size) if isotropic_size is not None else min(sizes)
    if not target > 0:
        raise ValueError(f"isotropic_voxel_size must be positive, got {isotropic_size!r}")
    return tuple(s / target for s in sizes)


def resample(volume: np.ndarray, factors: Sequence[float], labels: bool = False) -> np.ndarray:
    """Zooms ``volume`` by ``factors`` (linear, or nearest for ``labels``); identity is free."""
    if all(abs(f - 1.0) < 1e-9 for f in factors):
        return volume
    return ndi.zoom(volume, tuple(factors), order=0 if labels else 1, mode="nearest", grid_mode=False)


def crop_box(shape: Sequence[int], multiple: int) -> tuple:
    """Slices of the centred crop of ``shape`` to a multiple of ``multiple`` per axis."""
    if multiple < 1:
        raise ValueError(f"crop multiple must be >= 1, got {multiple}")
    box = []
    for n in shape:
        keep = (n // multiple) * multiple
        start = (n - keep) // 2
        box.append(slice(start, start + keep))
    return tuple(box)
