"""The written outputs of an evaluation: ``metrics.csv``, ``differences.csv``, the PNGs and ``report.md``.

:func:`summary_table`, :func:`pattern_lines` and :func:`differences_table` are the report's
Markdown parts; ``spotlight demo`` puts the same parts into its own report.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from .options import EvaluationOptions, describe
from .pattern import PatternCheck, main_rows, model_mean
from .plots import plot_ap_curves, plot_histograms, plot_metrics, plot_sweep

TABLE_METRICS = (
    ("psnr", "PSNR dB"),
    ("psnr_fg", "fg PSNR dB"),
    ("ssim", "SSIM"),
    ("ssim_fg", "fg SSIM"),
    ("microssim", "MicroSSIM"),
    ("microssim_fg", "fg MicroSSIM"),
    ("microssim_3d", "MicroSSIM 3D"),
    ("pearson", "r"),
    ("pearson_fg", "fg r"),
    ("frc_resolution", "FRC px"),
    ("ap_0.50", "AP@0.5"),
    ("mean_ap", "mean AP"),
    ("morph_cosine_mean", "morph cos"),
)


def _cell(value) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return str(value)


def write_csv(rows: list[dict], path: Path) -> Path:
    """All rows, one column per key seen in any row (in first-seen order); NaN as empty."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_cell(row.get(key, math.nan)) for key in columns])
    return path


def _fmt(value: float, digits: int = 3) -> str:
    return "n/a" if not np.isfinite(value) else f"{value:.{digits}f}"


def summary_table(rows: list[dict]) -> list[str]:
    """Markdown table: each model's (and the target's) means over volumes of the headline metrics."""
    chosen = main_rows(rows) + [r for r in rows if r["model"] == "target"]
    models = list(dict.fromkeys(r["model"] for r in chosen))
    lines = ["| model | " + " | ".join(label for _, label in TABLE_METRICS) + " |"]
    lines.append("|---" * (len(TABLE_METRICS) + 1) + "|")
    for model in models:
        cells = [
            _fmt(model_mean(chosen, model, key), 2 if "psnr" in key or "frc" in key else 3) for key, _ in TABLE_METRICS
        ]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return lines


def write_differences(differences: list, path: Path) -> Path:
    """Every model-versus-model difference with its interval, one row each."""
    columns = ["model", "baseline", "metric", "difference", "low", "high", "confidence"]
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for difference in differences:
            row = difference.as_row()
            writer.writerow([_cell(row[key]) for key in columns])
    return path


METRIC_LABELS = {"psnr": ("PSNR", 2, " dB"), "psnr_fg": ("foreground PSNR", 2, " dB"), "mean_ap": ("mean AP", 3, "")}


def differences_table(differences: list) -> list[str]:
    """Markdown table of the differences (model minus baseline) with their intervals."""
    if not differences:
        return ["One model: no differences to judge."]
    confidence = f"{100 * differences[0].confidence:g}%"
    lines = [f"| model | minus | metric | difference | {confidence} interval | interval contains 0 |",
             "|---|---|---|---:|---|---|"]
    for d in differences:
        label, digits, unit = METRIC_LABELS[d.metric]
        interval = "n/a" if math.isnan(d.low) else f"{d.low:+.{digits}f} to {d.high:+.{digits}f}{unit}"
        lines.append(f"| {d.model} | {d.baseline} | {label} | {d.estimate:+.{digits}f}{unit} | {interval} | "
                     f"{'yes' if d.contains_zero else 'no'} |")
    return lines


def pattern_lines(pattern: PatternCheck) -> list[str]:
    """The verdict as Markdown: its first line, then each part (and the intervals' note) as a bullet."""
    return [pattern.lines[0], "", *[f"- {line}" for line in pattern.lines[1:]]]


