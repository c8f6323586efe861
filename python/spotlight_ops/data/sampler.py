"""Random training patches: uniform over images, then uniform over positions, with foreground.

A draw picks an image uniformly, then a patch position uniformly, and keeps the patch when at
least ``min_foreground_fraction`` (0.1 %) of its voxels are foreground (of its target voxels over all
channels, for several target channels); otherwise it redraws the
position in the same image, at most ``max_retries`` times, then raises :class:`DataError` naming
the image. All randomness comes from ``numpy.random.Generator`` s whose states are part of
:meth:`PatchSampler.state_dict`, so a resumed run draws the very same patches.

With ``augment`` (:mod:`.augment`) each patch also gets a random flip/rotation, drawn from a
generator of its own (so the positions drawn do not depend on it) before its position: the box cut
is the transform's source shape, and the same transform is applied to signal, target and mask.
``pairs`` may be a :class:`~spotlight_ops.data.buffer.VolumeBuffer`, which is told after every
batch so it can switch volumes, and whose state is saved with the sampler's.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from . import augment as aug
from .dataset import VolumePair
from .errors import DataError


def _batch(patches: list) -> np.ndarray:
    """Patches ``(z, y, x)`` or ``(C, z, y, x)`` as one contiguous ``[B, C, z, y, x]`` batch."""
    shapes = {p.shape for p in patches}
    if len(shapes) != 1:
        raise DataError(None, f"the pairs of one run must have the same channels; patches of shapes {sorted(shapes)} "
                              f"were drawn")
    stacked = np.stack(patches)
    return np.ascontiguousarray(stacked[:, None] if stacked.ndim == 4 else stacked)


class PatchSampler:
    """Draws batches of ``(signal, target)`` patches ``[B, C, *patch_size]`` (float32 numpy; C = 1 for
    single-channel pairs, else the pairs' channels: every pair must have the same channel counts).

    Args:
        pairs: preprocessed volumes (:func:`spotlight_ops.data.load_pairs`).
        patch_size: (z, y, x) patch size; every volume must be at least this large.
        batch_size: patches per batch.
        seed: seed of the generator; ``rank`` (distributed training) gives each process its own stream.
        min_foreground_fraction: minimum fraction of foreground voxels per patch (paper: 0.001).
        max_retries: positions tried per image before giving up.
        augment: ``"none"``, ``"yx"`` or ``"zyx"`` (:mod:`spotlight_ops.data.augment`).
    """

    def __init__(self, pairs: Sequence[VolumePair], patch_size: Sequence[int] = (32, 64, 64), batch_size: int = 24,
                 seed: int = 0, rank: int = 0, min_foreground_fraction: float = 0.001, max_retries: int = 1000,
                 augment: str = "none") -> None:
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
        self.augment = aug.check_mode(augment)
        needed = [self.patch_size]
        if self.augment != "none" and self.patch_size[1] != self.patch_size[2]:
            needed.append(aug.Transform(rotations=1).source_shape(self.patch_size))  # quarter turns: (z, x, y)
        shapes = getattr(pairs, "shapes", None) or [p.shape for p in pairs]
        sources = getattr(pairs, "rows", None) or [p.source for p in pairs]
        channels = {(len(r.signals), len(r.targets)) for r in sources}
        if len(channels) > 1:
            raise DataError(None, f"every pair must have the same number of signal and target channels; the pairs "
                                  f"have (signal, target) channels {sorted(channels)}")
        for shape, source in zip(shapes, sources):
            for patch in needed:
                if any(s < p for s, p in zip(shape, patch)):
                    hint = " (rotated by a quarter turn: use a patch with Y = X or augment none)" \
                        if patch != self.patch_size else ""
                    raise DataError(source.signal, f"volume shape {tuple(shape)} (after preprocessing) is smaller "
                                                   f"than the patch size {patch}{hint}")
        self.pairs = pairs if hasattr(pairs, "after_batch") else list(pairs)
        self.batch_size = int(batch_size)
        self.min_foreground_voxels = min_foreground_fraction * float(np.prod(self.patch_size))
        self.max_retries = int(max_retries)
        self.rng = np.random.default_rng([int(seed), int(rank)])
        self.augment_rng = np.random.default_rng([int(seed), int(rank), 1])
        self.batches_drawn = 0

    def _draw_patch(self) -> tuple:
        index = int(self.rng.integers(len(self.pairs)))
        pair = self.pairs[index]
        transform = aug.draw(self.augment_rng, self.augment)
        source_shape = transform.source_shape(self.patch_size)
        for _ in range(self.max_retries):
            corner = [int(self.rng.integers(s - p + 1)) for s, p in zip(pair.shape, source_shape)]
            box = (Ellipsis,) + tuple(slice(c, c + p) for c, p in zip(corner, source_shape))
            channels = 1 if pair.foreground.ndim == 3 else pair.foreground.shape[0]
            if np.count_nonzero(pair.foreground[box]) >= self.min_foreground_voxels * channels:
                mask = None if pair.mask is None else transform.apply(pair.mask[box])
                return transform.apply(pair.signal[box]), transform.apply(pair.target[box]), mask
        raise DataError(pair.source.target, f"no {self.patch_size} patch with >= "
                                            f"{self.min_foreground_voxels / np.prod(self.patch_size):.3%} foreground "
                                            f"found in {self.max_retries} random positions; the volume has too little "
                                            f"foreground (remove it from the manifest or lower min_foreground_fraction)")

    def sample(self, with_mask: bool = False) -> tuple:
        """One batch ``(signal, target)``, each float32 ``[batch_size, C, z, y, x]`` (C = 1 for one channel).

        ``with_mask`` adds the pairs' masks ``[batch_size, C_target, z, y, x]``, transformed alike (None when
        a pair has none): the foreground masks the loss takes as ``mask=``.
        """
        patches = [self._draw_patch() for _ in range(self.batch_size)]
        self.batches_drawn += 1
        if hasattr(self.pairs, "after_batch"):
            self.pairs.after_batch(self.batches_drawn)
        signal, target = _batch([p[0] for p in patches]), _batch([p[1] for p in patches])
        if not with_mask:
            return signal, target
        masks = None if any(p[2] is None for p in patches) else _batch([p[2] for p in patches])
        return signal, target, masks

    def state_dict(self) -> dict:
        """Generator states and batch count (and the buffer's): enough to continue the exact same sequence."""
        state = {"bit_generator": self.rng.bit_generator.state, "batches_drawn": self.batches_drawn,
                 "augment_bit_generator": self.augment_rng.bit_generator.state}
        if hasattr(self.pairs, "state_dict"):
            state["buffer"] = self.pairs.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["bit_generator"]
        self.batches_drawn = int(state["batches_drawn"])
        if "augment_bit_generator" in state:
            self.augment_rng.bit_generator.state = state["augment_bit_generator"]
        if "buffer" in state and hasattr(self.pairs, "load_state_dict"):
            self.pairs.load_state_dict(state["buffer"])
