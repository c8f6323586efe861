"""``evaluate_models``: the paper's whole evaluation of virtual stains, in one call.

The protocol of the paper's appendix A.3, in order:

1. targets into the units the models predict in (``target_norm``, default Otsu
   standardization as in training), each model's predictions into the same units by the
   target's own map (``prediction_units``, default read from the predictions:
   :mod:`.prediction_units`), then onto the targets (``rescale``, default none);
2. with ground-truth masks, the segmentation's hyperparameters are tuned on the real
   targets against the masks (:mod:`.tuning`), then frozen and applied unchanged to every
   model's predictions (``tune_segmentation``, default: on when masks are given);
3. for every volume and model: pixel metrics (whole volume and target foreground), FRC
   resolution, Otsu + watershed segmentation scored against the ground-truth nuclei (the
   given instance masks under the same border and size rules, else the segmentation of the
   real target), morphology distances of matched nuclei, and the threshold sweep;
4. for every pair of models, the differences of the judged metrics (``psnr``, ``psnr_fg``,
   ``mean_ap``) with paired bootstrap intervals (:mod:`.bootstrap`), and the pattern check
   on them (:mod:`.pattern`).

Writes ``metrics.csv``, ``differences.csv``, ``segmentation_search.csv`` (when tuned), PNG
plots (slices of every prediction against its target among them) and ``report.md`` to
``out_dir``. :func:`evaluate_models` returns the rows of ``metrics.csv``;
:func:`run_evaluation` returns them with the differences and the pattern check.
"""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ._validation import as_image
from .cellpose_backend import cellpose_status
from .instances import to_instances
from .bootstrap import Difference, model_differences, seed_groups
from .options import EvaluationOptions
from .pattern import PatternCheck, check_pattern, find_models
from .plots import plot_slices
from .prediction_units import UnitsChoice, choose_units, to_evaluation_units
from .rescaling import otsu_standardization, rescale_to_target, training_target_range
from .report import write_csv, write_differences, write_report
from .tuning import TuningResult, tune_segmentation
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


MICROSSIM_SLICE_PIXELS = 11  # the microssim package's Gaussian scoring window (sigma 1.5, truncated at 3.5)


def _check_thin(targets: list[np.ndarray], names: tuple[str, ...]) -> None:
    """Volumes too thin for a metric fail here, naming the volume, before any work."""
    for i, (target, name) in enumerate(zip(targets, names)):
        z, y, x = target.shape
        if min(z, y, x) < 3:
            raise ValueError(
                f"targets[{i}] ({name}) has shape {target.shape}: SSIM needs at least 3 voxels along every axis"
            )
        if min(y, x) < MICROSSIM_SLICE_PIXELS:
            raise ValueError(
                f"targets[{i}] ({name}) has XY planes of {(y, x)}: MicroSSIM's per-slice convention needs at least "
                f"{MICROSSIM_SLICE_PIXELS} x {MICROSSIM_SLICE_PIXELS} pixels"
            )


def _write_search(tuning: TuningResult, path: Path) -> Path:
    columns = list(tuning.candidates[0])
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(tuning.candidates)
    return path


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


@dataclass
class Evaluation:
    """What :func:`run_evaluation` measured: every row, the model-versus-model differences, the verdict."""

    rows: list[dict]
    differences: list[Difference]
    pattern: PatternCheck
    units: dict[str, UnitsChoice]


def _pairs(models: list[str]) -> list[tuple[str, str]]:
    """Every pair of models as (later, earlier), the pattern's pair as (spotlight, mse)."""
    pairs = [(b, a) for i, a in enumerate(models) for b in models[i + 1:]]
    spotlight, mse = find_models(models)
    return [(spotlight, mse) if (a, b) == (mse, spotlight) else (a, b) for a, b in pairs]


