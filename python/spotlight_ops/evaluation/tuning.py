r"""Segmentation tuned on the real targets (the paper's appendix A.3 protocol).

The paper chooses the segmentation's hyperparameters on the ground-truth fluorescence
against its ground-truth masks, freezes them, and applies them unchanged to every model's
predictions. :func:`tune_segmentation` does that with a small grid over the
:class:`WatershedParams` that matter; the other fields (``spacing``, ``downsample``,
``fill_holes``, ``min_seed_distance``, ``clahe_*`` sizes, ``max_volume``) come from ``base``.

The grid (in this order; the first value of each axis is preferred on ties):

===========================  ==============================================================
enhancement                  (CLAHE kernel, Gaussian sigma) in (off, 0), (off, 1), (1/8 of each
                             axis, 0), (1/8, 1), (1/4, 0), (1/4, 1)
``threshold_correction``     1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 1.1, 1.2, 1.3, 1.4 (factor on the Otsu
                             threshold)
``footprint`` (seed spacing) 0.75, 0.5, 1.0 times ``d``, the median equivalent diameter of the
                             ground-truth nuclei in physical units (``spacing``)
``clear_border``             ``"none"``, ``"xy"``, ``"all"``
``min_volume``               0, 0.1, 0.3 times the median ground-truth nucleus volume (voxels)
===========================  ==============================================================

The border and size rules apply to ground truth and segmentation alike (as in the
evaluation itself), and only drop instances, so all 9 of their combinations are scored from
one IoU table per segmentation. The search runs in two stages: every enhancement and
threshold correction (60 pairs) at the middle seed spacing (0.75 d), then the other two seed
spacings for the 3 best pairs: 66 watershed segmentations per target.

A candidate is scored by the mean over targets of its AP at the first IoU threshold (0.5:
are the nuclei found, one each?), then, among equals, of its ``mean_ap`` (AP = TP / (TP +
FP + FN) averaged over the IoU thresholds: how well are they drawn?); remaining ties go to
the earlier grid point.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from itertools import product

import numpy as np
from tqdm.auto import tqdm

from .matching import IOU_THRESHOLDS, iou_matrix, match_at
from .segmentation import (
    border_labels,
    WatershedParams,
    downsampled,
    enhance,
    foreground_mask,
    seed_distance,
    split_touching,
    upsampled,
)

# (clahe, clahe_kernel_size, smoothing_sigma); kernel None: skimage's 1/8 of each axis
ENHANCEMENTS = ((False, None, 0.0), (False, None, 1.0), (True, None, 0.0), (True, None, 1.0),
                (True, 0.25, 0.0), (True, 0.25, 1.0))
THRESHOLD_CORRECTIONS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 1.1, 1.2, 1.3, 1.4)
FOOTPRINT_FRACTIONS = (0.75, 0.5, 1.0)  # of the median ground-truth equivalent diameter
BORDER_MODES = ("none", "xy", "all")
MIN_VOLUME_FRACTIONS = (0.0, 0.1, 0.3)  # of the median ground-truth nucleus volume
REFINED = 3  # (enhancement, correction) pairs whose other seed spacings are tried


@dataclass(frozen=True)
class TuningResult:
    """The chosen parameters, their scores, and every candidate's scores."""

    params: WatershedParams
    mean_ap: float  # mean over targets of the chosen candidate's mean AP
    ap_first: float  # mean over targets of its AP at the first IoU threshold
    grid: dict
    candidates: list[dict] = field(repr=False)

    def summary(self) -> str:
        p = self.params
        return (
            f"clahe={p.clahe}, clahe_kernel_size={p.clahe_kernel_size}, smoothing_sigma={p.smoothing_sigma:g}, threshold_correction={p.threshold_correction:g}, "
            f"footprint={p.footprint:g}, clear_border={p.clear_border!r}, min_volume={p.min_volume}, "
            f"downsample={p.downsample}"
        )


