"""Loading a manifest's image pairs into memory, preprocessed and checked.

:func:`load_pairs` reads every pair of a manifest (:mod:`.manifest`), validates it
(readable, 3D, finite, signal/target/mask shapes equal, enough foreground), resamples it to
isotropic voxels when voxel sizes are given, standardizes the signal, Otsu-standardizes
the target and crops to a multiple of 16. Every problem raises :class:`DataError` naming the file.

Channels: a row may hold several signal and target channels (:class:`~.manifest.ManifestRow`), every
channel read, checked and standardized on its own (each target channel with its own Otsu T); the
arrays of a :class:`VolumePair` are then ``(C, Z, Y, X)``, and ``(Z, Y, X)`` for one channel, exactly
as before. Stored thresholds and masks (``spotlight preprocess``, :mod:`.masks`) are used when present:
the target is standardized with the stored T, and the stored foreground mask becomes the pair's ``mask``.

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

from . import masks as stored
from . import preprocess
from .errors import DataError
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

    Otsu thresholds and masks stored with the data (``spotlight preprocess``, or VisCy's thresholds) are
    used where present (:func:`stored_thresholds`, :func:`mask_sources`).
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
    Otsu-standardized targets); ``mask`` the optional label mask from the manifest (or the stored
    foreground mask of ``spotlight preprocess``). With several channels ``signal`` is ``(Cs, Z, Y, X)``
    and ``target``, ``foreground`` and ``mask`` are ``(Ct, Z, Y, X)``; ``shape`` is the spatial shape.
    ``info`` holds the per-channel statistics as numbers for one channel and lists for several.
    """

    signal: np.ndarray
    target: np.ndarray
    foreground: np.ndarray
    source: ManifestRow
    mask: Optional[np.ndarray] = None
    info: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple:
        return tuple(self.signal.shape[-3:])

    @property
    def signal_channels(self) -> int:
        return 1 if self.signal.ndim == 3 else int(self.signal.shape[0])

    @property
    def target_channels(self) -> int:
        return 1 if self.target.ndim == 3 else int(self.target.shape[0])


