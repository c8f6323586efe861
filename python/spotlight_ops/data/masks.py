"""Otsu thresholds and foreground masks stored with the data (``spotlight preprocess``), and reading them back.

Per target volume (a field of view's channel, an OME-Zarr image, a TIFF), :func:`otsu_foreground`
computes the Otsu threshold T (SPEC 1; with ``smooth``, of the copy smoothed by a size-5 median and
a sigma-5 Gaussian, SPEC 6) and the foreground ``M = volume > T`` (SPEC 2) with the data pipeline's
own functions (:mod:`.preprocess`). Where they are stored:

* OME-Zarr image (a plate's field of view or a standalone image): the masks go into the array
  ``fg_mask`` beside the image's levels, with the full-resolution level's shape ``(T, C, Z, Y, X)``,
  ``uint8``, one mask per channel (channels not preprocessed hold 1): VisCy's layout and key, so
  VisCy's ``fg_mask_key`` reads them. The threshold goes into the group's attributes under VisCy's
  ``normalization`` entry, per channel name, as a record of its own that VisCy ignores::

      "normalization": {"Nuclei": {"spotlight": {"otsu_threshold": 0.53, "smooth": false,
          "median_size": 5, "gaussian_sigma": 5.0, "bins": 256, "foreground_fraction": 0.21,
          "mask": "fg_mask"}}}

  VisCy's own statistics there (``fov_statistics``, ``dataset_statistics``) are left as they are.
* TIFF: a mask file per target channel (``uint8``, the target's voxel size) named in the manifest's
  ``path_mask[_k]`` column, and the threshold in ``otsu_threshold[_k]`` (``otsu_smooth`` says how it
  was chosen): :func:`preprocess_manifest` writes that manifest.

Reading back, for training: :func:`stored_threshold` (ours, or VisCy's ``fov_statistics``
``otsu_threshold`` where only that exists) and :func:`stored_mask` (ours only: VisCy's records do not
say which channels of ``fg_mask`` were computed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from . import preprocess, zarr_io
from .errors import DataError
from .sources import Source

MASK_ARRAY = "fg_mask"
RECORD = "spotlight"
MEDIAN_SIZE, GAUSSIAN_SIGMA, BINS = 5, 5.0, 256
PathLike = Union[str, Path]


def otsu_foreground(volume: np.ndarray, smooth: bool = False) -> tuple[float, np.ndarray]:
    """``(T, M)``: the Otsu threshold of ``volume`` (of its smoothed copy with ``smooth``) and ``volume > T``."""
    threshold = preprocess.otsu_threshold_volume(volume, smooth=smooth, median_size=MEDIAN_SIZE,
                                                 gaussian_sigma=GAUSSIAN_SIGMA)
    return threshold, np.asarray(volume) > threshold


def _record(threshold: float, mask: np.ndarray, smooth: bool) -> dict:
    return {"otsu_threshold": float(threshold), "smooth": bool(smooth), "median_size": MEDIAN_SIZE,
            "gaussian_sigma": GAUSSIAN_SIGMA, "bins": BINS,
            "foreground_fraction": float(np.count_nonzero(mask)) / mask.size, "mask": MASK_ARRAY}


def _channel_key(image: "zarr_io.ZarrImage", channel) -> str:
    """The name a channel's record is kept under: its ``omero`` label (``"0"`` for an image without channels)."""
    if not image.channel_names:
        return "0"
    return image.channel_names[image.channel_index(channel)]


def image_records(path: PathLike) -> dict:
    """``{channel name: record}`` of an OME-Zarr image's stored Spotlight thresholds (``{}`` when none)."""
    image = zarr_io.open_image(path, "image")
    normalization = dict(image.group.attrs).get("normalization") or {}
    return {name: entry[RECORD] for name, entry in normalization.items()
            if isinstance(entry, dict) and isinstance(entry.get(RECORD), dict)}


def _refuse_stored(path: Path, keys: Sequence[str]) -> None:
    done = [k for k in keys if k in image_records(path)]
    if done:
        raise DataError(path, f"thresholds and masks of {', '.join(done)} are stored already; pass overwrite "
                              f"(--overwrite) to compute them again")


