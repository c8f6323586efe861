"""The sample volume an export is checked on, and the bioimage.io package's test input.

The sample is, in this order: the volume given (``--sample``), the first signal volume of the
training manifest recorded in the model file (when it is still there), or seeded Gaussian noise. It
is resampled as training resampled (the voxel size of the model's preprocessing), and a centred box
of :data:`DEFAULT_BOX` voxels (each side a multiple of the model's size multiple, smaller for a
smaller volume, mirrored up to one multiple where the volume is thinner) is cut from it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from ..data import DataError, PreprocessConfig, read_manifest, read_volume
from ..data import preprocess as P

DEFAULT_BOX = (32, 64, 64)


@dataclass
class Sample:
    """``raw``: the box, resampled but not standardized, float32 ``(Z, Y, X)``; ``source``: its origin."""

    raw: np.ndarray
    source: str

    def standardized(self) -> np.ndarray:
        """The box standardized as ``spotlight predict`` standardizes a volume, ``(x - mean) / std``."""
        return P.standardize(self.raw)


def choose_sample(sample: Optional[Union[str, Path]], config: dict, preprocess: PreprocessConfig, multiple: int,
                  box: Sequence[int] = DEFAULT_BOX) -> Sample:
    """The sample of the module docstring; a given ``sample`` that cannot be read is a DataError."""
    if sample is not None:
        volume, source = read_volume(sample, "signal"), str(sample)
    else:
        volume, source = _training_volume(config)
    if volume is None:
        print("export: no --sample given and the training data is not at hand; checking on seeded Gaussian noise "
              "(give --sample VOLUME for a real test input in the bioimage.io package)", file=sys.stderr)
        shape = tuple(max(b, multiple) for b in box)
        return Sample(np.random.default_rng(0).standard_normal(shape).astype(np.float32), "Gaussian noise (seed 0)")
    volume = P.resample(volume, preprocess.factors())
    return Sample(np.ascontiguousarray(centred_box(volume, box, multiple), dtype=np.float32), source)


def centred_box(volume: np.ndarray, box: Sequence[int], multiple: int) -> np.ndarray:
    """The centred box of ``volume``: per axis ``box`` rounded down to a multiple of ``multiple`` and
    no larger than the volume's multiple, at least one multiple (mirrored up to it when thinner)."""
    out = volume
    for axis, (size, wanted) in enumerate(zip(volume.shape, box)):
        side = max(multiple, min(wanted // multiple * multiple, size // multiple * multiple))
        if size >= side:
            start = (size - side) // 2
            out = np.take(out, range(start, start + side), axis=axis)
        else:
            widths = [(0, 0)] * out.ndim
            widths[axis] = (0, side - size)
            out = np.pad(out, widths, mode="symmetric")
    return out


def _training_volume(config: dict) -> tuple:
    """``(volume, path)`` of the first signal of the run's training manifest, or ``(None, None)``."""
    csv = config.get("train_csv")
    if not csv:
        return None, None
    try:
        rows = read_manifest(csv)
        return read_volume(rows[0].signal, "signal"), str(rows[0].signal)
    except (DataError, OSError, ValueError, IndexError):
        return None, None