def _nucleus_scale(masks: list[np.ndarray], spacing: tuple) -> tuple[float, float]:
    """(median equivalent diameter in physical units, median volume in voxels) of the ground truth."""
    sizes = np.concatenate([np.bincount(m.ravel())[1:] for m in masks])
    sizes = sizes[sizes > 0]
    if sizes.size == 0:
        raise ValueError("instance_masks hold no nuclei: nothing to tune the segmentation on")
    volume = float(np.median(sizes))
    diameter = (6.0 * volume * float(np.prod(spacing)) / np.pi) ** (1.0 / 3.0)
    return diameter, volume


def _key(mean_ap: np.ndarray, ap_first: np.ndarray) -> tuple[float, float]:
    """Best (AP at the first threshold, mean AP) over the border and size rules, means over targets."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        first = np.nan_to_num(np.nanmean(ap_first, axis=-1), nan=-1.0).round(9)
        mean = np.nan_to_num(np.nanmean(mean_ap, axis=-1), nan=-1.0)
    return max(zip(first.ravel().tolist(), mean.ravel().tolist()))


def _size_ok(sizes: np.ndarray, min_volume: int, max_volume: int | None) -> np.ndarray:
    keep = sizes >= min_volume
    return keep if max_volume is None else keep & (sizes <= int(max_volume))


def _scores(iou, true_ids, pred_ids, keep_true, keep_pred, thresholds) -> tuple[float, float]:
    """(mean AP, AP at the first threshold) of the sub-table of kept instances."""
    sub = iou[np.ix_(keep_true, keep_pred)]
    aps = [match_at(sub, t, true_ids[keep_true], pred_ids[keep_pred]).ap for t in thresholds]
    aps = np.array(aps, dtype=float)
    return (float(np.mean(aps)) if np.isfinite(aps).all() else float("nan")), float(aps[0])


def tune_segmentation(
    targets: list[np.ndarray],
    instance_masks: list[np.ndarray],
    base: WatershedParams | None = None,
    thresholds=IOU_THRESHOLDS,
    progress: bool = False,
) -> TuningResult:
    """Searches the grid of the module docstring on ``targets`` against ``instance_masks``."""
    base = WatershedParams() if base is None else base
    if not isinstance(base, WatershedParams):
        raise TypeError(f"base must be a WatershedParams, got {type(base).__name__}")
    if not targets or len(targets) != len(instance_masks):
        raise ValueError("tune_segmentation needs one instance mask per target (and at least one target)")
    thresholds = [float(t) for t in thresholds]
    diameter, volume = _nucleus_scale(instance_masks, base.spacing)
    footprints = tuple(round(f * diameter, 2) for f in FOOTPRINT_FRACTIONS)
    min_volumes = tuple(int(round(f * volume)) for f in MIN_VOLUME_FRACTIONS)
    shape = (len(ENHANCEMENTS), len(THRESHOLD_CORRECTIONS), len(footprints), len(BORDER_MODES), len(min_volumes))
    mean_ap = np.full(shape + (len(targets),), np.nan)
    ap_first = np.full_like(mean_ap, np.nan)
    middle = FOOTPRINT_FRACTIONS.index(sorted(FOOTPRINT_FRACTIONS)[len(FOOTPRINT_FRACTIONS) // 2])
    stage_two = REFINED * (len(footprints) - 1)
    steps = tqdm(total=len(targets) * (shape[0] * shape[1] + stage_two), desc="tuning segmentation on the targets",
                 unit="segmentation", disable=not progress)
    volumes = []
    for target, truth in zip(targets, instance_masks):
        small = downsampled(np.asarray(target, dtype=np.float64), base.downsample)
        sizes = np.bincount(truth.ravel())
        volumes.append({"small": small, "truth": truth, "images": {},
                        "true_border": {mode: border_labels(truth, mode) for mode in BORDER_MODES},
                        "true_sizes": sizes[np.unique(truth[truth > 0])] if truth.any() else np.zeros(0, np.int64)})

    def score(e: int, c: int, fs: list[int]) -> None:
        """Fills the scores of enhancement e, correction c and footprints fs on every target."""
        clahe, kernel, sigma = ENHANCEMENTS[e]
        for v, vol in enumerate(volumes):
            if e not in vol["images"]:
                params = replace(base, clahe=clahe, clahe_kernel_size=kernel, smoothing_sigma=sigma)
                vol["images"][e] = enhance(vol["small"], params)
            mask = foreground_mask(vol["images"][e], replace(base, threshold_correction=THRESHOLD_CORRECTIONS[c]))
            distance = seed_distance(mask, base) if mask.any() else None
            truth = vol["truth"]
            for f in fs:
                steps.update()
                if mask.any():
                    labels = upsampled(split_touching(mask, replace(base, footprint=footprints[f]), distance), truth.shape)
                else:
                    labels = np.zeros(truth.shape, dtype=np.int32)
                iou, true_ids, pred_ids = iou_matrix(truth, labels)
                sizes = np.bincount(labels.ravel(), minlength=int(labels.max()) + 1)[pred_ids]
                for b, mode in enumerate(BORDER_MODES):
                    true_inside = ~np.isin(true_ids, list(vol["true_border"][mode]))
                    pred_inside = ~np.isin(pred_ids, list(border_labels(labels, mode)))
                    for m, min_volume in enumerate(min_volumes):
                        # the same border and size rules for ground truth and segmentation
                        keep_true = true_inside & _size_ok(vol["true_sizes"], min_volume, base.max_volume)
                        keep_pred = pred_inside & _size_ok(sizes, min_volume, base.max_volume)
                        mean_ap[e, c, f, b, m, v], ap_first[e, c, f, b, m, v] = _scores(
                            iou, true_ids, pred_ids, keep_true, keep_pred, thresholds)

    # stage 1: every enhancement and threshold correction at the middle seed spacing
    for e in range(shape[0]):
        for c in range(shape[1]):
            score(e, c, [middle])
    # stage 2: the other seed spacings for the best few (enhancement, correction) pairs
    ranked = sorted(((_key(mean_ap[e, c, middle], ap_first[e, c, middle]), -(e * shape[1] + c), e, c)
                     for e in range(shape[0]) for c in range(shape[1])), reverse=True)
    for _, _, e, c in ranked[:REFINED]:
        score(e, c, [f for f in range(len(footprints)) if f != middle])
    steps.close()
    with warnings.catch_warnings():  # a candidate with AP NaN on every target scores NaN, quietly
        warnings.simplefilter("ignore", RuntimeWarning)
        score = np.nanmean(mean_ap, axis=-1)
        first = np.nanmean(ap_first, axis=-1)
    candidates, best, best_key = [], None, None
    for index in product(*(range(n) for n in shape)):
        e, c, f, b, s = index
        if np.isnan(mean_ap[index]).all() and np.isnan(ap_first[index]).all():
            continue  # not evaluated (stage 2 refines only the best pairs)
        params = replace(base, clahe=ENHANCEMENTS[e][0], clahe_kernel_size=ENHANCEMENTS[e][1],
                         smoothing_sigma=ENHANCEMENTS[e][2],
                         threshold_correction=THRESHOLD_CORRECTIONS[c], footprint=footprints[f],
                         clear_border=BORDER_MODES[b], min_volume=min_volumes[s])
        key = (round(float(np.nan_to_num(first[index], nan=-1.0)), 9), float(np.nan_to_num(score[index], nan=-1.0)))
        # (ties: the earlier grid point, because only a strictly better key replaces the best)
        candidates.append({"clahe": params.clahe, "clahe_kernel_size": params.clahe_kernel_size, "smoothing_sigma": params.smoothing_sigma,
                           "threshold_correction": params.threshold_correction, "footprint": params.footprint,
                           "clear_border": params.clear_border, "min_volume": params.min_volume,
                           "mean_ap": float(score[index]), "ap_first": float(first[index])})
        if best_key is None or key > best_key:  # strictly better: earlier grid points win ties
            best, best_key = (params, index), key
    params, index = best
    grid = {"enhancement (clahe, clahe_kernel_size, smoothing_sigma)": [list(x) for x in ENHANCEMENTS],
            "threshold_correction": list(THRESHOLD_CORRECTIONS), "footprint": list(footprints),
            "clear_border": list(BORDER_MODES), "min_volume": list(min_volumes),
            "median_diameter": round(diameter, 3), "median_volume_voxels": volume}
    return TuningResult(params, float(score[index]), float(first[index]), grid, candidates)
