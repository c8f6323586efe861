"""HCS OME-Zarr plates (OME-NGFF 0.4 and 0.5), read and written with ``ome-zarr`` and ``zarr``.

A plate is a Zarr group with ``plate`` metadata listing its wells (``B/03``); a well lists its fields
of view (``B/03/0``); a field of view is an OME-Zarr image, ``(T, C, Z, Y, X)`` with named channels
(``omero``), readable on its own by :mod:`.zarr_io` (a manifest names it as ``plate.zarr/B/03/0``). This
is the layout iohub writes for VisCy (NGFF 0.4: zarr v2, axes ``T, C, Z, Y, X``, level ``0``), and the
one ome-zarr writes.

* :func:`open_plate`: a :class:`Plate` (its rows, columns, wells and fields of view, in plate order);
  :meth:`Plate.channel_names` are the first field's channels.
* :func:`create_plate_like`: a new plate with the layout of another (the same rows, columns, wells,
  fields, NGFF version, axes, voxel sizes, level path and spatial chunks), holding the given channels,
  filled with NaN until written: where predictions go (``spotlight predict``'s default: a new store).
* :func:`append_channels`: new channels in every field of view of an existing plate (every resolution
  level resized, the ``omero`` channels extended): predictions written into the input store.
* :func:`write_channels`: volumes into named channels of one field of view (level 0, and every lower
  level downsampled with ome-zarr's own ``resize`` method).

Field of view names are paths inside the plate (``B/03/0``), so a plate's fields never collide.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from . import zarr_io
from .errors import DataError

PathLike = Union[str, Path]


def _ome(attrs: dict) -> dict:
    """The OME metadata of a group's attributes: under ``ome`` in NGFF 0.5, at the top in 0.4."""
    return attrs["ome"] if isinstance(attrs.get("ome"), dict) else attrs


def _raw_attrs(path: Path) -> dict:
    """A group's attributes read from its metadata file (no zarr needed): ``{}`` when there are none."""
    try:
        if (path / "zarr.json").is_file():
            return json.loads((path / "zarr.json").read_text()).get("attributes", {}) or {}
        if (path / ".zattrs").is_file():
            return json.loads((path / ".zattrs").read_text()) or {}
    except (OSError, ValueError):
        return {}
    return {}


def is_plate(path: PathLike) -> bool:
    """Whether ``path`` is the root of an HCS plate (a Zarr group with ``plate`` metadata)."""
    path = Path(path)
    return path.is_dir() and "plate" in _ome(_raw_attrs(path))


@dataclass(frozen=True)
class Plate:
    """An HCS plate's layout: ``fields`` are the fields of view as paths inside the plate (``B/03/0``)."""

    path: Path
    version: str
    rows: tuple
    columns: tuple
    wells: tuple
    fields: tuple
    metadata: dict

    def field_path(self, field: str) -> Path:
        """The image group of ``field`` (``plate.zarr/B/03/0``); a DataError when the plate has no such field."""
        if field not in self.fields:
            raise DataError(self.path, f"plate has no field of view {field!r}; it has {', '.join(self.fields)}")
        return self.path / field

    def channel_names(self) -> list:
        """The channels of the plate's first field of view (iohub keeps them equal across fields)."""
        return zarr_io.open_image(self.field_path(self.fields[0]), "plate").channel_names


