r"""Confidence intervals of model-versus-model differences: a paired, nested bootstrap.

The judged difference of two models :math:`a, b` in a metric :math:`m` (``psnr``, ``psnr_fg``,
``mean_ap``) is that of their means over the evaluated volumes,
:math:`\Delta = \overline{m_a} - \overline{m_b}`, each volume's metric computed from its
nucleus cells (:mod:`.nucleus_units`). One resample draws, top down, with replacement:

1. the training seeds (``training_seeds``: one label per volume, naming the training run whose
   models predicted it), when more than one is given;
2. within each drawn seed, its volumes, when it has more than one;
3. within each drawn volume, its nucleus cells (each drawn copy of a volume gets its own draw).

Every model is scored on the same draw (paired: the same volumes and cells), and the
resample's :math:`\Delta^*` is the difference of the models' means over the drawn volumes.
The interval is the percentile interval of :math:`\Delta^*` over ``n_resamples`` resamples
(the empirical quantiles at :math:`\alpha/2` and :math:`1 - \alpha/2`, no interpolation), from
a generator seeded with ``seed``, so a report is reproducible.

Why not ``scipy.stats.bootstrap``: it resamples one level (one sample, several independent
samples, or paired rows), and these data are nested (seeds > volumes > nuclei). In the cases
where one level is all there is (one volume: the cells; one cell per volume: the volumes) this
resampling is scipy's, and the tests check the intervals against ``scipy.stats.bootstrap``
there. Resampling every level is conservative (it counts the lower levels' variance twice,
Davison & Hinkley 1997, on hierarchical data); with 2 volumes, resampling the volumes alone would
give only 3 distinct resamples.

The interval covers the sampling of test nuclei, volumes and, when given, training seeds. One
training run per model says nothing of the training's own randomness (seed, machine): a
verdict on one run is a verdict on those two trained models.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .nucleus_units import JUDGED, UnitSums

CHUNK = 2048  # resampled volume copies scored at once (bounds the memory of the multiplicity matrix)


@dataclass(frozen=True)
class Difference:
    """``metric(model) - metric(baseline)``, means over volumes, with its bootstrap interval."""

    model: str
    baseline: str
    metric: str
    estimate: float
    low: float
    high: float
    confidence: float

    @property
    def contains_zero(self) -> bool:
        return not (self.low > 0 or self.high < 0)

    def text(self, digits: int, unit: str = "") -> str:
        """``-0.05 dB (95% interval -0.21 to +0.12)``."""
        return (f"{self.estimate:+.{digits}f}{unit} ({100 * self.confidence:g}% interval "
                f"{self.low:+.{digits}f} to {self.high:+.{digits}f})")

    def as_row(self) -> dict:
        return {"model": self.model, "baseline": self.baseline, "metric": self.metric, "difference": self.estimate,
                "low": self.low, "high": self.high, "confidence": self.confidence}


def seed_groups(training_seeds, count: int) -> list[list[int]]:
    """Volume indices grouped by training seed, in order of first appearance (None: one group)."""
    if training_seeds is None:
        return [list(range(count))]
    if len(training_seeds) != count:
        raise ValueError(f"training_seeds has {len(training_seeds)} labels for {count} volumes")
    groups: dict = {}
    for index, label in enumerate(training_seeds):
        groups.setdefault(label, []).append(index)
    return list(groups.values())


def _multiplicities(rng: np.random.Generator, rows: int, cells: int) -> np.ndarray:
    """(rows, cells) counts of ``cells`` draws with replacement per row."""
    if cells == 1:
        return np.ones((rows, 1))
    drawn = rng.integers(cells, size=(rows, cells)) + cells * np.arange(rows)[:, None]
    return np.bincount(drawn.ravel(), minlength=rows * cells).reshape(rows, cells).astype(np.float64)


def resampled_means(units: dict[str, list[UnitSums]], groups: list[list[int]], n_resamples: int,
                    rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Each model's mean over volumes of the judged metrics, per resample: ``{model: (n_resamples, 3)}``."""
    models = list(units)
    sums = {m: np.zeros((n_resamples, len(JUDGED))) for m in models}
    counts = {m: np.zeros((n_resamples, len(JUDGED))) for m in models}
    seeds = len(groups)
    seed_copies = (rng.multinomial(seeds, np.full(seeds, 1 / seeds), size=n_resamples) if seeds > 1
                   else np.ones((n_resamples, 1), dtype=np.int64))
    for g, members in enumerate(groups):
        size = len(members)
        copies = (rng.multinomial(seed_copies[:, g] * size, np.full(size, 1 / size)) if size > 1
                  else seed_copies[:, g:g + 1])
        for j, volume in enumerate(members):
            resample = np.repeat(np.arange(n_resamples), copies[:, j])
            for start in range(0, resample.size, CHUNK):
                rows = resample[start:start + CHUNK]
                weights = _multiplicities(rng, rows.size, units[models[0]][volume].count)
                for model in models:
                    values = units[model][volume].metrics(weights)
                    known = ~np.isnan(values)
                    np.add.at(sums[model], rows, np.where(known, values, 0.0))
                    np.add.at(counts[model], rows, known)
    with np.errstate(invalid="ignore"):
        return {m: sums[m] / counts[m] for m in models}


def _observed(units: list[UnitSums]) -> np.ndarray:
    """The model's mean over volumes of the judged metrics, every cell once (NaNs ignored)."""
    values = np.concatenate([u.metrics(np.ones((1, u.count))) for u in units])
    known = ~np.isnan(values)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(known, values, 0.0).sum(axis=0) / known.sum(axis=0)


def model_differences(units: dict[str, list[UnitSums]], pairs: list[tuple[str, str]], training_seeds=None,
                      n_resamples: int = 9999, confidence: float = 0.95, seed: int = 0) -> list[Difference]:
    """The judged differences of each ``(model, baseline)`` pair with their intervals (module docstring)."""
    if not pairs:
        return []
    count = len(next(iter(units.values())))
    groups = seed_groups(training_seeds, count)
    draws = resampled_means(units, groups, int(n_resamples), np.random.default_rng(seed))
    alpha = 1.0 - confidence
    out = []
    for model, baseline in pairs:
        observed = _observed(units[model]) - _observed(units[baseline])
        delta = draws[model] - draws[baseline]
        for k, metric in enumerate(JUDGED):
            column = delta[:, k][~np.isnan(delta[:, k])]
            if column.size == 0 or math.isnan(observed[k]):
                low = high = math.nan
            else:
                low = float(np.quantile(column, alpha / 2, method="inverted_cdf"))
                high = float(np.quantile(column, 1 - alpha / 2, method="inverted_cdf"))
            out.append(Difference(model, baseline, metric, float(observed[k]), low, high, confidence))
    return out
