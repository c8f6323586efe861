"""Ground-truth instance labels from the masks a data set provides.

Data sets give nuclei as instance labels (one id per nucleus), as a semantic mask
(0 / 255) or as a semantic mask plus nucleus-centre seeds. :func:`to_instances` turns
any of these into instance labels:

- an image with more than one nonzero value is taken to be instance labels already;
- a binary image is split by connected components (full 3D connectivity: faces, edges
  and corners), or, when ``seeds`` are given, by a watershed of the mask's distance
  transform from the seed blobs (one nucleus per connected seed blob), which separates
  touching nuclei that connected components would merge.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.segmentation import relabel_sequential, watershed

from ._validation import as_labels, spacing_for


def is_semantic(mask: np.ndarray) -> bool:
    """True when ``mask`` holds at most one nonzero value (a foreground/background mask)."""
    values = np.unique(np.asarray(mask))
    return values[values != 0].size <= 1


def to_instances(mask: np.ndarray, seeds: np.ndarray | None = None, spacing=None) -> np.ndarray:
    """Instance labels (int32, 1..n) of a label image, a semantic mask, or mask + seeds."""
    labels = as_labels("mask", mask)
    if not is_semantic(labels):
        if seeds is not None:
            raise ValueError("seeds are only used to split a semantic (binary) mask; mask already has instances")
        return relabel_sequential(labels)[0].astype(np.int32)
    foreground = labels > 0
    full = np.ones((3,) * labels.ndim, dtype=bool)
    if seeds is None:
        return ndimage.label(foreground, structure=full)[0].astype(np.int32)
    seeds = np.asarray(seeds)
    if seeds.shape != labels.shape:
        raise ValueError(f"seeds must have the mask's shape {labels.shape}, got {seeds.shape}")
    markers = ndimage.label((seeds > 0) & foreground, structure=full)[0]
    distance = ndimage.distance_transform_edt(foreground, sampling=spacing_for("spacing", spacing, labels.ndim))
    split = watershed(-distance, markers, mask=foreground)
    return relabel_sequential(split)[0].astype(np.int32)
