"""Reading and writing 3D volumes: TIFF / OME-TIFF with tifffile, OME-Zarr with ome-zarr, validated.

Every problem with a file (missing, unreadable, truncated, not 3D, complex or non-finite values) raises
:class:`DataError` naming the file and the problem, before the volume is used.

:func:`open_volume` opens a volume lazily (:class:`LazyVolume`): an uncompressed TIFF is memory-mapped
(``tifffile.memmap``), an OME-Zarr store read chunk by chunk; other TIFFs (compressed, tiled) are read
whole, as they must be. :func:`read_volume` reads the whole volume. Paths ending ``.zarr`` (or folders
holding zarr metadata, such as a plate's field of view ``plate.zarr/B/03/0``) are OME-Zarr
(:mod:`.zarr_io`); ``channel`` picks one channel of a multi-channel OME-Zarr image, by name or index.
"""

from __future__ import annotations

import contextlib
import logging
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
import tifffile

from . import zarr_io
from .errors import DataError

PathLike = Union[str, Path]


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _tifffile_warnings():
    """Collects tifffile's logged warnings (how it reports truncated files) instead of printing them."""
    logger = logging.getLogger("tifffile")
    handler, propagate = _Collect(), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def _check_extent(tif: "tifffile.TiffFile", path: Path, role: str) -> None:
    """Every page's pixel data must lie inside the file (a truncated file fails this)."""
    size = path.stat().st_size
    for index, page in enumerate(tif.pages):
        for offset, count in zip(page.dataoffsets, page.databytecounts):
            if offset + count > size:
                raise DataError(path, f"{role} TIFF truncated: page {index} needs bytes up to {offset + count}, "
                                      f"the file has {size}")


def _real(dtype, path: Path, role: str) -> None:
    """A complex volume is refused: casting it to float would drop its imaginary part silently."""
    if np.issubdtype(np.dtype(dtype), np.complexfloating):
        raise DataError(path, f"{role} holds complex values ({np.dtype(dtype)}); give a real-valued volume "
                              "(its magnitude or real part, say)")


class LazyVolume:
    """A single-channel 3D volume ``(Z, Y, X)`` on disk, read in z slabs on demand.

    ``array`` is a memory map, a zarr array or an in-memory array; ``lead`` indexes its singleton
    leading axes away (the T and C of ``TCZYX``). :meth:`slab` returns a numpy copy of planes
    ``[z0, z1)``; :meth:`read` the whole volume.
    """

    def __init__(self, array, lead: tuple, path: Path, role: str) -> None:
        self.array, self.lead, self.path, self.role = array, lead, path, role
        self.shape = tuple(int(s) for s in array.shape[len(lead):])
        self.dtype = np.dtype(array.dtype)

    def slab(self, z0: int, z1: int, dtype=np.float32) -> np.ndarray:
        return self.box((slice(z0, z1),), dtype)

    def box(self, box: tuple, dtype=np.float32) -> np.ndarray:
        """``volume[box]`` as a numpy array (``box``: slices along z, y, x); a chunked store reads only the
        chunks the box touches."""
        try:
            block = np.asarray(self.array[self.lead + tuple(box)])
        except Exception as err:  # a chunk that cannot be read or decoded
            where = ", ".join(f"{b.start}..{b.stop}" for b in box)
            raise DataError(self.path, f"cannot read {self.role} box [{where}] "
                                       f"({type(err).__name__}: {err})") from err
        return block.astype(dtype, copy=False) if dtype is not None else block

    def read(self, dtype=np.float32) -> np.ndarray:
        return np.ascontiguousarray(self.slab(0, self.shape[0], dtype))


def _three_d(shape: tuple, path: Path, role: str) -> tuple:
    """Index dropping the leading singleton axes down to 3D (``()`` for 3D shapes); DataError when the
    volume has no 3 non-singleton axes or is empty. A result with more than 3 axes left means singleton
    axes elsewhere (the caller reads and squeezes)."""
    if any(s == 0 for s in shape):
        raise DataError(path, f"{role} is empty, shape {shape}")
    if len([s for s in shape if s != 1]) != 3:
        raise DataError(path, f"{role} must be a single-channel 3D volume (Z, Y, X) after dropping "
                              f"singleton axes; got shape {shape}")
    lead = 0
    while len(shape) - lead > 3 and shape[lead] == 1:
        lead += 1
    return (0,) * lead


