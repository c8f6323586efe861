"""Every number for one volume: pixel metrics, FRC, segmentation AP and morphology.

One *row* is a flat dict of numbers for one (volume, model, threshold) triple; the
column names are the keys built here (``psnr``, ``psnr_fg``, ``ap_0.50`` ...).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .cellpose_backend import segment_cellpose
from .foreground import otsu_foreground
from .frc import frc_resolution, ring_count
from .matching import average_precision
from .microssim import micro_ssim, micro_ssim_slices
from .morphology import matched_cosine_distances, nucleus_features
from .nucleus_units import UnitSums, nucleus_cells, unit_sums
from .options import EvaluationOptions
from .pixel_metrics import pearson, psnr, ssim, ssim_window
from .rescaling import target_data_range
from .segmentation import finish_labels, segment_nuclei


@dataclass
class Reference:
    """What every prediction of one volume is compared with."""

    target: np.ndarray
    foreground: np.ndarray
    otsu: float
    data_range: float
    instances: np.ndarray | None  # ground-truth nuclei (masks, else the target's segmentation)
    source: str  # "masks" or "target_segmentation"
    features: dict | None  # morphology of the reference nuclei
    cells: tuple  # (cell of every voxel, cell of each nucleus, cell count): the bootstrap's units


def build_reference(
    target: np.ndarray, masks: np.ndarray | None, opts: EvaluationOptions
) -> tuple[Reference, np.ndarray]:
    """The reference of a volume and the Otsu + watershed segmentation of its target.

    Given masks go through the same border and size rules as every segmentation
    (``clear_border``, ``min_volume``, ``max_volume``): ground truth and predictions are
    treated alike, so a nucleus cut by the field of view counts in both or in neither.
    """
    foreground, otsu = otsu_foreground(target, opts.otsu_bins)
    data_range = target_data_range(target)
    target_labels = segment_nuclei(target, opts.segmentation)
    if masks is not None:
        instances, source = finish_labels(masks, opts.segmentation), "masks"
    else:
        instances, source = target_labels, "target_segmentation"
    features = nucleus_features(instances, target, opts.segmentation.spacing) if opts.morphology else None
    cells = nucleus_cells(instances, opts.segmentation.spacing)
    return Reference(target, foreground, otsu, data_range, instances, source, features, cells), target_labels


def pixel_row(reference: Reference, prediction: np.ndarray, opts: EvaluationOptions) -> dict:
    """PSNR, SSIM, MicroSSIM and Pearson, whole volume and foreground (prediction on target scale)."""
    y, fg, data_range = reference.target, reference.foreground, reference.data_range
    window = ssim_window(y.shape, opts.ssim_win_size)  # a thin axis shrinks the window (at least 3)
    micro = micro_ssim_slices(y, prediction, mask=fg, bg_percentile=opts.bg_percentile)
    micro_3d = micro_ssim(y, prediction, mask=fg, bg_percentile=opts.bg_percentile, win_size=window)
    return {
        "psnr": psnr(y, prediction, data_range),
        "psnr_fg": psnr(y, prediction, data_range, mask=fg),
        "ssim": ssim(y, prediction, data_range, win_size=opts.ssim_win_size),
        "ssim_fg": ssim(y, prediction, data_range, mask=fg, win_size=opts.ssim_win_size),
        "microssim": micro.value,
        "microssim_fg": micro.foreground,
        "microssim_ri_factor": micro.ri_factor,
        "microssim_3d": micro_3d.value,
        "microssim_3d_fg": micro_3d.foreground,
        "microssim_3d_ri_factor": micro_3d.ri_factor,
        "pearson": pearson(y, prediction),
        "pearson_fg": pearson(y, prediction, mask=fg),
    }


def frc_row(image: np.ndarray, opts: EvaluationOptions) -> dict:
    """FRC resolution (NaN plus ``frc_crossed`` False and a message when not crossed)."""
    if ring_count(image.shape, opts.frc_bin_delta) < 2:  # too small to measure: say so, keep going
        message = f"XY planes of {image.shape[1:]} are too small for FRC rings of {opts.frc_bin_delta} px"
        return {"frc_resolution": float("nan"), "frc_crossed": False, "frc_message": message}
    result = frc_resolution(image, opts.frc_bin_delta, opts.frc_threshold, opts.pixel_size)
    return {"frc_resolution": result.resolution, "frc_crossed": result.crossed, "frc_message": result.message}


def segmentation_row(
    reference: Reference, labels: np.ndarray, image: np.ndarray, opts: EvaluationOptions, prefix: str = ""
) -> tuple[dict, dict]:
    """AP/precision/recall/F1 per IoU threshold against the reference, and morphology distances.

    Returns the row and :func:`.matching.average_precision`'s result (its ``"ap"``: the AP curve).
    """
    ap = average_precision(reference.instances, labels, opts.iou_thresholds)
    def count(image: np.ndarray) -> int:
        return int(len(np.unique(image)) - (image == 0).any())

    row = {f"{prefix}n_nuclei": count(labels), f"{prefix}mean_ap": ap["mean_ap"]}
    if not prefix:
        row["n_reference"] = count(reference.instances)
    for i, t in enumerate(ap["thresholds"]):
        for key in ("ap", "precision", "recall", "f1"):
            row[f"{prefix}{key}_{t:.2f}"] = ap[key][i]
    if opts.morphology and reference.features is not None:
        first = ap["matches"][0]  # matching at the lowest IoU threshold (0.5 by default)
        features = nucleus_features(labels, image, opts.segmentation.spacing)
        distances = matched_cosine_distances(reference.features, features, first.true_labels, first.pred_labels)
        finite = distances[np.isfinite(distances)]
        row[f"{prefix}n_matched"] = int(first.tp)
        row[f"{prefix}morph_cosine_mean"] = float(finite.mean()) if finite.size else float("nan")
        row[f"{prefix}morph_cosine_median"] = float(np.median(finite)) if finite.size else float("nan")
    return row, ap


def prediction_row(
    reference: Reference, prediction: np.ndarray, opts: EvaluationOptions, with_frc: bool, with_cellpose: bool,
    with_units: bool = False,
) -> tuple[dict, dict, UnitSums | None]:
    """All numbers of one prediction (on the target's scale), its AP curves by method and, with
    ``with_units``, its per-nucleus sums for the bootstrap (:mod:`.nucleus_units`)."""
    row = pixel_row(reference, prediction, opts)
    if with_frc:
        row.update(frc_row(prediction, opts))
    curves = {}
    labels = segment_nuclei(prediction, opts.segmentation)
    seg, ap = segmentation_row(reference, labels, prediction, opts)
    curves["watershed"] = ap["ap"]
    row.update(seg)
    units = None
    if with_units:
        cells, cell_of_nucleus, count = reference.cells
        units = unit_sums(cells, cell_of_nucleus, count, reference.target, prediction, reference.foreground,
                          reference.data_range, labels, ap["matches"])
    if with_cellpose:
        labels = segment_cellpose(
            prediction, opts.cellpose_model, opts.cellpose_diameter, opts.cellpose_anisotropy, opts.cellpose_gpu
        )
        seg, ap = segmentation_row(reference, labels, prediction, opts, prefix="cellpose_")
        curves["cellpose"] = ap["ap"]
        row.update(seg)
    return row, curves, units
