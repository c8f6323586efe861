r"""Geometric augmentation of training patches: flips and 90-degree rotations, the same for every array.

A :class:`Transform` is an element of the symmetry group of the voxel grid that keeps z as z:
``rotations`` quarter turns in the YX plane (``numpy.rot90`` on axes (y, x)), then optional flips of
z, y and x. Applied alike to signal, target, foreground and mask, it keeps them aligned. For a
patch of size ``(pz, py, px)`` with ``py != px``, an odd number of quarter turns needs a source box
of size ``(pz, px, py)``: :meth:`Transform.source_shape` says which box to cut.

Modes (``augment`` in the training config):

* ``"none"``: identity (the paper's training; the default);
* ``"yx"``: one of the 8 rotations/reflections of the YX plane, uniformly;
* ``"zyx"``: as ``"yx"``, and a z flip with probability 1/2 (16 elements).

The draws come from a ``numpy.random.Generator`` the caller keeps in its checkpointed state, so a
resumed run draws the same transforms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

MODES = ("none", "yx", "zyx")


@dataclass(frozen=True)
class Transform:
    """``rotations`` quarter turns in YX (0..3), then flips along z, y, x."""

    rotations: int = 0
    flip_z: bool = False
    flip_y: bool = False
    flip_x: bool = False

    def source_shape(self, patch_shape: Sequence[int]) -> tuple:
        """The box to cut so that the transformed array has ``patch_shape``."""
        z, y, x = (int(s) for s in patch_shape)
        return (z, x, y) if self.rotations % 2 else (z, y, x)

    def apply(self, array: np.ndarray) -> np.ndarray:
        """The transformed ``(..., Z, Y, X)`` array (a contiguous copy; the input is left alone)."""
        out = np.rot90(array, self.rotations, axes=(-2, -1)) if self.rotations % 4 else array
        axes = tuple(a for a, f in ((-3, self.flip_z), (-2, self.flip_y), (-1, self.flip_x)) if f)
        if axes:
            out = np.flip(out, axes)
        return np.ascontiguousarray(out)

    def invert(self, array: np.ndarray) -> np.ndarray:
        """Undoes :meth:`apply` (flips first, then the opposite rotation)."""
        axes = tuple(a for a, f in ((-3, self.flip_z), (-2, self.flip_y), (-1, self.flip_x)) if f)
        out = np.flip(array, axes) if axes else array
        if self.rotations % 4:
            out = np.rot90(out, -self.rotations, axes=(-2, -1))
        return np.ascontiguousarray(out)


IDENTITY = Transform()


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"augment must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


def draw(rng: np.random.Generator, mode: str) -> Transform:
    """A uniformly random transform of ``mode``; ``"none"`` draws nothing (the generator is untouched)."""
    check_mode(mode)
    if mode == "none":
        return IDENTITY
    # one draw per patch: bits 0-1 rotations, bit 2 the y flip (with the rotations: all 8 of the YX
    # plane's symmetries), bit 3 the z flip
    code = int(rng.integers(16 if mode == "zyx" else 8))
    return Transform(rotations=code & 3, flip_y=bool(code & 4), flip_z=bool(code & 8))
