r"""The signal of a prediction, read lazily and standardized box by box with streamed statistics.

Each signal channel is a :class:`~spotlight_ops.data.io.LazyVolume` (:func:`~spotlight_ops.data.io.open_volume`:
an uncompressed TIFF memory-mapped, an OME-Zarr channel chunk by chunk; a compressed TIFF is read
whole, as it must be). A memory map is opened afresh for every box and closed after it, so the
pages it touched leave the process's resident memory with it.

Standardization is the training pipeline's, ``(x - mean) / std`` in float64 returned as float32
(:func:`~spotlight_ops.data.preprocess.standardize_with`), with the whole volume's mean and std
(ddof 0) computed in two streamed passes over z slabs:

    mean = (1 / N) sum_slabs sum_v x_v,        std = sqrt((1 / N) sum_slabs sum_v (x_v - mean)^2)

both accumulated in float64, as numpy's two-pass ``mean``/``std`` of the whole volume (they differ
only by the order of the float64 additions). The first pass also refuses non-finite values, naming
the file.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from ..data.errors import DataError
from ..data.io import LazyVolume, open_volume
from ..data.preprocess import standardize_with
from ..data.sources import Source
from .tiles import Reader

SLAB_BYTES = 8 << 20  # float64 bytes per slab of the statistics passes


class _Remapped:
    """A memory-mapped array opened for each read and closed after it (its pages leave the resident set)."""

    def __init__(self, mapped: np.memmap) -> None:
        self.filename, self.offset = mapped.filename, mapped.offset
        self.dtype, self.shape = mapped.dtype, tuple(mapped.shape)
        self.order = "F" if mapped.flags.f_contiguous and not mapped.flags.c_contiguous else "C"

    def __getitem__(self, key):
        mapped = np.memmap(self.filename, self.dtype, "r", self.offset, self.shape, self.order)
        try:
            return np.array(mapped[key])
        finally:
            del mapped


def open_signal(source: Source, role: str = "signal") -> LazyVolume:
    """One signal channel, lazily (a memory map becomes :class:`_Remapped`)."""
    volume = source.open(role)
    if isinstance(volume.array, np.memmap):
        volume = LazyVolume(_Remapped(volume.array), volume.lead, volume.path, volume.role)
    return volume


def streaming_moments(volume: LazyVolume, slab_bytes: int = SLAB_BYTES) -> tuple[float, float]:
    """``(mean, std)`` of a lazily read volume in float64, two passes of z slabs (see the module docstring);
    a DataError naming the file when it holds non-finite values."""
    depth, height, width = volume.shape
    planes = max(1, slab_bytes // (8 * height * width))
    count = depth * height * width
    total, bad = 0.0, 0
    for z0 in range(0, depth, planes):
        slab = volume.slab(z0, min(z0 + planes, depth))
        finite = np.isfinite(slab)
        if not finite.all():
            bad += int(slab.size - np.count_nonzero(finite))
        total += float(slab.sum(dtype=np.float64))
    if bad:
        raise DataError(volume.path, f"{volume.role} holds {bad} non-finite (NaN or Inf) values")
    mean = total / count
    squares = 0.0
    for z0 in range(0, depth, planes):
        deviation = volume.slab(z0, min(z0 + planes, depth)).astype(np.float64)
        deviation -= mean
        squares += float(np.dot(deviation.ravel(), deviation.ravel()))
    return mean, math.sqrt(squares / count)


class StandardizedReader(Reader):
    """Signal channels read lazily and standardized per box with their streamed statistics."""

    def __init__(self, volumes: Sequence[LazyVolume]) -> None:
        shapes = {v.shape for v in volumes}
        if len(shapes) != 1:
            raise DataError(volumes[0].path, "signal channels differ in shape: " + ", ".join(
                f"{v.path} {v.shape}" for v in volumes))
        self.volumes = list(volumes)
        self.shape, self.channels = volumes[0].shape, len(volumes)
        self.moments = [streaming_moments(v) for v in volumes]

    def box(self, box: tuple) -> np.ndarray:
        """The box standardized plane by plane (the float64 temporaries of one plane at a time)."""
        z = box[0]
        depth = z.stop - z.start
        out = None
        for c, (volume, (mean, std)) in enumerate(zip(self.volumes, self.moments)):
            raw = volume.box(box, dtype=None)
            if out is None:
                out = np.empty((self.channels,) + raw.shape, np.float32)
            for i in range(depth):
                out[c, i] = standardize_with(raw[i].astype(np.float32, copy=False), mean, std)
        return out


def open_signals(sources: Sequence[Source]) -> StandardizedReader:
    """The standardized lazy reader of the signal channels ``sources``."""
    return StandardizedReader([open_signal(s) for s in sources])