def open_plate(path: PathLike, role: str = "plate") -> Plate:
    """The :class:`Plate` at ``path``, read with ome-zarr (NGFF 0.4 and 0.5); a DataError naming what is wrong."""
    path = Path(path)
    found = zarr_io.location(path, role)
    meta = found.root_attrs.get("plate")
    if not isinstance(meta, dict):
        raise DataError(path, f"{role} is not an HCS plate (no plate metadata)")
    try:
        rows = tuple(r["name"] for r in meta["rows"])
        columns = tuple(c["name"] for c in meta["columns"])
        wells = tuple(w["path"] for w in meta["wells"])
        fields = []
        for well in wells:
            images = zarr_io.location(path / well, f"{role} well").root_attrs.get("well", {}).get("images")
            if not images:
                raise ValueError(f"well {well} lists no fields of view")
            fields += [f"{well}/{image['path']}" for image in images]
    except DataError:
        raise
    except (KeyError, TypeError, ValueError) as err:
        raise DataError(path, f"cannot read {role} metadata ({type(err).__name__}: {err})") from err
    version = str(meta.get("version") or found.root_attrs.get("version") or found.version)
    return Plate(path=path, version=version, rows=rows, columns=columns, wells=wells, fields=tuple(fields),
                 metadata=meta)


def _format(version: str):
    from ome_zarr.format import format_from_version

    try:
        return format_from_version(version)
    except ValueError as err:
        raise DataError(None, f"cannot write OME-NGFF version {version!r}: {err}") from err


def _omero_channel(name: str) -> dict:
    return {"label": name, "color": "FFFFFF", "active": True, "coefficient": 1.0, "family": "linear",
            "inverted": False, "window": {"start": 0.0, "end": 1.0, "min": 0.0, "max": 1.0}}


def _output_axes(image) -> tuple[list, list]:
    """``(axes, scale)`` of an output image from a source image's first level: the source's axes as stored
    (iohub spells them ``T, C, Z, Y, X``), with a channel axis before z where the source has none."""
    stored = image.multiscales.get("axes") or list(image.axes)
    axes = [dict(a) if isinstance(a, dict) else {"name": str(a)} for a in stored]
    scale = next((t["scale"] for t in image.multiscales["datasets"][0].get("coordinateTransformations", [])
                  if t.get("type") == "scale"), [1.0] * len(axes))
    scale = [float(s) for s in scale]
    if "c" not in image.axes:
        at = image.axes.index("z")
        axes.insert(at, {"name": "c", "type": "channel"})
        scale.insert(at, 1.0)
    return axes, scale


def create_plate_like(source: Union[Plate, PathLike], out: PathLike, channel_names: Sequence[str],
                      fields: Optional[Sequence[str]] = None, dtype=np.float32) -> Plate:
    """A new plate at ``out`` with the layout of ``source``, holding ``channel_names``, every value NaN.

    The same NGFF version (so a 0.4 plate of iohub stays readable by iohub), rows, columns, wells and
    fields (all, or ``fields``), and per field the source's axes, voxel size, level path and spatial
    chunks; one time point and one resolution level. Fill it with :func:`write_channels`.
    Refuses an ``out`` that exists (nothing is overwritten).
    """
    zarr, _, _, _, _ = zarr_io._modules()
    from ome_zarr.writer import write_plate_metadata, write_well_metadata

    source = source if isinstance(source, Plate) else open_plate(source)
    out = Path(out)
    names = [str(n) for n in channel_names]
    if not names or len(set(names)) != len(names):
        raise ValueError(f"channel_names must be distinct and at least one, got {names}")
    chosen = list(source.fields if fields is None else fields)
    for field in chosen:
        source.field_path(field)  # raises for a field the plate does not have
    if out.exists():
        raise DataError(out, "exists; choose another output (a plate is never overwritten)")
    fmt = _format(source.version)
    root = zarr.open_group(str(out), mode="w-", zarr_format=fmt.zarr_format)
    wells = [w for w in source.wells if any(f.startswith(w + "/") for f in chosen)]
    write_plate_metadata(root, list(source.rows), list(source.columns), wells, fmt=fmt,
                         acquisitions=source.metadata.get("acquisitions"),
                         field_count=max(sum(f.startswith(w + "/") for f in chosen) for w in wells),
                         name=source.metadata.get("name"))
    for well in wells:
        images = [{"path": f.split("/")[-1]} for f in chosen if f.startswith(well + "/")]
        write_well_metadata(root.require_group(well), images, fmt=fmt)
    for field in chosen:
        image = zarr_io.open_image(source.field_path(field), "plate field")
        _image_like(root.require_group(field), image, names, fmt, dtype, field.split("/")[-1])
    return open_plate(out)


