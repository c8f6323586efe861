"""Training on more volumes than fit in memory: a bounded buffer of whole preprocessed volumes.

:class:`VolumeBuffer` holds ``size`` of a manifest's pairs in memory, preprocessed, and every
``switch_every`` batches replaces the oldest by a pair drawn uniformly from those not held (the
scheme of pytorch_fnet's buffered patch dataset). Patches come from the held pairs only, so peak
memory is set by ``size`` and the volumes' size, not by the manifest's length. Volumes are read
lazily (:func:`~spotlight_ops.data.io.open_volume`: memory-mapped TIFF, chunked OME-Zarr) and only
their crop box is read.

Each pair's statistics (:func:`~spotlight_ops.data.dataset.volume_stats`: Otsu threshold, means,
stds, shapes) are computed once, by a first pass over the manifest that holds one pair at a time,
and kept in a :class:`StatsCache` JSON file: the run folder's ``preprocess_stats.json`` unless
another path is given, keyed by each file's resolved path, size and modification time and by the
preprocessing options. A resumed run, or a second run pointed at the same cache, reads them back.

The buffer's held indices and its generator are part of :meth:`VolumeBuffer.state_dict`, so a
resumed run holds, and later switches to, the very same volumes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from .dataset import PreprocessConfig, VolumePair, load_pair_with_stats, volume_stats
from .manifest import ManifestRow

CACHE_VERSION = 2


def _file_key(path: Optional[Path]) -> list:
    if path is None:
        return [None]
    path = Path(path).resolve()
    if path.is_dir():  # an OME-Zarr image: its metadata files (thresholds stored by preprocess among them)
        stamps = sorted((str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns)
                        for p in path.rglob("*") if p.is_file() and p.name in ("zarr.json", ".zarray", ".zattrs"))
        return [str(path), stamps]
    stat = path.stat()
    return [str(path), stat.st_size, stat.st_mtime_ns]


def _source_key(source) -> list:
    return [None] if source is None else _file_key(source.path) + [source.channel, source.array]


def stats_key(row: ManifestRow, config: PreprocessConfig) -> str:
    """SHA-256 of the pair's files (path, size, mtime; every channel, with stored thresholds and masks) and the
    preprocessing options."""
    options = dataclasses.asdict(config)
    options.pop("min_foreground_fraction")  # a check, not an input of the statistics
    files = [[_source_key(s) for s in sources] for sources in (row.signals, row.targets, row.masks)]
    text = json.dumps([CACHE_VERSION, files, list(row.stored_thresholds), row.threshold_smoothed, options],
                      sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()


class StatsCache:
    """A JSON file of per-pair statistics, written atomically; unreadable files are ignored (recomputed)."""

    def __init__(self, path: Union[str, Path]) -> None:
        self.path = Path(path)
        self.entries: dict = {}
        self.hits = self.misses = 0
        try:
            loaded = json.loads(self.path.read_text())
            if isinstance(loaded, dict) and loaded.get("version") == CACHE_VERSION:
                self.entries = dict(loaded.get("entries", {}))
        except (OSError, ValueError):
            pass

    def get(self, row: ManifestRow, config: PreprocessConfig) -> dict:
        key = stats_key(row, config)
        stats = self.entries.get(key)
        if stats is None:
            self.misses += 1
            stats = volume_stats(row, config)
            self.entries[key] = stats
        else:
            self.hits += 1
        fractions = stats["foreground_fraction"]
        if min(fractions if isinstance(fractions, list) else [fractions]) < config.min_foreground_fraction:
            volume_stats(row, config)  # raises the DataError naming the file
        return stats

    def save(self) -> None:
        """Written atomically (temp file + fsync + rename + folder fsync): a kill leaves the old cache or the new."""
        from ..files.runfiles import atomic_write_text

        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps({"version": CACHE_VERSION, "entries": self.entries}))


class VolumeBuffer:
    """``size`` preprocessed pairs of ``rows`` in memory, switched every ``switch_every`` batches.

    Behaves as a read-only sequence of :class:`VolumePair` for :class:`~spotlight_ops.data.PatchSampler`;
    ``shapes`` holds every row's preprocessed shape (for the sampler's size checks).

    Args:
        rows: the manifest's pairs.
        config: preprocessing.
        size: pairs held at once (all of them when ``size >= len(rows)``; then nothing is switched).
        switch_every: batches between two switches (0: never).
        cache: per-pair statistics (computed for every row now, when missing).
        seed, rank: seed of the generator choosing the held pairs (``rank``: one stream per process).
        progress: a tqdm bar over the first pass.
    """

    def __init__(self, rows: Sequence[ManifestRow], config: PreprocessConfig, size: int, switch_every: int,
                 cache: StatsCache, seed: int = 0, rank: int = 0, progress: bool = False) -> None:
        if not rows:
            raise ValueError("rows must hold at least one pair")
        if int(size) != size or size < 1:
            raise ValueError(f"buffer size must be a positive integer, got {size!r}")
        if int(switch_every) != switch_every or switch_every < 0:
            raise ValueError(f"buffer_switch_every must be an integer >= 0, got {switch_every!r}")
        self.rows, self.config = list(rows), config
        self.size, self.switch_every = min(int(size), len(self.rows)), int(switch_every)
        iterator = self.rows
        if progress:
            from tqdm import tqdm

            iterator = tqdm(self.rows, desc="volume statistics", unit="pair")
        self.stats = [cache.get(row, config) for row in iterator]
        if cache.misses:
            cache.save()
        self.shapes = [tuple(int(b.stop - b.start) for b in self._box(s)) for s in self.stats]
        self.rng = np.random.default_rng([int(seed), int(rank), 2])
        self.indices = [int(i) for i in self.rng.choice(len(self.rows), self.size, replace=False)]
        self.pairs = [self._load(i) for i in self.indices]
        self.loads = len(self.pairs)

    def _box(self, stats: dict) -> tuple:
        from .preprocess import crop_box

        return crop_box(stats["shape"], self.config.crop_multiple)

    def _load(self, index: int) -> VolumePair:
        return load_pair_with_stats(self.rows[index], self.config, self.stats[index])

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, position: int) -> VolumePair:
        return self.pairs[position]

    def __iter__(self):
        return iter(self.pairs)

    def after_batch(self, batches_drawn: int) -> None:
        """Switches one pair when ``batches_drawn`` is a multiple of ``switch_every``."""
        if not self.switch_every or self.size >= len(self.rows) or batches_drawn % self.switch_every:
            return
        held = set(self.indices)
        candidates = [i for i in range(len(self.rows)) if i not in held]
        new = candidates[int(self.rng.integers(len(candidates)))]
        self.indices.pop(0)
        self.pairs.pop(0)  # freed before the next one is read: peak memory is size pairs plus one
        self.indices.append(new)
        self.pairs.append(self._load(new))
        self.loads += 1

    def state_dict(self) -> dict:
        return {"indices": list(self.indices), "bit_generator": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        indices = [int(i) for i in state["indices"]]
        if any(not 0 <= i < len(self.rows) for i in indices):
            raise ValueError(f"buffer state names pairs {indices} outside the manifest's {len(self.rows)} rows")
        kept = dict(zip(self.indices, self.pairs))
        self.pairs = []
        for i in indices:
            self.pairs.append(kept.pop(i) if i in kept else None)
        kept.clear()
        self.pairs = [p if p is not None else self._load(i) for p, i in zip(self.pairs, indices)]
        self.indices = indices
        self.rng.bit_generator.state = state["bit_generator"]
