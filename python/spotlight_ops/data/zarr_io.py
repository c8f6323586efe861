"""OME-Zarr images, read lazily and written with the ``ome-zarr`` package (the OME reference library).

An image is an OME-Zarr group with ``multiscales`` metadata: a standalone ``x.ome.zarr`` or a field of
view inside an HCS plate (``plate.zarr/B/03/0``, :mod:`.plates`). Its volume is the full-resolution
level (the first dataset of the first ``multiscales`` entry); its voxel size is that level's ``scale``
transformation, its unit the spatial axes' ``unit``, its channel names the ``omero`` channel labels.
Reading opens the level as a chunked ``zarr`` array, so only the chunks asked for are read
(:class:`~spotlight_ops.data.io.LazyVolume`). :func:`volume_index` picks one channel of a
multi-channel image (by name or index) at time point 0. Writing stores one level (no pyramid), chunked
in z slabs, with the voxel size and unit. ``ome-zarr`` is an optional dependency (``pip install
spotlight-ops[zarr]``); without it a Zarr path is a :class:`DataError` saying so.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from ..optional import optional_import
from .errors import DataError

PathLike = Union[str, Path]

# OME-NGFF unit names for the short forms TIFF metadata uses
_UNITS = {"um": "micrometer", "µm": "micrometer", "\\u00B5m": "micrometer", "micron": "micrometer",
          "nm": "nanometer", "mm": "millimeter"}
_SHORT = {"micrometer": "um", "nanometer": "nm", "millimeter": "mm"}
INSTALL = "pip install 'spotlight-ops[zarr]' (or pip install ome-zarr)"


def is_zarr(path: PathLike) -> bool:
    """A path naming a Zarr store: a ``.zarr`` suffix (``x.zarr``, ``x.ome.zarr``), or a folder with zarr metadata."""
    path = Path(path)
    if path.suffix.lower() == ".zarr":
        return True
    return path.is_dir() and any((path / name).is_file() for name in ("zarr.json", ".zattrs", ".zgroup"))


def _modules():
    with warnings.catch_warnings():  # ome_zarr.writer builds a deprecated Scaler as a default argument
        warnings.simplefilter("ignore", DeprecationWarning)
        zarr = optional_import("zarr", install=INSTALL, purpose="OME-Zarr")
        io, reader, writer = (optional_import(f"ome_zarr.{name}", install=INSTALL, purpose="OME-Zarr")
                              for name in ("io", "reader", "writer"))
    return zarr, io.parse_url, reader.Reader, reader.Multiscales, writer.write_image


@contextlib.contextmanager
def quiet_ome_zarr():
    """ome-zarr logs a warning for every NGFF 0.4 group it opens ("version mismatch"): not the user's concern."""
    logger = logging.getLogger("ome_zarr")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def location(path: PathLike, role: str = "volume"):
    """The ``ome_zarr.io.ZarrLocation`` of ``path`` (its ``root_attrs`` are the OME metadata of NGFF 0.4 and 0.5
    alike); a DataError naming ``path`` when it is missing, not a Zarr group, or ome-zarr is not installed."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, f"{role} Zarr store not found")
    try:
        _, parse_url, _, _, _ = _modules()
    except ImportError as err:
        raise DataError(path, str(err)) from err
    try:
        with quiet_ome_zarr():
            found = parse_url(str(path), mode="r")
    except Exception as err:  # zarr raises many kinds on broken stores
        raise DataError(path, f"cannot read {role} OME-Zarr ({type(err).__name__}: {err})") from err
    if found is None:
        raise DataError(path, f"cannot read {role} OME-Zarr (not a Zarr group)")
    return found


@dataclass
class ZarrImage:
    """One OME-Zarr image: its full-resolution level as a lazy zarr array, and what its metadata says.

    Attributes:
        path: the image group.
        array: the full-resolution level (or the array named by :func:`open_image`'s ``array``), lazy.
        dataset: that array's path inside the group (``"0"`` as iohub writes, ``"s0"`` as ome-zarr 0.18 does).
        axes: lower-case axis names of the array, e.g. ``"tczyx"``.
        voxel_size: ``(z, y, x)``, None where absent.
        unit: the spatial unit's short form (``"um"``), or None.
        channel_names: the ``omero`` channel labels (``channel_<i>`` where unlabelled; ``[]`` without a c axis).
        version: the NGFF version (``"0.4"``, ``"0.5"``).
        group: the zarr group (its ``attrs`` hold the metadata, and arrays such as ``fg_mask`` beside the levels).
        multiscales: the first ``multiscales`` entry as stored.
    """

    path: Path
    array: Any
    dataset: str
    axes: str
    voxel_size: tuple
    unit: Optional[str]
    channel_names: list
    version: str
    group: Any
    multiscales: dict

    def channel_index(self, channel: Union[str, int, None], role: str = "volume") -> int:
        """Index along the c axis of ``channel`` (a name, an index, or a digit string that is not a name)."""
        if "c" not in self.axes:
            if channel in (None, 0, "0"):
                return 0
            raise DataError(self.path, f"{role} OME-Zarr has no channel axis (axes {self.axes}); channel "
                                       f"{channel!r} asked for")
        count = self.array.shape[self.axes.index("c")]
        if channel is None:
            if count == 1:
                return 0
            raise DataError(self.path, f"{role} OME-Zarr has {count} channels ({', '.join(self.channel_names)}); "
                                       f"name one (a channel column of the manifest, or PATH#CHANNEL)")
        if isinstance(channel, str) and channel in self.channel_names:
            return self.channel_names.index(channel)
        if isinstance(channel, int) or (isinstance(channel, str) and channel.isdigit()):
            index = int(channel)
            if 0 <= index < count:
                return index
        raise DataError(self.path, f"{role} channel {channel!r} not found; the image's channels are "
                                   f"{', '.join(self.channel_names)} (or indices 0..{count - 1})")


def _axis_names(axes_meta: list, ndim: int) -> str:
    names = "".join((a["name"] if isinstance(a, dict) else str(a)).lower() for a in axes_meta)
    if len(names) != ndim:
        names = "tczyx"[-ndim:] if ndim <= 5 else ""
    return names


def open_image(path: PathLike, role: str = "volume", array: Optional[str] = None) -> ZarrImage:
    """The OME-Zarr image at ``path`` (see :class:`ZarrImage`), read through ome-zarr's reader.

    ``array`` names another array of the image group to open instead of the full-resolution level (e.g.
    ``"fg_mask"``, the foreground masks of :mod:`.masks`); it must have the level's shape.
    """
    path = Path(path)
    found = location(path, role)
    try:
        zarr, _, Reader, Multiscales, _ = _modules()
        with quiet_ome_zarr():
            nodes = list(Reader(found)())
        node = next((n for n in nodes if any(isinstance(s, Multiscales) for s in n.specs)), None)
        if node is None:
            if "plate" in found.root_attrs:
                raise ValueError("this is an HCS plate, not an image: name a field of view (plate.zarr/ROW/COL/FIELD)"
                                 " or give the plate where plates are accepted")
            raise ValueError("no OME multiscales image in the store")
        spec = next(s for s in node.specs if isinstance(s, Multiscales))
        group = zarr.open_group(str(path), mode="r")
        level = spec.datasets[0]
        opened = group[array or level]
        if array is not None and tuple(opened.shape) != tuple(group[level].shape):
            raise ValueError(f"array {array!r} has shape {tuple(opened.shape)}, the image {tuple(group[level].shape)}")
        axes_meta = node.metadata.get("axes") or []
        names = _axis_names(axes_meta, opened.ndim)
        scale = None
        transforms = node.metadata.get("coordinateTransformations") or []
        for t in (transforms[0] if transforms else []) or []:
            if t.get("type") == "scale":
                scale = [float(s) for s in t["scale"]]
        units = [a.get("unit") for a in axes_meta if isinstance(a, dict) and a.get("type") == "space"]
        count = opened.shape[names.index("c")] if "c" in names else 0
        channel_names = list(node.metadata.get("channel_names") or [])
        if len(channel_names) != count:
            channel_names = [f"channel_{i}" for i in range(count)]
        multiscales = found.root_attrs.get("multiscales", [{}])[0]
        version = str(multiscales.get("version") or found.root_attrs.get("version") or found.version)
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
    return ZarrImage(path=path, array=opened, dataset=array or level, axes=names, voxel_size=tuple(voxel),
                     unit=_SHORT.get(unit, unit), channel_names=channel_names, version=version, group=group,
                     multiscales=multiscales)


def open_zarr(path: PathLike, role: str = "volume") -> tuple:
    """``(array, axes, voxel_size, unit)`` of the full-resolution level; the array is a lazy zarr array.

    ``axes`` are the axis names (e.g. ``"tczyx"``); ``voxel_size`` is ``(z, y, x)`` (None where absent).
    """
    image = open_image(path, role)
    return image.array, image.axes, image.voxel_size, image.unit


def volume_index(image: ZarrImage, channel: Union[str, int, None], role: str = "volume") -> tuple:
    """The index into ``image.array`` that leaves the ``(Z, Y, X)`` volume of ``channel`` at time point 0.

    A DataError when the image is not 3D in space, holds several time points, or ``channel`` is not one
    of its channels (or is missing where there are several).
    """
    axes, shape = image.axes, tuple(image.array.shape)
    if not axes or any(a not in axes for a in "zyx") or axes[-3:] != "zyx" or set(axes) - set("tczyx"):
        raise DataError(image.path, f"{role} OME-Zarr must have axes ending z, y, x (with optional t, c "
                                    f"before them); got {axes or 'unnamed'} of shape {shape}")
    if any(s == 0 for s in shape):
        raise DataError(image.path, f"{role} is empty, shape {shape}")
    index = []
    for axis, size in zip(axes[:-3], shape[:-3]):
        if axis == "t":
            if size != 1:
                raise DataError(image.path, f"{role} OME-Zarr holds {size} time points; spotlight reads images "
                                            f"of one time point (split the time points into fields of view)")
            index.append(0)
        else:
            index.append(image.channel_index(channel, role))
    if "c" not in axes:
        image.channel_index(channel, role)  # an asked-for channel other than 0 is an error
    return tuple(index)


def ngff_unit(unit: Optional[str]) -> Optional[str]:
    """The OME-NGFF name of a unit written the TIFF way (``um`` -> ``micrometer``)."""
    return _UNITS.get(unit, unit) if unit else None


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
        long_unit = ngff_unit(unit)
        if long_unit:
            kwargs["axes_units"] = dict.fromkeys("zyx", long_unit)
    path.parent.mkdir(parents=True, exist_ok=True)
    group = zarr.open_group(str(path), mode="w")
    chunks = (min(chunk_depth, volume.shape[0]),) + volume.shape[1:]
    write_image(volume, group, scale_factors=[], axes="zyx", storage_options={"chunks": chunks}, **kwargs)
    return path