def preprocess_image(path: PathLike, channels: Optional[Sequence] = None, smooth: bool = False,
                     overwrite: bool = False) -> dict:
    """Computes and stores the Otsu threshold and foreground mask of ``channels`` (names or indices; default
    every channel) of the OME-Zarr image ``path`` (a plate's field of view, or a standalone image).

    Returns ``{channel name: record}``. A channel with a stored record is refused unless ``overwrite``.
    """
    zarr, _, _, _, _ = zarr_io._modules()
    path = Path(path)
    image = zarr_io.open_image(path, "target")
    if channels is None:
        channels = list(image.channel_names) or [None]
    keys = [_channel_key(image, c) for c in channels]
    if not overwrite:
        _refuse_stored(path, keys)
    group = zarr.open_group(str(path), mode="r+")
    level = image.array
    if MASK_ARRAY in group:
        masks = group[MASK_ARRAY]
        if tuple(masks.shape) != tuple(level.shape):
            raise DataError(path, f"holds an {MASK_ARRAY} array of shape {tuple(masks.shape)}, the image is "
                                  f"{tuple(level.shape)}; remove it to preprocess again")
    else:
        chunks = tuple(1 if a in "tc" else c for a, c in zip(image.axes, level.chunks))
        masks = group.create_array(MASK_ARRAY, shape=level.shape, chunks=chunks, dtype=np.uint8, fill_value=1)
    records = {}
    for channel, key in zip(channels, keys):
        volume = Source(path, None if channel is None else str(channel)).read("target")
        threshold, mask = otsu_foreground(volume, smooth)
        masks[zarr_io.volume_index(image, channel, "target")] = mask.astype(np.uint8)
        records[key] = _record(threshold, mask, smooth)
    attrs = dict(group.attrs)
    normalization = dict(attrs.get("normalization") or {})
    for key, record in records.items():
        entry = dict(normalization.get(key) or {})
        entry[RECORD] = record
        normalization[key] = entry
    group.attrs.update({"normalization": normalization})
    return records


def _zarr_threshold(source: Source) -> tuple[Optional[float], Optional[bool]]:
    """``(T, smoothed)`` stored in an OME-Zarr image for the source's channel: ours, else VisCy's
    ``fov_statistics`` ``otsu_threshold`` (``smoothed`` None: VisCy's own method); ``(None, None)``."""
    image = zarr_io.open_image(source.path, "target")
    entry = (dict(image.group.attrs).get("normalization") or {}).get(_channel_key(image, source.channel)) or {}
    ours = entry.get(RECORD)
    if isinstance(ours, dict) and "otsu_threshold" in ours:
        return float(ours["otsu_threshold"]), bool(ours.get("smooth", False))
    viscy = (entry.get("fov_statistics") or {}).get("otsu_threshold")
    return (float(viscy), None) if viscy is not None else (None, None)


def stored_threshold(row, k: int, smooth: bool) -> Optional[float]:
    """The stored Otsu threshold of target channel ``k`` (0-based) of manifest row ``row``, or None.

    From the row's ``otsu_threshold`` column, else from the target image's metadata (OME-Zarr). A
    threshold stored with the other smoothing than ``smooth`` (the run's ``smooth_threshold``) is a
    DataError saying what to do; VisCy's thresholds (its own smoothing) are taken as they are.
    """
    source = row.targets[k]
    threshold, smoothed = row.stored_thresholds[k], row.threshold_smoothed
    if threshold is None and source.is_zarr and source.array is None:
        threshold, smoothed = _zarr_threshold(source)
    if threshold is None:
        return None
    if smoothed is not None and bool(smoothed) != bool(smooth):
        how = "on the smoothed copy" if smoothed else "without smoothing"
        raise DataError(source.path, f"the target's stored Otsu threshold was chosen {how} (spotlight preprocess"
                                     f"{' --smooth-threshold' if smoothed else ''}), this run asks smooth_threshold "
                                     f"{str(bool(smooth)).lower()}: run preprocess again with the run's smoothing, "
                                     f"or set the run's to match")
    return float(threshold)


def stored_mask(source: Source) -> Optional[Source]:
    """The stored foreground mask of a target channel (:data:`MASK_ARRAY` of its OME-Zarr image, when a
    Spotlight record names it), as a :class:`Source`; None otherwise."""
    if not source.is_zarr or source.array is not None:
        return None
    image = zarr_io.open_image(source.path, "target")
    record = image_records(source.path).get(_channel_key(image, source.channel))
    if not record or record.get("mask") not in image.group:
        return None
    return Source(source.path, source.channel, record["mask"])