def _image_like(group, image, names: list, fmt, dtype, name: str) -> None:
    """An image in ``group`` with ``image``'s axes (a channel axis added where it has none), voxel size, level
    path and spatial chunks, holding channels ``names`` at one time point, one level, filled with NaN."""
    from ome_zarr.writer import write_multiscales_metadata

    axes, scale = _output_axes(image)
    shape, chunks = [], []
    spatial = dict(zip(image.axes, image.array.shape))
    spatial_chunks = dict(zip(image.axes, image.array.chunks))
    for axis in axes:
        axis_name = axis["name"].lower()
        shape.append(len(names) if axis_name == "c" else 1 if axis_name == "t" else spatial[axis_name])
        chunks.append(1 if axis_name in "tc" else min(spatial_chunks[axis_name], spatial[axis_name]))
    group.create_array(image.dataset, shape=tuple(shape), chunks=tuple(chunks), dtype=dtype, fill_value=np.nan)
    write_multiscales_metadata(
        group, [{"path": image.dataset, "coordinateTransformations": [{"type": "scale", "scale": scale}]}],
        fmt=fmt, axes=axes, name=image.multiscales.get("name") or name,
        metadata={"omero": {"channels": [_omero_channel(n) for n in names]}})


def create_image_like(source: PathLike, out: PathLike, channel_names: Sequence[str], dtype=np.float32) -> Path:
    """A new OME-Zarr image at ``out`` laid out as the image ``source`` (as a field of :func:`create_plate_like`:
    the same NGFF version, axes with a channel axis, voxel size, level path, spatial chunks), holding
    ``channel_names``, NaN until written. Refuses an ``out`` that exists."""
    zarr, _, _, _, _ = zarr_io._modules()
    image = zarr_io.open_image(source, "image")
    names = [str(n) for n in channel_names]
    if not names or len(set(names)) != len(names):
        raise ValueError(f"channel_names must be distinct and at least one, got {names}")
    out = Path(out)
    if out.exists():
        raise DataError(out, "exists; choose another output (an image store is never overwritten)")
    fmt = _format(image.version)
    root = zarr.open_group(str(out), mode="w-", zarr_format=fmt.zarr_format)
    _image_like(root, image, names, fmt, dtype, out.name.split(".")[0])
    return out


def _writable_image(path: Path):
    zarr, _, _, _, _ = zarr_io._modules()
    image = zarr_io.open_image(path, "plate field")
    group = zarr.open_group(str(path), mode="r+")
    return image, group


def _set_omero_channels(group, names: list) -> None:
    attrs = dict(group.attrs)
    ome = _ome(attrs)
    omero = dict(ome.get("omero") or {})
    known = {c.get("label"): c for c in omero.get("channels", [])}
    omero["channels"] = [known.get(n) or _omero_channel(n) for n in names]
    ome["omero"] = omero
    group.attrs.update(attrs)


def append_channels(plate: Union[Plate, PathLike], names: Sequence[str]) -> None:
    """Adds channels ``names`` to every field of view of ``plate`` (all levels resized along C, ``omero``
    extended); their values read as each array's fill value until :func:`write_channels` writes them.

    A name a field already has is an error naming it (nothing is changed then).
    """
    plate = plate if isinstance(plate, Plate) else open_plate(plate)
    _append([plate.field_path(field) for field in plate.fields], names)


def append_image_channels(image: PathLike, names: Sequence[str]) -> None:
    """:func:`append_channels` for one OME-Zarr image (a standalone ``x.ome.zarr`` with a channel axis)."""
    _append([Path(image)], names)


