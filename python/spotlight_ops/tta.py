r"""Test-time augmentation: the symmetries of the voxel grid that keep z as z, on batched tensors.

The elements are those of training's augmentation (:class:`spotlight_ops.data.augment.Transform`:
``rotations`` quarter turns in the YX plane, then flips), and the modes are the same:

* ``"yx"``: the 8 symmetries of the YX square (the dihedral group D4): 0 to 3 quarter turns, each
  with and without a y flip (which, with the turns, gives the x flip and both diagonal reflections);
* ``"zyx"``: those 8, each with and without a z flip (16).

z is never swapped with y or x: a microscope's axial blur is not symmetric under it. The prediction
of a tile ``x`` is the mean over the group ``G``, each prediction mapped back by the inverse:

    P(x) = (1 / |G|) sum_{g in G} g^{-1}( net( g(x) ) )

For a tile with Y != X an odd number of quarter turns gives a ``(Z, X, Y)`` tile; the network sees
it so, and the inverse turns its prediction back.
"""

from __future__ import annotations

from typing import Optional

from torch import Tensor

from .data.augment import Transform

MODES = ("yx", "zyx")


def symmetries(mode: Optional[str]) -> list[Transform]:
    """The group of ``mode`` (None or ``"none"``: the identity alone), the identity first."""
    if mode in (None, "none"):
        return [Transform()]
    if mode not in MODES:
        raise ValueError(f"tta must be None, 'none', 'yx' or 'zyx', got {mode!r}")
    z_flips = (False, True) if mode == "zyx" else (False,)
    return [Transform(rotations=r, flip_y=fy, flip_z=fz) for fz in z_flips for fy in (False, True) for r in range(4)]


def apply(x: Tensor, t: Transform) -> Tensor:
    """``t`` applied to the last three axes (z, y, x) of ``x``: the quarter turns, then the flips."""
    out = x.rot90(t.rotations, dims=(-2, -1)) if t.rotations % 4 else x
    dims = _flip_dims(t)
    return out.flip(dims) if dims else out


def invert(y: Tensor, t: Transform) -> Tensor:
    """Undoes :func:`apply`: the flips, then the opposite turns."""
    dims = _flip_dims(t)
    out = y.flip(dims) if dims else y
    return out.rot90(-t.rotations, dims=(-2, -1)) if t.rotations % 4 else out


def _flip_dims(t: Transform) -> list[int]:
    return [d for d, f in ((-3, t.flip_z), (-2, t.flip_y), (-1, t.flip_x)) if f]