def open_volume(path: PathLike, role: str = "volume", *, channel=None, array: Optional[str] = None) -> LazyVolume:
    """Opens a volume lazily (see the module docstring); problems raise :class:`DataError`.

    ``channel`` (a name or index) and ``array`` (another array of the image group, e.g. ``"fg_mask"``) apply
    to OME-Zarr images only (:func:`.zarr_io.volume_index`).
    """
    path = Path(path)
    if zarr_io.is_zarr(path):
        image = zarr_io.open_image(path, role, array=array)
        data, shape = image.array, tuple(image.array.shape)
        _real(data.dtype, path, role)
        sizes = dict(zip(image.axes, shape))
        if channel is not None or sizes.get("c", 1) > 1 or sizes.get("t", 1) > 1:
            return LazyVolume(data, zarr_io.volume_index(image, channel, role), path, role)
        lead = _three_d(shape, path, role)
        if len(shape) - len(lead) != 3:  # singleton axes in the middle (e.g. Z of 1): read and squeeze
            return LazyVolume(_checked_3d(np.asarray(data[...]), path, role), (), path, role)
        return LazyVolume(data, lead, path, role)
    if channel is not None or array is not None:
        raise DataError(path, f"{role}: a channel or array is named, but this is a TIFF (channels of TIFF data are "
                              f"separate files, one manifest column each)")
    if not path.is_file():
        raise DataError(path, f"{role} file not found")
    try:
        with _tifffile_warnings() as warnings:
            mapped = tifffile.memmap(path, mode="r")
        if warnings:
            raise ValueError("; ".join(warnings[:3]))
    except Exception:  # compressed, tiled or odd layouts cannot be mapped: read whole, with every check
        return LazyVolume(read_volume(path, role, dtype=None, check_finite=False), (), path, role)
    _real(mapped.dtype, path, role)
    shape = tuple(mapped.shape)
    lead = _three_d(shape, path, role)
    if len(shape) - len(lead) != 3:
        return LazyVolume(_checked_3d(np.asarray(mapped), path, role), (), path, role)
    return LazyVolume(mapped, lead, path, role)


def _checked_3d(array: np.ndarray, path: Path, role: str) -> np.ndarray:
    squeezed = np.squeeze(array)
    if squeezed.ndim != 3:
        raise DataError(path, f"{role} must be a single-channel 3D volume (Z, Y, X) after dropping "
                              f"singleton axes; got shape {array.shape}")
    return squeezed


def _finite(volume: np.ndarray, path: Path, role: str) -> None:
    if np.issubdtype(volume.dtype, np.floating) and not np.isfinite(volume).all():
        bad = int(np.count_nonzero(~np.isfinite(volume)))
        raise DataError(path, f"{role} holds {bad} non-finite (NaN or Inf) values")


def read_volume(path: PathLike, role: str = "volume", dtype=np.float32, check_finite: bool = True, *,
                channel=None, array: Optional[str] = None) -> np.ndarray:
    """Reads a single-channel 3D volume ``(Z, Y, X)`` from a TIFF/OME-TIFF file or an OME-Zarr store.

    Singleton axes (e.g. the T and C of a ``TCZYX`` OME-TIFF) are dropped; anything else
    that is not 3D is rejected. ``role`` (``"signal"``, ``"target"``, ``"mask"``) goes into
    error messages. The result has ``dtype`` (``None`` keeps the file's). ``channel`` and ``array``
    pick a channel / another array of an OME-Zarr image (:func:`open_volume`).
    """
    path = Path(path)
    if zarr_io.is_zarr(path):
        volume = open_volume(path, role, channel=channel, array=array).read(dtype)
        if check_finite:
            _finite(volume, path, role)
        return volume
    if channel is not None or array is not None:
        return open_volume(path, role, channel=channel, array=array).read(dtype)  # raises: TIFF channels are files
    if not path.is_file():
        raise DataError(path, f"{role} file not found")
    try:
        with _tifffile_warnings() as warnings, tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise ValueError("no image series in the file")
            _check_extent(tif, path, role)
            array = tif.series[0].asarray()
    except DataError:
        raise
    except Exception as err:  # tifffile raises many kinds on corrupt files: report them all alike
        raise DataError(path, f"cannot read {role} TIFF ({type(err).__name__}: {err})") from err
    if warnings:
        raise DataError(path, f"{role} TIFF is truncated or corrupted (tifffile: {'; '.join(warnings[:3])})")
    _real(array.dtype, path, role)
    squeezed = np.squeeze(array)
    if squeezed.ndim != 3:
        raise DataError(path, f"{role} must be a single-channel 3D volume (Z, Y, X) after dropping "
                              f"singleton axes; got shape {array.shape}")
    if squeezed.size == 0:
        raise DataError(path, f"{role} is empty, shape {array.shape}")
    if dtype is not None:
        squeezed = squeezed.astype(dtype, copy=False)
    if check_finite:
        _finite(squeezed, path, role)
    return np.ascontiguousarray(squeezed)


@dataclass
class VolumeMetadata:
    """What is kept from an input TIFF when writing a derived volume (the prediction).

    ``voxel_size`` is ``(z, y, x)`` in ``unit``; entries are None where the file did not say.
    """

    voxel_size: tuple = (None, None, None)
    unit: Optional[str] = None


def _ome_voxel_size(ome_xml: str) -> tuple:
    root = ElementTree.fromstring(ome_xml)
    for element in root.iter():
        if element.tag.endswith("Pixels"):
            get = element.attrib.get
            sizes = tuple(float(get(f"PhysicalSize{a}")) if get(f"PhysicalSize{a}") else None for a in "ZYX")
            return sizes, get("PhysicalSizeXUnit")
    return (None, None, None), None