def _append(paths: list, names: Sequence[str]) -> None:
    names = [str(n) for n in names]
    if not names or len(set(names)) != len(names):
        raise ValueError(f"names must be distinct and at least one, got {names}")
    opened = []
    for path in paths:
        image, group = _writable_image(path)
        if "c" not in image.axes:
            raise DataError(image.path, "image has no channel axis; channels cannot be added")
        clash = [n for n in names if n in image.channel_names]
        if clash:
            raise DataError(image.path, f"already has channel(s) {', '.join(clash)}; choose other names")
        opened.append((image, group))
    for image, group in opened:
        c = image.axes.index("c")
        for dataset in image.multiscales["datasets"]:
            array = group[dataset["path"]]
            shape = list(array.shape)
            shape[c] += len(names)
            array.resize(tuple(shape))
        _set_omero_channels(group, image.channel_names + names)


# ome-zarr's default pyramid method ("resize"): skimage.transform.resize with these arguments
RESIZE = {"order": 1, "mode": "reflect", "anti_aliasing": True, "preserve_range": True}


def _downsampled(volume: np.ndarray, shape: tuple) -> np.ndarray:
    """``volume`` resized to ``shape`` as ome-zarr makes the lower levels of a pyramid (its dask ``resize``
    with :data:`RESIZE`)."""
    import dask.array as da
    from ome_zarr.dask_utils import resize

    if tuple(volume.shape) == tuple(shape):
        return volume
    return np.asarray(resize(da.from_array(volume), shape, **RESIZE).compute())


def write_channels(field: PathLike, volumes: dict) -> None:
    """Writes ``{channel name: (Z, Y, X) volume}`` into the field of view (or any OME-Zarr image) ``field``,
    at time point 0: level 0 as given, lower levels downsampled (:func:`_downsampled`)."""
    image, group = _writable_image(Path(field))
    if "c" not in image.axes:
        raise DataError(image.path, "image has no channel axis; write a single-channel image with write_volume")
    space = tuple(image.array.shape[-3:])
    for name, volume in volumes.items():
        volume = np.asarray(volume)
        if name not in image.channel_names:
            raise DataError(image.path, f"has no channel {name!r} (it has {', '.join(image.channel_names)}); add it "
                                        f"first (append_channels)")
        if volume.shape != space:
            raise ValueError(f"volume for channel {name!r} has shape {volume.shape}, the field {space}")
        for dataset in image.multiscales["datasets"]:
            array = group[dataset["path"]]
            index = tuple(image.channel_index(name) if a == "c" else 0 for a in image.axes[:-3])
            array[index] = _downsampled(volume, tuple(array.shape[-3:])).astype(array.dtype, copy=False)




def field_path_argument(text: str) -> str:
    """A command line's field of view, checked as its path inside the plate: three non-empty parts
    (``B/03/0``); the argparse type of every ``--fields`` flag."""
    import argparse

    parts = text.strip("/").split("/")
    if len(parts) != 3 or not all(parts):
        raise argparse.ArgumentTypeError(f"{text!r} is not a field of view ROW/COL/FIELD (e.g. B/03/0)")
    return "/".join(parts)


def field_of(path: PathLike) -> Optional[tuple[Path, str]]:
    """``(plate root, field)`` when ``path`` is a field of view of an HCS plate (``plate.zarr/B/03/0`` ->
    ``(plate.zarr, "B/03/0")``), else None. Only the plate's metadata is read."""
    path = Path(path)
    parts = path.parts
    if len(parts) < 4 or not is_plate(path.parents[2]):
        return None
    root = path.parents[2]
    meta = _ome(_raw_attrs(root)).get("plate", {})
    field = "/".join(parts[-3:])
    if f"{parts[-3]}/{parts[-2]}" not in {w.get("path") for w in meta.get("wells", [])}:
        return None
    return root, field


__all__ = ["Plate", "append_channels", "append_image_channels", "create_image_like", "create_plate_like", "field_of", "is_plate", "open_plate", "write_channels"]