def prepare_signal(volume: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """Resampled and standardized signal (not cropped; see :func:`load_pairs`)."""
    return preprocess.standardize(preprocess.resample(volume, config.factors()))


def checked_threshold(target: np.ndarray, config, path, threshold: Optional[float] = None) -> tuple[float, float]:
    """The target's Otsu threshold (``threshold`` when given: a stored one) and foreground fraction; a
    DataError naming ``path`` when too little lies above the threshold."""
    if threshold is None:
        threshold = preprocess.otsu_threshold_volume(target, smooth=config.smooth_threshold)
    foreground_fraction = float(np.count_nonzero(target > threshold)) / target.size
    if foreground_fraction < config.min_foreground_fraction or foreground_fraction == 0.0:
        raise DataError(path, f"too little foreground: {100 * foreground_fraction:.4f}% of voxels above the "
                              f"Otsu threshold, need at least {100 * config.min_foreground_fraction:.4f}%")
    return threshold, foreground_fraction


def stored_thresholds(row: ManifestRow, config: PreprocessConfig) -> list:
    """Per target channel of ``row``: its stored Otsu threshold (:func:`.masks.stored_threshold`), or None."""
    return [stored.stored_threshold(row, k, config.smooth_threshold) for k in range(len(row.targets))]


def mask_sources(row: ManifestRow) -> Optional[list]:
    """The masks of ``row``, one :class:`~.sources.Source` per target channel: the manifest's, else the
    foreground masks stored in the targets' OME-Zarr images; None when not every target channel has one
    (a manifest naming masks for only some channels is a DataError)."""
    given = list(row.masks)
    if any(m is not None for m in given):
        if any(m is None for m in given):
            missing = [k + 1 for k, m in enumerate(given) if m is None]
            raise DataError(row.target, f"masks are named for some target channels but not for channel(s) "
                                        f"{missing}: give path_mask for every target channel or for none")
        return given
    found = [stored.stored_mask(t) for t in row.targets]
    return found if all(m is not None for m in found) else None


def _stack(arrays: list) -> Optional[np.ndarray]:
    """One channel: the array itself; several: stacked on a leading channel axis."""
    if arrays[0] is None:
        return None
    return arrays[0] if len(arrays) == 1 else np.stack(arrays)


def _merged(infos: list) -> dict:
    """Per-channel info dicts as one: numbers for one channel, lists for several."""
    if len(infos) == 1:
        return infos[0]
    return {key: [i[key] for i in infos] for key in infos[0]}


def _read_row(row: ManifestRow, config: PreprocessConfig) -> tuple:
    """``(signals, targets, masks)``: every channel of ``row`` read whole and checked (3D, finite, shapes)."""
    signals = [s.read("signal") for s in row.signals]
    targets = [t.read("target") for t in row.targets]
    shape = signals[0].shape
    for k, (source, volume) in enumerate(zip(row.signals[1:], signals[1:]), start=2):
        if volume.shape != shape:
            raise DataError(source.path, f"signal channel {k} shape {volume.shape} differs from signal shape {shape} "
                                         f"of {row.signals[0]}")
    for source, volume in zip(row.targets, targets):
        if volume.shape != shape:
            raise DataError(source.path, f"target shape {volume.shape} differs from signal shape {shape} "
                                         f"of {row.signals[0]}")
    masks = mask_sources(row)
    mask_volumes = None
    if masks is not None:
        mask_volumes = []
        for source in masks:
            volume = source.read("mask", dtype=None)
            if volume.shape != shape:
                raise DataError(source.path, f"mask shape {volume.shape} differs from signal shape {shape} "
                                             f"of {row.signals[0]}")
            mask_volumes.append(volume)
    return signals, targets, mask_volumes


def _prepared_target(target: np.ndarray, config: PreprocessConfig, path, threshold: Optional[float]) -> tuple:
    """``(target, foreground, info)`` of one resampled target channel: checked, standardized per ``config``."""
    computed = threshold is None
    threshold, foreground_fraction = checked_threshold(target, config, path, threshold)
    info = {"otsu_threshold": threshold, "foreground_fraction": foreground_fraction}
    if config.target_norm == "otsu":
        if computed:
            target = preprocess.otsu_standardize_volume(target, smooth=config.smooth_threshold)
        else:  # a stored T: (x - T) / std, the formula the smoothed threshold takes too
            target = preprocess.standardize_with(target, threshold, preprocess.moments(target)[1])
        foreground = target > 0
    else:
        foreground = target > threshold
        target_mean, target_std = preprocess.moments(target)
        info.update({"target_mean": target_mean, "target_std": target_std})
        target = preprocess.standardize_with(target, target_mean, target_std)
    return target, foreground, info


def load_pair(row: ManifestRow, config: PreprocessConfig) -> VolumePair:
    """Reads, checks and preprocesses one manifest row (every channel on its own)."""
    signals, targets, masks = _read_row(row, config)
    factors = config.factors()
    signal = _stack([prepare_signal(s, config) for s in signals])
    thresholds = stored_thresholds(row, config)
    prepared = [_prepared_target(preprocess.resample(t, factors), config, source.path, threshold)
                for t, source, threshold in zip(targets, row.targets, thresholds)]
    del targets
    target, foreground = _stack([p[0] for p in prepared]), _stack([p[1] for p in prepared])
    mask = None if masks is None else _stack([preprocess.resample(m, factors, labels=True) for m in masks])
    box = preprocess.crop_box(signal.shape[-3:], config.crop_multiple)
    if any(b.stop - b.start == 0 for b in box):
        raise DataError(row.signal, f"volume of shape {signal.shape[-3:]} (after resampling) is smaller than the "
                                    f"crop multiple {config.crop_multiple} along some axis")
    crop = (lambda a: None if a is None else np.ascontiguousarray(a[(Ellipsis,) + box]))
    info = _merged([p[2] for p in prepared])
    info["crop_box"] = [(b.start, b.stop) for b in box]
    if any(t is not None for t in thresholds):
        info["stored_threshold"] = [t is not None for t in thresholds] if len(thresholds) > 1 \
            else thresholds[0] is not None
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


def _one_or_list(values: list):
    """A statistic as the cache stores it: a number for one channel, a list for several."""
    return values[0] if len(values) == 1 else list(values)


def _channel_values(value) -> list:
    return list(value) if isinstance(value, list) else [value]


def volume_stats(row: ManifestRow, config: PreprocessConfig) -> dict:
    """Checks one pair as :func:`load_pair` does and returns its preprocessing statistics (JSON-safe).

    ``signal_mean``, ``signal_std`` (float64, ddof 0, of the resampled signal), ``threshold`` (Otsu T of
    the resampled target, on the smoothed copy with ``smooth_threshold``, or the stored one),
    ``target_mean``, ``target_std``, ``foreground_fraction`` (numbers for one channel, lists for several),
    ``raw_shape`` and ``shape`` (resampled, before the crop). Channels are read one at a time.
    """
    factors = config.factors()
    raw_shape, signal_stats = None, []
    for k, source in enumerate(row.signals, start=1):
        signal = source.read("signal")
        if raw_shape is None:
            raw_shape = signal.shape
        elif signal.shape != raw_shape:
            raise DataError(source.path, f"signal channel {k} shape {signal.shape} differs from signal shape "
                                         f"{raw_shape} of {row.signals[0]}")
        signal_stats.append(preprocess.moments(preprocess.resample(signal, factors)))
        del signal
    for source in mask_sources(row) or []:
        mask_shape = source.open("mask").shape
        if mask_shape != raw_shape:
            raise DataError(source.path, f"mask shape {mask_shape} differs from signal shape {raw_shape} "
                                         f"of {row.signals[0]}")
    target_stats = []
    for source, stored_threshold in zip(row.targets, stored_thresholds(row, config)):
        target = source.read("target")
        if target.shape != raw_shape:
            raise DataError(source.path, f"target shape {target.shape} differs from signal shape {raw_shape} "
                                         f"of {row.signals[0]}")
        target = preprocess.resample(target, factors)
        threshold, foreground_fraction = checked_threshold(target, config, source.path, stored_threshold)
        shape = target.shape
        target_stats.append((float(threshold), *preprocess.moments(target), foreground_fraction))
        del target
    box = preprocess.crop_box(shape, config.crop_multiple)
    if any(b.stop - b.start == 0 for b in box):
        raise DataError(row.signal, f"volume of shape {shape} (after resampling) is smaller than the crop "
                                    f"multiple {config.crop_multiple} along some axis")
    column = (lambda values, i: _one_or_list([v[i] for v in values]))
    return {"signal_mean": column(signal_stats, 0), "signal_std": column(signal_stats, 1),
            "threshold": column(target_stats, 0), "target_mean": column(target_stats, 1),
            "target_std": column(target_stats, 2), "foreground_fraction": column(target_stats, 3),
            "raw_shape": list(raw_shape), "shape": list(shape)}


def _standardized_box(source, role: str, config: PreprocessConfig, box: tuple, offset: float,
                      scale: float) -> np.ndarray:
    """``(x - offset) / scale`` over ``box`` of the resampled volume of ``source`` (``preprocess.standardize_with``,
    the eager path's formula)."""
    volume = source.open(role)
    factors = config.factors()
    if any(abs(f - 1.0) >= 1e-9 for f in factors):  # resampling needs the whole volume
        return preprocess.standardize_with(preprocess.resample(volume.read(), factors)[box], offset, scale)
    out = np.empty(tuple(b.stop - b.start for b in box), np.float32)
    for i, z in enumerate(range(box[0].start, box[0].stop)):  # plane by plane: bounded temporaries
        out[i] = preprocess.standardize_with(volume.slab(z, z + 1)[0][box[1:]], offset, scale)
    return out


def _mask_box(source, config: PreprocessConfig, box: tuple) -> np.ndarray:
    """The mask over ``box`` of the resampled volume (nearest neighbour), read box only where not resampled."""
    volume = source.open("mask")
    factors = config.factors()
    if any(abs(f - 1.0) >= 1e-9 for f in factors):
        return np.ascontiguousarray(preprocess.resample(volume.read(dtype=None), factors, labels=True)[box])
    return np.array(volume.box(box, dtype=None), order="C")  # a copy: never a view into a mapped file


def load_pair_with_stats(row: ManifestRow, config: PreprocessConfig, stats: dict) -> VolumePair:
    """The :class:`VolumePair` of ``row`` from its cached :func:`volume_stats`, reading only the crop box.

    The signal equals :func:`load_pair`'s bit for bit (the same float64 formula); the target may
    differ from the op library's Otsu standardization in the last bit.
    """
    box = preprocess.crop_box(stats["shape"], config.crop_multiple)
    signal = _stack([_standardized_box(source, "signal", config, box, mean, std) for source, mean, std in
                     zip(row.signals, _channel_values(stats["signal_mean"]), _channel_values(stats["signal_std"]))])
    targets, foregrounds = [], []
    for source, threshold, mean, std in zip(row.targets, *(_channel_values(stats[k]) for k in
                                                              ("threshold", "target_mean", "target_std"))):
        if config.target_norm == "otsu":
            target = _standardized_box(source, "target", config, box, threshold, std)
            foreground = target > 0
        else:
            target = _standardized_box(source, "target", config, box, mean, std)
            foreground = target > np.float32((threshold - mean) / (std if std > 0 else 1.0))
        targets.append(target)
        foregrounds.append(foreground)
    masks = mask_sources(row)
    mask = None
    if masks is not None:
        mask = _stack([_mask_box(m, config, box) for m in masks])
    info = {"otsu_threshold": stats["threshold"], "foreground_fraction": stats["foreground_fraction"],
            "crop_box": [(b.start, b.stop) for b in box], "target_mean": stats["target_mean"],
            "target_std": stats["target_std"]}
    return VolumePair(signal=signal, target=_stack(targets), foreground=_stack(foregrounds), source=row, mask=mask,
                      info=info)
