"""The written outputs of an evaluation: ``metrics.csv``, the PNGs and ``report.md``."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from .options import EvaluationOptions, describe
from .pattern import check_pattern, main_rows, model_mean
from .plots import plot_ap_curves, plot_histograms, plot_metrics, plot_sweep

TABLE_METRICS = (
    ("psnr", "PSNR dB"),
    ("psnr_fg", "fg PSNR dB"),
    ("ssim", "SSIM"),
    ("ssim_fg", "fg SSIM"),
    ("microssim", "MicroSSIM"),
    ("microssim_fg", "fg MicroSSIM"),
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


def _summary_table(rows: list[dict]) -> list[str]:
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


def write_report(
    rows: list[dict],
    out_dir: Path,
    opts: EvaluationOptions,
    curves: dict,
    histograms: tuple[np.ndarray, dict],
    notes: list[str],
    has_masks: bool,
) -> Path:
    """Writes the PNGs (when ``opts.plots``) and ``report.md`` linking them; returns its path."""
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

    pattern = check_pattern(rows, opts.psnr_tolerance_db)
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
        *[f"- {line}" if n else line for n, line in enumerate(pattern.lines)],
        "",
        "## Summary (mean over volumes, unthresholded predictions)",
        "",
        *_summary_table(rows),
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
        "- Conventions (docs/evaluation.md): predictions rescaled to the target's range "
        f"(`{opts.rescale}`), PSNR/SSIM data range = target max - min, foreground = target > Otsu "
        f"threshold, FRC one-image checkerboard split with rings of {opts.frc_bin_delta} px and the "
        f"{opts.frc_threshold} threshold, AP = TP/(TP+FP+FN) with Hungarian one-to-one matching.",
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
