"""Loading a manifest's image pairs into memory, preprocessed and checked.

:func:`load_pairs` reads every pair of a manifest (:mod:`.manifest`), validates it
(readable, 3D, finite, signal/target/mask shapes equal, enough foreground), resamples it to
isotropic voxels when voxel sizes are given, standardizes the signal, Otsu-standardizes
the target and crops to a multiple of 16. Every problem raises :class:`DataError` naming the file.

For data larger than memory (:mod:`.buffer`) the same preprocessing is split in two:
:func:`volume_stats` reads a pair once, checks it and returns its statistics (signal mean and std,
target Otsu threshold, mean and std, foreground fraction, shapes), which are cached; then
:func:`load_pair_with_stats` applies them to the crop box only, read lazily (a memory-mapped TIFF
or an OME-Zarr store), plane by plane, without computing any statistic again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from . import preprocess
from .errors import DataError
from .io import open_volume, read_volume
from .manifest import ManifestRow, read_manifest


@dataclass(frozen=True)
class PreprocessConfig:
    """How volumes are prepared (shared by training and prediction; stored in checkpoints).

    Attributes:
        voxel_size: (z, y, x) voxel size of the input images, or None to keep the grid.
        isotropic_voxel_size: voxel size after resampling (default: the smallest of voxel_size).
        target_norm: ``"otsu"`` ((x - T) / std, SPEC 6: foreground > 0) or ``"zscore"`` ((x - mean) / std).
        smooth_threshold: choose the Otsu T on a median(5) + Gaussian(5) smoothed copy.
        crop_multiple: crop every axis to a multiple of this (16 for a depth-4 F-net).
        min_foreground_fraction: a target volume with less foreground (> Otsu T) is rejected.
    """

    voxel_size: Optional[tuple] = None
    isotropic_voxel_size: Optional[float] = None
    target_norm: str = "otsu"
    smooth_threshold: bool = False
    crop_multiple: int = 16
    min_foreground_fraction: float = 0.001

    def __post_init__(self) -> None:
        if self.target_norm not in ("otsu", "zscore"):
            raise ValueError(f"target_norm must be 'otsu' or 'zscore', got {self.target_norm!r}")
        if int(self.crop_multiple) != self.crop_multiple or self.crop_multiple < 1:
            raise ValueError(f"crop_multiple must be an integer >= 1, got {self.crop_multiple!r}")
        if not 0.0 <= self.min_foreground_fraction <= 1.0:
            raise ValueError(f"min_foreground_fraction must lie in [0, 1], got {self.min_foreground_fraction!r}")
        if self.voxel_size is not None:
            preprocess.zoom_factors(self.voxel_size, self.isotropic_voxel_size)  # validates

    def factors(self) -> tuple:
        """Zoom factors to isotropic voxels (ones when no voxel size is given)."""
        if self.voxel_size is None:
            return (1.0, 1.0, 1.0)
        return preprocess.zoom_factors(self.voxel_size, self.isotropic_voxel_size)


@dataclass
class VolumePair:
    """One preprocessed training/evaluation pair, float32 ``(Z, Y, X)`` arrays of one shape.

    ``foreground`` is the boolean target foreground (target > Otsu T; ``target > 0`` for
    Otsu-standardized targets); ``mask`` the optional label mask from the manifest.
    """

    signal: np.ndarray
    target: np.ndarray
    foreground: np.ndarray
    source: ManifestRow
    mask: Optional[np.ndarray] = None
    info: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple:
        return self.signal.shape


def prepare_signal(volume: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """Resampled and standardized signal (not cropped; see :func:`load_pairs`)."""
    return preprocess.standardize(preprocess.resample(volume, config.factors()))


def checked_threshold(target: np.ndarray, config, path) -> tuple[float, float]:
    """The target's Otsu threshold and foreground fraction; a DataError naming ``path`` when too
    little lies above the threshold."""
    threshold = preprocess.otsu_threshold_volume(target, smooth=config.smooth_threshold)
    foreground_fraction = float(np.count_nonzero(target > threshold)) / target.size
    if foreground_fraction < config.min_foreground_fraction or foreground_fraction == 0.0:
        raise DataError(path, f"too little foreground: {100 * foreground_fraction:.4f}% of voxels above the "
                              f"Otsu threshold, need at least {100 * config.min_foreground_fraction:.4f}%")
    return threshold, foreground_fraction


def load_pair(row: ManifestRow, config: PreprocessConfig) -> VolumePair:
    """Reads, checks and preprocesses one manifest row."""
    signal = read_volume(row.signal, "signal")
    target = read_volume(row.target, "target")
    if signal.shape != target.shape:
        raise DataError(row.target, f"target shape {target.shape} differs from signal shape {signal.shape} "
                                    f"of {row.signal}")
    mask = None
    if row.mask is not None:
        mask = read_volume(row.mask, "mask", dtype=None)
        if mask.shape != signal.shape:
            raise DataError(row.mask, f"mask shape {mask.shape} differs from signal shape {signal.shape} "
                                      f"of {row.signal}")
    factors = config.factors()
    signal = prepare_signal(signal, config)
    target = preprocess.resample(target, factors)
    threshold, foreground_fraction = checked_threshold(target, config, row.target)
    if config.target_norm == "otsu":
        target = preprocess.otsu_standardize_volume(target, smooth=config.smooth_threshold)
        foreground = target > 0
    else:
        foreground = target > threshold
        target_mean, target_std = preprocess.moments(target)
        target_stats = {"target_mean": target_mean, "target_std": target_std}
        target = preprocess.standardize_with(target, target_mean, target_std)
    if mask is not None:
        mask = preprocess.resample(mask, factors, labels=True)
    box = preprocess.crop_box(signal.shape, config.crop_multiple)
    if any(b.stop - b.start == 0 for b in box):
        raise DataError(row.signal, f"volume of shape {signal.shape} (after resampling) is smaller than the crop "
                                    f"multiple {config.crop_multiple} along some axis")
    crop = (lambda a: None if a is None else np.ascontiguousarray(a[box]))
    info = {"otsu_threshold": threshold, "foreground_fraction": foreground_fraction,
            "crop_box": [(b.start, b.stop) for b in box]}
    if config.target_norm != "otsu":
        info.update(target_stats)
    return VolumePair(signal=crop(signal), target=crop(target), foreground=crop(foreground), source=row,
                      mask=crop(mask), info=info)


def load_pairs(manifest: Union[str, Path, Sequence[ManifestRow]], config: Optional[PreprocessConfig] = None,
               progress: bool = False) -> list[VolumePair]:
    """All pairs of a manifest (a CSV path or rows), preprocessed per ``config``."""
    config = config or PreprocessConfig()
    rows = read_manifest(manifest) if isinstance(manifest, (str, Path)) else list(manifest)
    if not rows:
        raise DataError(None, "no image pairs given")
    if progress:
        from tqdm import tqdm

        rows = tqdm(rows, desc="loading volumes", unit="pair")
    return [load_pair(row, config) for row in rows]


def volume_stats(row: ManifestRow, config: PreprocessConfig) -> dict:
    """Checks one pair as :func:`load_pair` does and returns its preprocessing statistics (JSON-safe).

    ``signal_mean``, ``signal_std`` (float64, ddof 0, of the resampled signal), ``threshold`` (Otsu T of
    the resampled target, on the smoothed copy with ``smooth_threshold``), ``target_mean``,
    ``target_std``, ``foreground_fraction``, ``raw_shape`` and ``shape`` (resampled, before the crop).
    """
    signal = read_volume(row.signal, "signal")
    target = read_volume(row.target, "target")
    if signal.shape != target.shape:
        raise DataError(row.target, f"target shape {target.shape} differs from signal shape {signal.shape} "
                                    f"of {row.signal}")
    if row.mask is not None:
        mask_shape = open_volume(row.mask, "mask").shape
        if mask_shape != signal.shape:
            raise DataError(row.mask, f"mask shape {mask_shape} differs from signal shape {signal.shape} "
                                      f"of {row.signal}")
    raw_shape = signal.shape
    factors = config.factors()
    signal_mean, signal_std = preprocess.moments(preprocess.resample(signal, factors))
    del signal
    target = preprocess.resample(target, factors)
    threshold, foreground_fraction = checked_threshold(target, config, row.target)
    shape = target.shape
    box = preprocess.crop_box(shape, config.crop_multiple)
    if any(b.stop - b.start == 0 for b in box):
        raise DataError(row.signal, f"volume of shape {shape} (after resampling) is smaller than the crop "
                                    f"multiple {config.crop_multiple} along some axis")
    target_mean, target_std = preprocess.moments(target)
    return {"signal_mean": signal_mean, "signal_std": signal_std, "threshold": float(threshold),
            "target_mean": target_mean, "target_std": target_std,
            "foreground_fraction": foreground_fraction, "raw_shape": list(raw_shape), "shape": list(shape)}


def _standardized_box(path, role: str, config: PreprocessConfig, box: tuple, offset: float,
                      scale: float) -> np.ndarray:
    """``(x - offset) / scale`` over ``box`` of the resampled volume (``preprocess.standardize_with``,
    the eager path's formula)."""
    volume = open_volume(path, role)
    factors = config.factors()
    if any(abs(f - 1.0) >= 1e-9 for f in factors):  # resampling needs the whole volume
        return preprocess.standardize_with(preprocess.resample(volume.read(), factors)[box], offset, scale)
    out = np.empty(tuple(b.stop - b.start for b in box), np.float32)
    for i, z in enumerate(range(box[0].start, box[0].stop)):  # plane by plane: bounded temporaries
        out[i] = preprocess.standardize_with(volume.slab(z, z + 1)[0][box[1:]], offset, scale)
    return out


def load_pair_with_stats(row: ManifestRow, config: PreprocessConfig, stats: dict) -> VolumePair:
    """The :class:`VolumePair` of ``row`` from its cached :func:`volume_stats`, reading only the crop box.

    The signal equals :func:`load_pair`'s bit for bit (the same float64 formula); the target may
    differ from the op library's Otsu standardization in the last bit.
    """
    box = preprocess.crop_box(stats["shape"], config.crop_multiple)
    signal = _standardized_box(row.signal, "signal", config, box, stats["signal_mean"], stats["signal_std"])
    if config.target_norm == "otsu":
        target = _standardized_box(row.target, "target", config, box, stats["threshold"], stats["target_std"])
        foreground = target > 0
    else:
        target = _standardized_box(row.target, "target", config, box, stats["target_mean"], stats["target_std"])
        std = stats["target_std"] if stats["target_std"] > 0 else 1.0
        foreground = target > np.float32((stats["threshold"] - stats["target_mean"]) / std)
    mask = None
    if row.mask is not None:
        mask = preprocess.resample(open_volume(row.mask, "mask").read(dtype=None), config.factors(), labels=True)
        mask = np.ascontiguousarray(mask[box])
    return VolumePair(signal=signal, target=target, foreground=foreground, source=row, mask=mask,
                      info={"otsu_threshold": stats["threshold"], "foreground_fraction": stats["foreground_fraction"],
                            "crop_box": [(b.start, b.stop) for b in box], "target_mean": stats["target_mean"],
                            "target_std": stats["target_std"]})