def _interval_note(opts: EvaluationOptions, count: int) -> str:
    """What the intervals resample and what they cover, for the verdict's last line."""
    seeds = len(seed_groups(opts.training_seeds, count))
    levels = f"the {count} volumes and the nuclei within each" if count > 1 else "the nuclei of the volume"
    drawn = f"the {seeds} training seeds, {levels}" if seeds > 1 else levels
    covered = ("the sampling of test nuclei and volumes and the spread between training seeds" if seeds > 1 else
               "the sampling of test nuclei and volumes, not the randomness of training: each model is one training "
               "run, and another seed or machine trains another model")
    return (f"Intervals: {100 * opts.confidence_level:g}% paired bootstrap over {drawn} ({opts.bootstrap_resamples} "
            f"resamples, seed {opts.bootstrap_seed}; docs/evaluation.md); they cover {covered}.")


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
    ``options`` are the fields of :class:`EvaluationOptions` (target_norm, prediction_units,
    rescale, target_range, training_run, tune_segmentation, segmentation, frc_bin_delta,
    frc_threshold, sweep_fractions, cellpose_model, volume_names, training_seeds,
    bootstrap_resamples, confidence_level, bootstrap_seed, ...).
    ``prediction_units``: ``"target"`` (the units of the targets as given), ``"standardized"``
    (the Otsu-standardized units of ``spotlight predict``) or ``"auto"`` (default: the
    reading that fits the targets plainly better; an error naming the model when neither
    does, see :mod:`.prediction_units`). An exact copy of a target scores PSNR inf and SSIM 1.
    ``tune_segmentation``: True tunes the segmentation on the targets against the masks
    (the paper's protocol), False uses ``segmentation`` as given, None (default) tunes when
    masks are given.
    Returns one dict per (volume, model, threshold) with every number, the rows of
    ``out_dir/metrics.csv``; ``threshold_fraction`` is NaN for unthresholded predictions
    and model ``"target"`` rows describe the real target itself.
    """
    return run_evaluation(predictions, targets, instance_masks, out_dir, **options).rows


def run_evaluation(
    predictions: dict[str, list[np.ndarray]],
    targets: list[np.ndarray],
    instance_masks: list[np.ndarray] | None,
    out_dir: Path,
    **options,
) -> Evaluation:
    """:func:`evaluate_models`, returning the rows, the differences with their intervals and the pattern check."""
    opts = EvaluationOptions.from_kwargs(options)
    targets, masks = _check_inputs(predictions, targets, instance_masks)
    has_masks = masks[0] is not None
    opts = opts.with_names(len(targets))
    _check_thin(targets, opts.volume_names)
    tune = has_masks if opts.tune_segmentation is None else opts.tune_segmentation
    if tune and not has_masks:
        raise ValueError("tune_segmentation=True needs instance_masks: the segmentation is tuned against them")
    maps = [otsu_standardization(t, opts.smooth_threshold) for t in targets]
    units = {model: choose_units(model, volumes, targets, maps, opts.prediction_units, opts.rescale, opts.target_norm)
             for model, volumes in predictions.items()}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with_cellpose, cellpose_message = cellpose_status(opts.cellpose_model)
    log.info(cellpose_message)
    notes = [cellpose_message]
    notes += [f"{model} misses the targets by more than their own mean would (rms {choice.error_target:.3g} target "
              f"stds in the targets' units, {choice.error_standardized:.3g} standardized): check its units "
              "(prediction_units, rescale)." for model, choice in units.items()
              if min(choice.error_target, choice.error_standardized) > 1]

    if opts.target_norm == "otsu":
        targets = [standard.apply(t) for standard, t in zip(maps, targets)]
    target_range = opts.target_range
    if opts.training_run is not None:
        target_range = training_target_range(opts.training_run, opts.target_norm)
        notes.append(f"Combined training targets of {opts.training_run} span [{target_range[0]:.6g}, "
                     f"{target_range[1]:.6g}] ({opts.target_norm} units): predictions min-max mapped there.")
    tuning = None
    if tune:
        tuning = tune_segmentation(targets, masks, opts.segmentation, opts.iou_thresholds, opts.progress)
        opts = replace(opts, segmentation=tuning.params)
        _write_search(tuning, out_dir / "segmentation_search.csv")

    lo = min(float(t.min()) for t in targets)
    hi = max(float(t.max()) for t in targets)
    edges = np.linspace(lo, hi, opts.histogram_bins + 1)
    histograms = {TARGET: np.zeros(opts.histogram_bins, dtype=np.int64)}
    histograms.update({model: np.zeros(opts.histogram_bins, dtype=np.int64) for model in predictions})
    curves: dict[str, dict[str, list]] = {}
    rows: list[dict] = []
    unit_sums: dict[str, list] = {model: [] for model in predictions}

    volumes = tqdm(range(len(targets)), desc="evaluating volumes", unit="volume", disable=not opts.progress)
    slices = []
    for i in volumes:
        target, name = targets[i], opts.volume_names[i]
        shown = {}
        reference, target_labels = build_reference(target, masks[i], opts)
        histograms[TARGET] += intensity_histogram([target], edges)
        row = _base(i, name, TARGET, reference.source)
        row.update(frc_row(target, opts))
        if has_masks:  # how well the segmentation recipe does on the real data
            seg, ap = segmentation_row(reference, target_labels, target, opts)
            row.update(seg)
            curves.setdefault(TARGET, {}).setdefault("watershed", []).append(ap["ap"])
        rows.append(row)
        for model, volumes_of_model in predictions.items():
            raw = as_image(f"predictions[{model!r}][{i}]", volumes_of_model[i], ndim=(3,))
            raw = to_evaluation_units(raw, units[model], maps[i], opts.target_norm)
            prediction = rescale_to_target(raw, target, opts.rescale, target_range)
            shown[model] = prediction
            histograms[model] += intensity_histogram([prediction], edges)
            row = _base(i, name, model, reference.source)
            values, ap_curves, sums = prediction_row(reference, prediction, opts, with_frc=True,
                                                     with_cellpose=with_cellpose, with_units=True)
            unit_sums[model].append(sums)
            row.update(values)
            rows.append(row)
            for method, ap_curve in ap_curves.items():
                curves.setdefault(model, {}).setdefault(method, []).append(ap_curve)
            for fraction in opts.sweep_fractions:
                intensity = threshold_intensity(target, fraction)
                row = _base(i, name, model, reference.source, fraction, intensity)
                values, _, _ = prediction_row(
                    reference, threshold_prediction(prediction, intensity), opts, with_frc=False, with_cellpose=False
                )
                row.update(values)
                rows.append(row)
        if opts.plots:
            slices.append((name, plot_slices(target, shown, out_dir / f"slices_{i:02d}.png", name)))

    differences = model_differences(unit_sums, _pairs(list(predictions)), opts.training_seeds,
                                     opts.bootstrap_resamples, opts.confidence_level, opts.bootstrap_seed)
    pattern = check_pattern(rows, opts.psnr_tolerance_db, differences, _interval_note(opts, len(targets)))
    write_csv(rows, out_dir / "metrics.csv")
    write_differences(differences, out_dir / "differences.csv")
    write_report(
        rows,
        out_dir,
        opts,
        curves=curves,
        histograms=(edges, histograms),
        notes=notes,
        has_masks=has_masks,
        tuning=tuning,
        slices=slices,
        pattern=pattern,
        differences=differences,
        units=units,
    )
    return Evaluation(rows, differences, pattern, units)
