"""Argument checks shared by the evaluation modules.

Every public function validates its inputs up front with these helpers, so a bad
argument fails before any work, with a message that names it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def as_image(name: str, value: object, ndim: Sequence[int] = (2, 3)) -> np.ndarray:
    """Returns ``value`` as a finite float64 array of one of the allowed ``ndim``.

    Raises TypeError for non-numeric input and ValueError for a wrong number of
    dimensions, an empty array or a non-finite value, naming ``name``.
    """
    array = np.asarray(value)
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number):
        raise TypeError(f"{name} must be a numeric array, got dtype {array.dtype}")
    if np.iscomplexobj(array):
        raise TypeError(f"{name} must be real-valued, got dtype {array.dtype}")
    if array.ndim not in tuple(ndim):
        raise ValueError(f"{name} must have {' or '.join(map(str, ndim))} dimensions, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty (shape {array.shape})")
    array = array.astype(np.float64, copy=False)
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or Inf values")
    return array


def as_mask(name: str, value: object, shape: tuple[int, ...]) -> np.ndarray:
    """Returns ``value`` as a boolean array of ``shape`` (nonzero = inside)."""
    array = np.asarray(value)
    if array.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {array.shape}")
    return array.astype(bool, copy=False)


def as_labels(name: str, value: object, ndim: Sequence[int] = (2, 3)) -> np.ndarray:
    """Returns ``value`` as a non-negative int64 label image (0 = background)."""
    array = np.asarray(value)
    if array.dtype == bool:
        array = array.astype(np.int64)
    if not np.issubdtype(array.dtype, np.integer):
        if not np.issubdtype(array.dtype, np.floating) or not np.all(np.mod(array, 1) == 0):
            raise TypeError(f"{name} must be an integer label image, got dtype {array.dtype}")
    if array.ndim not in tuple(ndim):
        raise ValueError(f"{name} must have {' or '.join(map(str, ndim))} dimensions, got shape {array.shape}")
    array = array.astype(np.int64, copy=False)
    if array.size and array.min() < 0:
        raise ValueError(f"{name} has negative labels")
    return array


def same_shape(name_a: str, a: np.ndarray, name_b: str, b: np.ndarray) -> None:
    """Raises ValueError unless ``a`` and ``b`` have the same shape."""
    if a.shape != b.shape:
        raise ValueError(f"{name_a} and {name_b} must have the same shape, got {a.shape} and {b.shape}")


def positive(name: str, value: float, allow_zero: bool = False) -> float:
    """Returns ``value`` as a float after checking it is finite and > 0 (or >= 0)."""
    value = float(value)
    if not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {bound}, got {value}")
    return value


def spacing_for(name: str, spacing: Sequence[float] | float | None, ndim: int) -> tuple[float, ...]:
    """Voxel spacing as one positive float per axis (None = isotropic 1)."""
    if spacing is None:
        return (1.0,) * ndim
    if np.isscalar(spacing):
        return (positive(name, spacing),) * ndim
    values = tuple(positive(f"{name}[{i}]", s) for i, s in enumerate(spacing))
    if len(values) != ndim:
        raise ValueError(f"{name} must have {ndim} values (one per axis), got {len(values)}")
    return values
