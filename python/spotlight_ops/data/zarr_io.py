"""OME-Zarr volumes, read lazily and written with the ``ome-zarr`` package (the OME reference library).

A volume is the full-resolution level (the first dataset of the first ``multiscales`` entry) of an
OME-Zarr image group; its voxel size is that level's ``scale`` transformation, its unit the spatial
axes' ``unit``. Reading opens the level as a chunked ``zarr`` array, so only the slabs asked for are
read (:class:`~spotlight_ops.data.io.LazyVolume`). Writing stores one level (no pyramid), chunked in
z slabs, with the voxel size and unit. ``ome-zarr`` is an optional dependency (``pip install
spotlight-ops[zarr]``); without it a Zarr path is a :class:`DataError` saying so.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Optional, Union

import numpy as np

from ..optional import optional_import
from .errors import DataError

PathLike = Union[str, Path]

# OME-NGFF unit names for the short forms TIFF metadata uses
_UNITS = {"um": "micrometer", "µm": "micrometer", "\\u00B5m": "micrometer", "micron": "micrometer",
          "nm": "nanometer", "mm": "millimeter"}
_SHORT = {"micrometer": "um", "nanometer": "nm", "millimeter": "mm"}


def is_zarr(path: PathLike) -> bool:
    """A path naming a Zarr store: a ``.zarr`` suffix (``x.zarr``, ``x.ome.zarr``), or a folder with zarr metadata."""
    path = Path(path)
    if path.suffix.lower() == ".zarr":
        return True
    return path.is_dir() and any((path / name).is_file() for name in ("zarr.json", ".zattrs", ".zgroup"))


def _modules():
    install = "pip install 'spotlight-ops[zarr]' (or pip install ome-zarr)"
    with warnings.catch_warnings():  # ome_zarr.writer builds a deprecated Scaler as a default argument
        warnings.simplefilter("ignore", DeprecationWarning)
        zarr = optional_import("zarr", install=install, purpose="OME-Zarr")
        io, reader, writer = (optional_import(f"ome_zarr.{name}", install=install, purpose="OME-Zarr")
                              for name in ("io", "reader", "writer"))
    return zarr, io.parse_url, reader.Reader, reader.Multiscales, writer.write_image


def open_zarr(path: PathLike, role: str = "volume") -> tuple:
    """``(array, axes, voxel_size, unit)`` of the full-resolution level; the array is a lazy zarr array.

    ``axes`` are the axis names (e.g. ``"tczyx"``); ``voxel_size`` is ``(z, y, x)`` (None where absent).
    """
    path = Path(path)
    if not path.exists():
        raise DataError(path, f"{role} Zarr store not found")
    try:
        zarr, parse_url, Reader, Multiscales, _ = _modules()
    except ImportError as err:
        raise DataError(path, str(err)) from err
    try:
        location = parse_url(str(path), mode="r")
        if location is None:
            raise ValueError("not a Zarr store")
        nodes = list(Reader(location)())
        specs = [s for n in nodes for s in n.specs if isinstance(s, Multiscales)]
        if not specs:
            raise ValueError("no OME multiscales image in the store")
        node = next(n for n in nodes if any(isinstance(s, Multiscales) for s in n.specs))
        level = specs[0].datasets[0]
        group = zarr.open_group(str(path), mode="r")
        array = group[level]
        axes_meta = node.metadata.get("axes") or []
        names = "".join((a["name"] if isinstance(a, dict) else str(a)).lower() for a in axes_meta)
        if len(names) != array.ndim:
            names = "tczyx"[-array.ndim:] if array.ndim <= 5 else ""
        scale = None
        transforms = node.metadata.get("coordinateTransformations") or []
        for t in (transforms[0] if transforms else []):
            if t.get("type") == "scale":
                scale = [float(s) for s in t["scale"]]
        units = [a.get("unit") for a in axes_meta if isinstance(a, dict) and a.get("type") == "space"]
    except DataError:
        raise
    except Exception as err:  # zarr / ome-zarr raise many kinds on broken stores: report them alike
        raise DataError(path, f"cannot read {role} OME-Zarr ({type(err).__name__}: {err})") from err
    voxel = [None, None, None]
    if scale is not None and names:
        for i, axis in enumerate("zyx"):
            if axis in names:
                voxel[i] = scale[names.index(axis)]
    unit = next((u for u in units if u), None)
    return array, names, tuple(voxel), _SHORT.get(unit, unit)


def write_zarr(path: PathLike, volume: np.ndarray, voxel_size: tuple = (None, None, None),
               unit: Optional[str] = "um", chunk_depth: int = 16) -> Path:
    """Writes a ``(Z, Y, X)`` volume as a one-level OME-Zarr image with its voxel size and unit."""
    path = Path(path)
    zarr, _, _, _, write_image = _modules()
    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise ValueError(f"volume must be 3D (Z, Y, X), got shape {volume.shape}")
    if volume.dtype == np.float64:
        volume = volume.astype(np.float32)
    kwargs = {}
    if all(s for s in voxel_size):
        kwargs["scale"] = dict(zip("zyx", (float(s) for s in voxel_size)))
        long_unit = _UNITS.get(unit, unit) if unit else None
        if long_unit:
            kwargs["axes_units"] = dict.fromkeys("zyx", long_unit)
    path.parent.mkdir(parents=True, exist_ok=True)
    group = zarr.open_group(str(path), mode="w")
    chunks = (min(chunk_depth, volume.shape[0]),) + volume.shape[1:]
    write_image(volume, group, scale_factors=[], axes="zyx", storage_options={"chunks": chunks}, **kwargs)
    return path
