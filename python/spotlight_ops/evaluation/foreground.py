"""The foreground of a target volume: its Otsu mask (SPEC sections 1 and 2).

The evaluation uses exactly the threshold the Spotlight loss uses, so "foreground
PSNR" is measured on the same voxels the loss focuses on:
``T = otsu_threshold(Y)`` (256-bin histogram over ``[min(Y), max(Y)]``, the centre of
the first bin maximising the between-class variance) and ``M = Y > T``.
"""

from __future__ import annotations

import numpy as np
import torch

from ..functional import otsu_threshold
from ._validation import as_image


def otsu_value(image: np.ndarray, bins: int = 256) -> float:
    """Otsu threshold of the whole image, as ``spotlight_ops.otsu_threshold`` computes it."""
    image = as_image("image", image, ndim=(1, 2, 3, 4))
    if int(bins) < 2:
        raise ValueError(f"bins must be at least 2, got {bins}")
    sample = torch.from_numpy(np.ascontiguousarray(image)).reshape(1, -1)
    return float(otsu_threshold(sample, bins=int(bins))[0])


def otsu_foreground(target: np.ndarray, bins: int = 256) -> tuple[np.ndarray, float]:
    """Foreground mask ``target > T`` and the threshold ``T`` (SPEC section 2).

    A constant target has ``T = min`` and an empty foreground.
    """
    target = as_image("target", target)
    threshold = otsu_value(target, bins)
    return target > threshold, threshold
