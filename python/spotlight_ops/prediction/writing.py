"""Where predictions go, slab by slab: TIFF files and channels of OME-Zarr images (standalone or plate fields).

A destination takes the finished planes of tiled prediction (:func:`.tiles.predict_tiled`) in
increasing z, ``(C_out, n, Y, X)`` float32, and writes each channel straight to disk:

* :class:`TiffDestination`: one uncompressed float32 TIFF per output channel (ImageJ, or OME-TIFF for an
  ``.ome.tif`` name, with the input's voxel size), created at full size and filled through a memory
  map opened for each slab and closed after it (its pages leave the process's resident memory);
* :class:`ZarrDestination`: named channels of an OME-Zarr image at time point 0; planes are gathered
  until they fill whole chunks in z, so every write covers whole chunks (the last one excepted). Lower
  resolution levels of an image that has them are made after level 0 is complete
  (:func:`~spotlight_ops.data.plates.write_channels`, which reads one channel at a time).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..data import plates, zarr_io
from ..data.io import VolumeMetadata, create_tiff


class TiffDestination:
    """``paths[c]`` receives output channel ``c``, a ``(Z, Y, X)`` float32 TIFF."""

    def __init__(self, paths: Sequence[Path], shape: tuple, metadata: Optional[VolumeMetadata]) -> None:
        self.paths, self.shape = [Path(p) for p in paths], tuple(shape)
        self.offsets = [create_tiff(p, self.shape, metadata) for p in self.paths]

    def write(self, z0: int, planes: np.ndarray) -> None:
        for path, offset, channel in zip(self.paths, self.offsets, planes):
            mapped = np.memmap(path, np.float32, "r+", offset, self.shape)
            mapped[z0:z0 + channel.shape[0]] = channel
            mapped.flush()
            del mapped

    def close(self) -> None:
        """Nothing is held open between writes."""


class ZarrDestination:
    """Channels ``names`` of the OME-Zarr image ``path`` (which must have them), written chunk-aligned in z."""

    def __init__(self, path: Path, names: Sequence[str]) -> None:
        zarr, _, _, _, _ = zarr_io._modules()
        image = zarr_io.open_image(path, "prediction")
        self.path, self.names = Path(path), list(names)
        self.levels = len(image.multiscales.get("datasets", [])) or 1
        self.array = zarr.open_group(str(path), mode="r+")[image.dataset]
        self.leads = [zarr_io.volume_index(image, name, "prediction") for name in self.names]
        self.depth = int(image.array.shape[-3])
        self.chunk = int(image.array.chunks[-3])
        self.pending: list = []
        self.start = 0

    def write(self, z0: int, planes: np.ndarray) -> None:
        self.pending.append(planes)
        end = z0 + planes.shape[1]
        if end == self.depth or end // self.chunk > self.start // self.chunk:
            stop = end if end == self.depth else (end // self.chunk) * self.chunk
            block = np.concatenate(self.pending, axis=1) if len(self.pending) > 1 else self.pending[0]
            for lead, channel in zip(self.leads, block):
                self.array[lead + (slice(self.start, stop),)] = channel[:stop - self.start]
            self.pending = [block[:, stop - self.start:]] if stop < end else []
            self.start = stop

    def close(self) -> None:
        """Makes the lower resolution levels, where the image has them."""
        if self.levels > 1:
            from ..data.io import read_volume

            for name in self.names:
                plates.write_channels(self.path, {name: read_volume(self.path, "prediction", channel=name,
                                                                    check_finite=False)})