def preprocess_plate(path: PathLike, channels: Sequence, fields: Optional[Sequence[str]] = None,
                     smooth: bool = False, overwrite: bool = False, progress: bool = False) -> dict:
    """:func:`preprocess_image` on every field of view of the plate ``path`` (or ``fields``); returns
    ``{field: {channel name: record}}``. Every field is checked before any is written."""
    from .plates import open_plate

    plate = open_plate(path)
    chosen = list(plate.fields if fields is None else fields)
    paths = [plate.field_path(f) for f in chosen]
    for fov in paths:  # every field checked before any is written
        image = zarr_io.open_image(fov, "target")
        keys = [_channel_key(image, c) for c in channels]
        if not overwrite:
            _refuse_stored(fov, keys)
    iterator = zip(chosen, paths)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(list(iterator), desc="preprocess", unit="field")
    return {field: preprocess_image(fov, channels, smooth, overwrite=True) for field, fov in iterator}


def preprocess_manifest(csv_path: PathLike, out_csv: PathLike, mask_dir: Optional[PathLike] = None,
                        smooth: bool = False, overwrite: bool = False, progress: bool = False) -> Path:
    """Thresholds and masks of every target channel of a manifest, and the manifest that names them.

    TIFF targets: a mask file each in ``mask_dir`` (default: ``masks/`` beside ``out_csv``), named
    ``<target>_fg_mask.tif`` (distinct names: :func:`~.outputs.output_names`), and the written manifest
    ``out_csv`` (the input's rows) gains ``path_mask[_k]``, ``otsu_threshold[_k]`` and ``otsu_smooth``.
    OME-Zarr targets (images, plates' fields of view): stored in the image (:func:`preprocess_image`), which
    the loader finds without a column. Refuses a manifest that names masks already, an ``out_csv`` equal to
    the input, and (without ``overwrite``) outputs that exist.
    """
    from .io import read_metadata, write_volume
    from .manifest import ManifestRow, read_manifest, write_manifest
    from .outputs import output_names

    csv_path, out_csv = Path(csv_path), Path(out_csv)
    if out_csv.resolve() == csv_path.resolve():
        raise DataError(out_csv, "is the input manifest; write the preprocessed manifest to another file")
    if out_csv.exists() and not overwrite:
        raise DataError(out_csv, "exists; choose another output manifest or pass overwrite (--overwrite)")
    rows = read_manifest(csv_path)
    named = next((r for r in rows if any(m is not None for m in r.masks)), None)
    if named is not None:
        raise DataError(csv_path, f"already names masks ({named.masks[0] or named.masks}); preprocess writes the "
                                  f"foreground masks into path_mask: give it a manifest without mask columns")
    mask_dir = Path(mask_dir) if mask_dir is not None else out_csv.parent / "masks"
    targets = list(dict.fromkeys(t for r in rows for t in r.targets))
    files = [t for t in targets if not t.is_zarr]
    mask_paths = {t: o.path(mask_dir) for t, o in zip(files, output_names(files, suffix="_fg_mask"))}
    if not overwrite:
        existing = [str(p) for p in mask_paths.values() if p.exists()]
        if existing:
            raise DataError(existing[0], "exists; choose another mask folder or pass overwrite (--overwrite)")
    results = {}
    iterator = targets
    if progress:
        from tqdm import tqdm

        iterator = tqdm(targets, desc="preprocess", unit="target")
    for target in iterator:
        if target.is_zarr:
            preprocess_image(target.path, [target.channel] if target.channel is not None else None, smooth,
                             overwrite)
            results[target] = (None, None)
            continue
        volume = target.read("target")
        threshold, mask = otsu_foreground(volume, smooth)
        written = write_volume(mask_paths[target], mask.astype(np.uint8), metadata=read_metadata(target.path))
        results[target] = (Source(written), threshold)
    new_rows = [ManifestRow.of(r.signals, r.targets, [results[t][0] for t in r.targets],
                               [results[t][1] for t in r.targets], smooth if files else None) for r in rows]
    return write_manifest(out_csv, new_rows)
