"""What one channel of data is: a :class:`Source`, a file or one channel of an OME-Zarr image.

A source names a TIFF/OME-TIFF file (one channel, the file), or an OME-Zarr image and one of its
channels: a standalone ``x.ome.zarr`` or a field of view of an HCS plate (``plate.zarr/B/03/0``).
Wherever a path is written (manifest cells, ``spotlight evaluate`` paths), ``PATH#CHANNEL`` names a
channel by name or index: ``plate.zarr/B/03/0#Nuclei``. The ``#`` splits only when the whole text is
not an existing path and the part before it is a Zarr store, so file names holding ``#`` still work.

:func:`expand_plate` turns a source naming a plate's root into one source per field of view, in
plate order, with the field's name (``B/03/0``): how a manifest row or an evaluation path naming a
whole plate is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np

from . import plates, zarr_io
from .io import LazyVolume, open_volume, read_volume

PathLike = Union[str, Path]


@dataclass(frozen=True)
class Source:
    """One channel of one image.

    Attributes:
        path: the file, or the OME-Zarr image group (a plate's field of view is one).
        channel: the channel of a multi-channel OME-Zarr image, by name or index (None: the only one).
        array: another array of the image group read instead of its full-resolution level, with the
            same axes (``"fg_mask"``: the foreground masks of ``spotlight preprocess``).
    """

    path: Path
    channel: Optional[str] = None
    array: Optional[str] = None

    def __str__(self) -> str:
        text = str(self.path) + (f"#{self.channel}" if self.channel is not None else "")
        return text + (f" ({self.array})" if self.array else "")

    @property
    def is_zarr(self) -> bool:
        return zarr_io.is_zarr(self.path)

    def open(self, role: str = "volume") -> LazyVolume:
        """The channel's ``(Z, Y, X)`` volume, read lazily (:func:`~spotlight_ops.data.io.open_volume`)."""
        return open_volume(self.path, role, channel=self.channel, array=self.array)

    def read(self, role: str = "volume", dtype=np.float32, check_finite: bool = True) -> np.ndarray:
        """The whole ``(Z, Y, X)`` volume (:func:`~spotlight_ops.data.io.read_volume`)."""
        return read_volume(self.path, role, dtype, check_finite, channel=self.channel, array=self.array)


def split_channel(text: str) -> tuple[str, Optional[str]]:
    """``"PATH#CHANNEL"`` -> ``("PATH", "CHANNEL")`` when PATH is a Zarr store and the whole is not an
    existing path; otherwise ``(text, None)``."""
    head, sep, channel = text.rpartition("#")
    if not sep or not head or not channel or Path(text).expanduser().exists():
        return text, None
    return (head, channel) if zarr_io.is_zarr(Path(head).expanduser()) else (text, None)


def parse_source(text: str, base: Optional[PathLike] = None, channel: Optional[str] = None) -> Source:
    """The :class:`Source` written as ``text`` (``PATH`` or ``PATH#CHANNEL``); a relative PATH resolves
    against ``base``. ``channel`` (a manifest's channel column) may name the channel instead; naming two
    different channels is a ``ValueError``."""
    candidate = Path(text).expanduser()
    if base is not None and not candidate.is_absolute():
        text = str(Path(base) / candidate)
    path_text, named = split_channel(text)
    if channel is not None and named is not None and str(channel) != named:
        raise ValueError(f"{text}: channel {named!r} in the path and {channel!r} in the channel column differ")
    chosen = named if named is not None else (str(channel) if channel not in (None, "") else None)
    return Source(Path(path_text).expanduser(), chosen)


def expand_plate(source: Source, role: str = "volume") -> list[tuple[Optional[str], Source]]:
    """``[(field, source)]``: one per field of view when ``source`` names a plate's root (``field`` its
    path inside the plate, ``B/03/0``), else ``[(None, source)]``."""
    if not plates.is_plate(source.path):
        return [(None, source)]
    plate = plates.open_plate(source.path, role)
    return [(field, Source(plate.field_path(field), source.channel, source.array)) for field in plate.fields]