def _sweep_table(rows: list[dict]) -> list[str]:
    sweep = [r for r in rows if not math.isnan(r["threshold_fraction"])]
    if not sweep:
        return ["No threshold sweep was run (sweep_fractions is empty)."]
    lines = [
        "| model | fraction | intensity (mean) | PSNR dB | fg PSNR dB | SSIM | mean AP |",
        "|---|---|---|---|---|---|---|",
    ]
    for model in dict.fromkeys(r["model"] for r in sweep):
        for fraction in sorted({r["threshold_fraction"] for r in sweep if r["model"] == model}):
            chosen = [r for r in sweep if r["model"] == model and r["threshold_fraction"] == fraction]
            keys = ("psnr", "psnr_fg", "ssim", "mean_ap")
            cells = [_fmt(model_mean(chosen, model, k), 2 if "psnr" in k else 3) for k in keys]
            intensity = _fmt(model_mean(chosen, model, "threshold_intensity"), 1)
            lines.append(f"| {model} | {fraction:g} | {intensity} | " + " | ".join(cells) + " |")
    return lines


def _protocol_lines(rows: list[dict], opts: EvaluationOptions, tuning, has_masks: bool, units_of: dict) -> list[str]:
    """What was done to the data before scoring, and the targets' own segmentation scores."""
    units = {"otsu": "Otsu-standardized, `(Y - T) / std(Y)` (the units of training and `spotlight predict`)",
             "none": "as given"}[opts.target_norm]
    rescale = {"none": "used as given", "range": "min-max mapped to the combined training targets' range "
               + (f"[{opts.target_range[0]:.6g}, {opts.target_range[1]:.6g}]" if opts.target_range else "(see Notes)"),
               "minmax": "min-max mapped to each target's range", "affine": "least-squares affine fit to each target"}
    params = opts.segmentation
    described = "; ".join(choice.describe(model) for model, choice in (units_of or {}).items())
    lines = [f"- Targets: {units}.",
             "- Prediction units (`prediction_units`, docs/evaluation.md), each mapped into the targets' units by the "
             f"target's own map: {described}.",
             f"- Predictions: {rescale[opts.rescale]} (`rescale={opts.rescale!r}`)."]
    if tuning is not None:
        lines.append(
            "- Segmentation tuned on the targets against the masks (docs/evaluation.md, search grid in "
            "[segmentation_search.csv](segmentation_search.csv)), then frozen for every prediction: "
            f"{tuning.summary()}; targets' mean AP@0.5 {tuning.ap_first:.3f}, mean AP {tuning.mean_ap:.3f}."
        )
    else:
        why = "tune_segmentation=False" if has_masks else "no masks to tune on"
        lines.append(f"- Segmentation as given ({why}): clahe={params.clahe}, smoothing_sigma={params.smoothing_sigma:g}, "
                     f"threshold_correction={params.threshold_correction:g}, footprint={params.footprint:g}, "
                     f"clear_border={params.clear_border!r}, min_volume={params.min_volume}, "
                     f"downsample={params.downsample}.")
    lines.append(f"- Border and size rules (`clear_border={params.clear_border!r}`, `min_volume={params.min_volume}`) "
                 "apply to the ground-truth nuclei and to every segmentation alike.")
    target_rows = [r for r in rows if r["model"] == "target" and "mean_ap" in r]
    if target_rows:
        lines += ["", "The targets' own segmentation against the masks (the recipe on the real data; a smooth prediction can "
                  "score higher than a noisy target):", "",
                  "| volume | nuclei (masks) | nuclei found | AP@0.5 | AP@0.75 | mean AP |", "|---|---|---|---|---|---|"]
        for r in target_rows:
            lines.append(f"| {r['volume_name']} | {r.get('n_reference', '')} | {r['n_nuclei']} | "
                         f"{_fmt(r.get('ap_0.50', math.nan))} | {_fmt(r.get('ap_0.75', math.nan))} | "
                         f"{_fmt(r['mean_ap'])} |")
    return lines