def read_metadata(path: PathLike) -> VolumeMetadata:
    """Voxel size and unit from OME-XML, ImageJ metadata or the TIFF resolution tags."""
    path = Path(path)
    if zarr_io.is_zarr(path):
        _, _, sizes, unit = zarr_io.open_zarr(path)
        return VolumeMetadata(voxel_size=sizes, unit=unit)
    try:
        with tifffile.TiffFile(path) as tif:
            if tif.is_ome and tif.ome_metadata:
                sizes, unit = _ome_voxel_size(tif.ome_metadata)
                if any(s is not None for s in sizes):
                    return VolumeMetadata(voxel_size=sizes, unit=unit)
            page = tif.pages[0]
            y_size = x_size = None
            tags = page.tags
            if "XResolution" in tags and "YResolution" in tags:
                xr, yr = tags["XResolution"].value, tags["YResolution"].value
                x_size = xr[1] / xr[0] if xr[0] else None
                y_size = yr[1] / yr[0] if yr[0] else None
            ij = tif.imagej_metadata or {}
            z_size = ij.get("spacing")
            unit = ij.get("unit")
            if x_size == 1.0 and y_size == 1.0 and z_size is None:
                x_size = y_size = None  # the TIFF default resolution: no information
            return VolumeMetadata(voxel_size=(z_size, y_size, x_size), unit=unit)
    except Exception as err:
        raise DataError(path, f"cannot read TIFF metadata ({type(err).__name__}: {err})") from err


def is_ome_tiff(path: PathLike) -> bool:
    return Path(path).name.lower().endswith((".ome.tif", ".ome.tiff"))


def _voxels(metadata: Optional[VolumeMetadata], voxel_size: Optional[tuple], unit: str) -> tuple:
    """``(voxel size, unit)`` to write: ``voxel_size`` and ``unit`` when given, else ``metadata``'s."""
    sizes = tuple(voxel_size) if voxel_size is not None else (metadata.voxel_size if metadata else (None,) * 3)
    if metadata is not None and metadata.unit and voxel_size is None:
        unit = metadata.unit
    return sizes, unit


def _tiff_options(path: Path, metadata: Optional[VolumeMetadata], voxel_size: Optional[tuple], unit: str) -> dict:
    """tifffile's write arguments for a ``(Z, Y, X)`` float volume at ``path`` with its voxel size: OME-TIFF
    with ``PhysicalSize{Z,Y,X}`` for ``*.ome.tif(f)``, an ImageJ-compatible TIFF otherwise."""
    sizes, unit = _voxels(metadata, voxel_size, unit)
    if is_ome_tiff(path):
        ome_meta = {"axes": "ZYX"}
        for axis, size in zip("ZYX", sizes):
            if size:
                ome_meta[f"PhysicalSize{axis}"] = float(size)
                ome_meta[f"PhysicalSize{axis}Unit"] = "µm" if unit in ("um", "micron", "\\u00B5m") else unit
        return {"ome": True, "metadata": ome_meta}
    ij_meta = {"axes": "ZYX"}
    if sizes[0]:
        ij_meta["spacing"] = float(sizes[0])
    if any(sizes):
        ij_meta["unit"] = unit
    options = {"imagej": True, "metadata": ij_meta}
    if sizes[1] and sizes[2]:
        options["resolution"] = (1.0 / float(sizes[2]), 1.0 / float(sizes[1]))
    return options


def create_tiff(path: PathLike, shape: tuple, metadata: Optional[VolumeMetadata] = None) -> int:
    """Creates an uncompressed float32 TIFF of ``shape`` ``(Z, Y, X)`` (kind and metadata as
    :func:`write_volume`), zero-filled; returns the byte offset of its contiguous pixel data, to fill it
    through ``numpy.memmap`` slab by slab."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mapped = tifffile.memmap(path, shape=tuple(shape), dtype=np.float32, **_tiff_options(path, metadata, None, "um"))
    offset = int(mapped.offset)
    del mapped
    return offset


def write_volume(path: PathLike, volume: np.ndarray, metadata: Optional[VolumeMetadata] = None,
                 voxel_size: Optional[tuple] = None, unit: str = "um") -> Path:
    """Writes a ``(Z, Y, X)`` volume with its voxel size; the kind follows the name.

    ``*.zarr``: OME-Zarr (:func:`.zarr_io.write_zarr`); ``*.ome.tif(f)``: OME-TIFF with
    ``PhysicalSize{Z,Y,X}``; anything else: an ImageJ-compatible TIFF. ``metadata`` (from
    :func:`read_metadata`) is kept where known; ``voxel_size`` overrides it.
    """
    path = Path(path)
    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise ValueError(f"volume must be 3D (Z, Y, X), got shape {volume.shape}")
    if volume.dtype == np.float64:
        volume = volume.astype(np.float32)
    if zarr_io.is_zarr(path):
        sizes, unit = _voxels(metadata, voxel_size, unit)
        return zarr_io.write_zarr(path, volume, sizes, unit if any(sizes) else None)
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, volume, **_tiff_options(path, metadata, voxel_size, unit))
    return path
