"""Random training patches: uniform over images, then uniform over positions, with foreground.

A draw picks an image uniformly, then a patch position uniformly, and keeps the patch when at
least ``min_foreground_fraction`` (0.1 %) of its voxels are foreground; otherwise it redraws the
position in the same image, at most ``max_retries`` times, then raises :class:`DataError` naming
the image. All randomness comes from one ``numpy.random.Generator`` whose state is part of
:meth:`PatchSampler.state_dict`, so a resumed run draws the very same patches.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .dataset import VolumePair
from .errors import DataError


class PatchSampler:
    """Draws batches of ``(signal, target)`` patches ``[B, 1, *patch_size]`` (float32 numpy).

    Args:
        pairs: preprocessed volumes (:func:`spotlight_ops.data.load_pairs`).
        patch_size: (z, y, x) patch size; every volume must be at least this large.
        batch_size: patches per batch.
        seed: seed of the generator; ``rank`` (distributed training) gives each process its own stream.
        min_foreground_fraction: minimum fraction of foreground voxels per patch (paper: 0.001).
        max_retries: positions tried per image before giving up.
    """

    def __init__(self, pairs: Sequence[VolumePair], patch_size: Sequence[int] = (32, 64, 64), batch_size: int = 24,
                 seed: int = 0, rank: int = 0, min_foreground_fraction: float = 0.001, max_retries: int = 1000) -> None:
        if not pairs:
            raise ValueError("pairs must hold at least one volume")
        self.patch_size = tuple(int(p) for p in patch_size)
        if len(self.patch_size) != 3 or any(p < 1 for p in self.patch_size):
            raise ValueError(f"patch_size must be three positive integers (z, y, x), got {patch_size!r}")
        if int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if not 0.0 <= min_foreground_fraction <= 1.0:
            raise ValueError(f"min_foreground_fraction must lie in [0, 1], got {min_foreground_fraction!r}")
        if int(max_retries) != max_retries or max_retries < 1:
            raise ValueError(f"max_retries must be a positive integer, got {max_retries!r}")
        for pair in pairs:
            if any(s < p for s, p in zip(pair.shape, self.patch_size)):
                raise DataError(pair.source.signal, f"volume shape {pair.shape} (after preprocessing) is smaller "
                                                    f"than the patch size {self.patch_size}")
        self.pairs = list(pairs)
        self.batch_size = int(batch_size)
        self.min_foreground_voxels = min_foreground_fraction * float(np.prod(self.patch_size))
        self.max_retries = int(max_retries)
        self.rng = np.random.default_rng([int(seed), int(rank)])
        self.batches_drawn = 0

    def _draw_patch(self) -> tuple:
        index = int(self.rng.integers(len(self.pairs)))
        pair = self.pairs[index]
        for _ in range(self.max_retries):
            corner = [int(self.rng.integers(s - p + 1)) for s, p in zip(pair.shape, self.patch_size)]
            box = tuple(slice(c, c + p) for c, p in zip(corner, self.patch_size))
            if np.count_nonzero(pair.foreground[box]) >= self.min_foreground_voxels:
                return pair.signal[box], pair.target[box]
        raise DataError(pair.source.target, f"no {self.patch_size} patch with >= "
                                            f"{self.min_foreground_voxels / np.prod(self.patch_size):.3%} foreground "
                                            f"found in {self.max_retries} random positions; the volume has too little "
                                            f"foreground (remove it from the manifest or lower min_foreground_fraction)")

    def sample(self) -> tuple:
        """One batch ``(signal, target)``, each float32 ``[batch_size, 1, z, y, x]``."""
        patches = [self._draw_patch() for _ in range(self.batch_size)]
        self.batches_drawn += 1
        signal = np.stack([s for s, _ in patches])[:, None]
        target = np.stack([t for _, t in patches])[:, None]
        return np.ascontiguousarray(signal), np.ascontiguousarray(target)

    def state_dict(self) -> dict:
        """Generator state and batch count: enough to continue the exact same sequence."""
        return {"bit_generator": self.rng.bit_generator.state, "batches_drawn": self.batches_drawn}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["bit_generator"]
        self.batches_drawn = int(state["batches_drawn"])