def write_report(
    rows: list[dict],
    out_dir: Path,
    opts: EvaluationOptions,
    curves: dict,
    histograms: tuple[np.ndarray, dict],
    notes: list[str],
    has_masks: bool,
    pattern: PatternCheck,
    differences: list,
    units: dict,
    tuning=None,
    slices: list | None = None,
) -> Path:
    """Writes the PNGs (when ``opts.plots``) and ``report.md`` linking them; returns its path.

    ``pattern``: the verdict; ``differences``: the model-versus-model differences with their
    intervals; ``units``: each model's :class:`.prediction_units.UnitsChoice`.
    """
    out_dir = Path(out_dir)
    figures = []
    if opts.plots:
        title = "Metrics per model (bars: mean over volumes, dots: volumes)"
        figures.append((title, plot_metrics(rows, out_dir / "metrics.png")))
        if curves:
            path = plot_ap_curves(curves, opts.iou_thresholds, out_dir / "ap_vs_iou.png")
            figures.append(("AP vs IoU threshold", path))
        edges, counts = histograms
        # sweep thresholds drawn at fractions of the pooled range (exact for a single volume)
        first_thresholds = [edges[0] + f * (edges[-1] - edges[0]) for f in opts.sweep_fractions]
        title = "Voxel-intensity histograms (targets' units, all volumes pooled; dotted: sweep thresholds)"
        figures.append((title, plot_histograms(edges, counts, first_thresholds, out_dir / "histograms.png")))
        if opts.sweep_fractions:
            figures.append(("Threshold sweep (paper Figure 3)", plot_sweep(rows, out_dir / "sweep.png")))
        for name, path in slices or []:
            figures.append((f"Slices of {name}: every prediction against its target", path))

    volumes = sorted({r["volume_name"] for r in rows})
    models = list(dict.fromkeys(r["model"] for r in main_rows(rows)))
    reference = "the given instance masks"
    if not has_masks:
        reference = "the Otsu + watershed segmentation of the real target (no masks given)"
    no_cross = [r for r in rows if r.get("frc_crossed") is False]
    lines = [
        "# Virtual stain evaluation",
        "",
        f"{len(volumes)} volume(s); models: {', '.join(models)}. Segmentation AP is scored against {reference}.",
        "Every number is in [metrics.csv](metrics.csv) (one row per volume, model and sweep threshold; "
        "model `target` rows describe the real target).",
        "",
        "## The paper's pattern",
        "",
        *pattern_lines(pattern),
        "",
        "## Protocol",
        "",
        *_protocol_lines(rows, opts, tuning, has_masks, units),
        "",
        "## Summary (mean over volumes, unthresholded predictions)",
        "",
        *summary_table(rows),
        "",
        "## Differences between models (means over volumes; [differences.csv](differences.csv))",
        "",
        *differences_table(differences),
        "",
        "## Threshold sweep (predictions cut at a fraction of the target's range)",
        "",
        *_sweep_table(rows),
        "",
        "## Figures",
        "",
    ]
    for title, path in figures:
        lines += [f"### {title}", "", f"![{title}]({Path(path).name})", ""]
    if not figures:
        lines += ["Plots were not requested (plots=False).", ""]
    lines += ["## Notes", ""]
    lines += [f"- {note}" for note in notes]
    if no_cross:
        lines.append(
            f"- FRC did not cross its threshold for {len(no_cross)} row(s) (resolution left empty): "
            + "; ".join(sorted({r['frc_message'] for r in no_cross}))
        )
    lines += [
        "- Conventions (docs/evaluation.md): PSNR/SSIM data range = target max - min, foreground = target > "
        f"Otsu threshold, FRC one-image checkerboard split with rings of {opts.frc_bin_delta} px (the last "
        f"one up to Nyquist) and the {opts.frc_threshold} threshold, MicroSSIM in the microssim package's "
        "per-slice convention (`microssim`; the 3D-window variant is `microssim_3d`), "
        "AP = TP/(TP+FP+FN) with Hungarian one-to-one matching.",
        "",
        "## Options",
        "",
        "```json",
        json.dumps(describe(opts), indent=1, default=str),
        "```",
        "",
    ]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines))
    return path
