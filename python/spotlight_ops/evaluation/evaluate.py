"""``evaluate_models``: the paper's whole evaluation of virtual stains, in one call.

For every volume and model: pixel metrics (whole volume and target foreground), FRC
resolution, Otsu + watershed segmentation scored against the ground-truth nuclei (the
given instance masks, else the segmentation of the real target), morphology distances of
matched nuclei, and the threshold sweep. Writes ``metrics.csv``, PNG plots and
``report.md`` to ``out_dir`` and returns the CSV rows.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ._validation import as_image
from .cellpose_backend import cellpose_status
from .instances import to_instances
from .options import EvaluationOptions
from .rescaling import rescale_to_target
from .report import write_csv, write_report
from .sweep import intensity_histogram, threshold_intensity, threshold_prediction
from .volume_metrics import build_reference, frc_row, prediction_row, segmentation_row

log = logging.getLogger(__name__)

TARGET = "target"  # the row name of the real target; not allowed as a model name


def _check_inputs(predictions, targets, instance_masks) -> tuple[list, list]:
    if not isinstance(targets, (list, tuple)) or len(targets) == 0:
        raise ValueError("targets must be a non-empty list of 3D arrays")
    targets = [as_image(f"targets[{i}]", t, ndim=(3,)) for i, t in enumerate(targets)]
    for i, t in enumerate(targets):
        if t.max() == t.min():
            raise ValueError(f"targets[{i}] is constant: nothing to compare a prediction with")
    if not isinstance(predictions, dict) or not predictions:
        raise ValueError("predictions must be a non-empty dict {model name: list of volumes}")
    for name, volumes in predictions.items():
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"prediction model names must be non-empty strings, got {name!r}")
        if name == TARGET:
            raise ValueError(f"'{TARGET}' is reserved for the real target; rename that model")
        if not isinstance(volumes, (list, tuple)) or len(volumes) != len(targets):
            count = len(volumes) if isinstance(volumes, (list, tuple)) else type(volumes).__name__
            raise ValueError(
                f"predictions[{name!r}] must be a list of {len(targets)} volumes (one per target), got {count}"
            )
        for i, v in enumerate(volumes):
            shape = np.shape(v)
            if shape != targets[i].shape:
                raise ValueError(f"predictions[{name!r}][{i}] has shape {shape}, targets[{i}] has {targets[i].shape}")
    masks = [None] * len(targets)
    if isinstance(instance_masks, (list, tuple)) and all(m is None for m in instance_masks):
        instance_masks = None  # a data manifest without a mask column gives a list of None
    if instance_masks is not None:
        if not isinstance(instance_masks, (list, tuple)) or len(instance_masks) != len(targets):
            raise ValueError(f"instance_masks must be None or a list of {len(targets)} label volumes")
        masks = []
        for i, m in enumerate(instance_masks):
            if m is None:
                raise ValueError(f"instance_masks[{i}] is None: give masks for every volume or for none")
            if np.shape(m) != targets[i].shape:
                raise ValueError(f"instance_masks[{i}] has shape {np.shape(m)}, targets[{i}] has {targets[i].shape}")
            masks.append(to_instances(m))
    return targets, masks


def _base(
    index: int, name: str, model: str, source: str, fraction: float = math.nan, intensity: float = math.nan
) -> dict:
    return {
        "volume": index,
        "volume_name": name,
        "model": model,
        "threshold_fraction": fraction,
        "threshold_intensity": intensity,
        "reference": source,
    }


def evaluate_models(
    predictions: dict[str, list[np.ndarray]],
    targets: list[np.ndarray],
    instance_masks: list[np.ndarray] | None,
    out_dir: Path,
    **options,
) -> list[dict]:
    """Evaluates each model's predictions against the targets; see the module docstring.

    ``instance_masks``: ground-truth nuclei per target (instance labels, or binary masks
    split by connected components), or None (or a list of None) to score segmentation
    against the target's own Otsu + watershed segmentation.
    ``options`` are the fields of :class:`EvaluationOptions` (rescale, frc_bin_delta,
    frc_threshold, segmentation, sweep_fractions, cellpose_model, volume_names, ...).
    Returns one dict per (volume, model, threshold) with every number, the rows of
    ``out_dir/metrics.csv``; ``threshold_fraction`` is NaN for unthresholded predictions
    and model ``"target"`` rows describe the real target itself.
    """
    opts = EvaluationOptions.from_kwargs(options)
    targets, masks = _check_inputs(predictions, targets, instance_masks)
    has_masks = masks[0] is not None
    opts = opts.with_names(len(targets))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with_cellpose, cellpose_message = cellpose_status(opts.cellpose_model)
    log.info(cellpose_message)

    lo = min(float(t.min()) for t in targets)
    hi = max(float(t.max()) for t in targets)
    edges = np.linspace(lo, hi, opts.histogram_bins + 1)
    histograms = {TARGET: np.zeros(opts.histogram_bins, dtype=np.int64)}
    histograms.update({model: np.zeros(opts.histogram_bins, dtype=np.int64) for model in predictions})
    curves: dict[str, dict[str, list]] = {}
    rows: list[dict] = []

    volumes = tqdm(range(len(targets)), desc="evaluating volumes", unit="volume", disable=not opts.progress)
    for i in volumes:
        target, name = targets[i], opts.volume_names[i]
        reference, target_labels = build_reference(target, masks[i], opts)
        histograms[TARGET] += intensity_histogram([target], edges)
        row = _base(i, name, TARGET, reference.source)
        row.update(frc_row(target, opts))
        if has_masks:  # how well the segmentation recipe does on the real data: the ceiling
            seg, ap_curve = segmentation_row(reference, target_labels, target, opts)
            row.update(seg)
            curves.setdefault(TARGET, {}).setdefault("watershed", []).append(ap_curve)
        rows.append(row)
        for model, volumes_of_model in predictions.items():
            raw = as_image(f"predictions[{model!r}][{i}]", volumes_of_model[i], ndim=(3,))
            prediction = rescale_to_target(raw, target, opts.rescale)
            histograms[model] += intensity_histogram([prediction], edges)
            row = _base(i, name, model, reference.source)
            values, ap_curves = prediction_row(reference, prediction, opts, with_frc=True, with_cellpose=with_cellpose)
            row.update(values)
            rows.append(row)
            for method, ap_curve in ap_curves.items():
                curves.setdefault(model, {}).setdefault(method, []).append(ap_curve)
            for fraction in opts.sweep_fractions:
                intensity = threshold_intensity(target, fraction)
                row = _base(i, name, model, reference.source, fraction, intensity)
                values, _ = prediction_row(
                    reference, threshold_prediction(prediction, intensity), opts, with_frc=False, with_cellpose=False
                )
                row.update(values)
                rows.append(row)

    write_csv(rows, out_dir / "metrics.csv")
    write_report(
        rows,
        out_dir,
        opts,
        curves=curves,
        histograms=(edges, histograms),
        notes=[cellpose_message],
        has_masks=has_masks,
    )
    return rows
