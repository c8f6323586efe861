"""PNG figures of an evaluation: metrics per model, AP vs IoU, histograms, threshold sweep.

Matplotlib with the non-interactive Agg canvas (no display needed); every function
writes one file and returns its path.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .pattern import main_rows

SUMMARY_METRICS = (
    ("psnr", "PSNR (dB)"),
    ("psnr_fg", "foreground PSNR (dB)"),
    ("ssim", "SSIM"),
    ("ssim_fg", "foreground SSIM"),
    ("microssim", "MicroSSIM"),
    ("microssim_fg", "foreground MicroSSIM"),
    ("pearson", "Pearson r"),
    ("pearson_fg", "foreground Pearson r"),
    ("frc_resolution", "FRC resolution (px)"),
    ("mean_ap", "AP (mean 0.5-0.95)"),
    ("ap_0.50", "AP at IoU 0.5"),
    ("morph_cosine_mean", "morphology cosine distance"),
)
SWEEP_METRICS = (("psnr", "PSNR (dB)"), ("psnr_fg", "foreground PSNR (dB)"), ("ssim", "SSIM"), ("mean_ap", "AP (mean)"))


def _figure(rows: int, cols: int, width: float = 3.2, height: float = 2.6) -> Figure:
    figure = Figure(figsize=(cols * width, rows * height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _colour(model: str, models: list[str]) -> str:
    """Black for the real target, then the default cycle over the models in a fixed order."""
    if model == "target":
        return "k"
    others = [m for m in models if m != "target"]
    return f"C{others.index(model) % 10}"


def _values(rows: list[dict], model: str, key: str) -> np.ndarray:
    return np.array([r.get(key, math.nan) for r in rows if r["model"] == model], dtype=float)


def plot_metrics(rows: list[dict], path: Path) -> Path:
    """One panel per metric: the mean per model (bar) and each volume (dots)."""
    chosen = main_rows(rows) + [r for r in rows if r["model"] == "target"]
    models = list(dict.fromkeys(r["model"] for r in chosen))
    metrics = [
        (key, label)
        for key, label in SUMMARY_METRICS
        if any(np.isfinite(_values(chosen, m, key)).any() for m in models)
    ]
    cols = 4
    figure = _figure(max(1, math.ceil(len(metrics) / cols)), cols)
    for n, (key, label) in enumerate(metrics):
        axes = figure.add_subplot(math.ceil(len(metrics) / cols), cols, n + 1)
        shown = []
        for model in models:
            values = _values(chosen, model, key)
            values = values[np.isfinite(values)]
            if values.size:
                x = len(shown)
                shown.append(model)
                axes.bar(x, values.mean(), color=_colour(model, models), alpha=0.5)
                axes.plot(np.full(values.size, x), values, "k.", markersize=4)
        axes.set_xticks(range(len(shown)), shown, rotation=30, fontsize=7)
        axes.set_title(label, fontsize=9)
    figure.savefig(path, dpi=110)
    return path


def plot_ap_curves(curves: dict[str, dict[str, list]], thresholds, path: Path) -> Path:
    """AP vs IoU threshold, mean over volumes, one line per model and segmentation method."""
    figure = _figure(1, 1, 5.0, 3.6)
    axes = figure.add_subplot()
    models = list(curves)
    for model, methods in curves.items():
        for method, per_volume in methods.items():
            mean = np.nanmean(np.array(per_volume, dtype=float), axis=0)
            style = "-" if method == "watershed" else "--"
            label = model if method == "watershed" else f"{model} ({method})"
            axes.plot(thresholds, mean, style, marker="o", color=_colour(model, models), label=label)
    axes.set_xlabel("IoU threshold")
    axes.set_ylabel("AP = TP / (TP + FP + FN)")
    axes.set_ylim(0, 1.02)
    axes.legend(fontsize=8)
    figure.savefig(path, dpi=110)
    return path


def plot_histograms(edges: np.ndarray, histograms: dict[str, np.ndarray], thresholds: list[float], path: Path) -> Path:
    """Voxel-intensity histograms (all volumes pooled, target units), log counts."""
    figure = _figure(1, 1, 6.0, 3.6)
    axes = figure.add_subplot()
    centres = 0.5 * (edges[:-1] + edges[1:])
    models = list(histograms)
    for model, counts in histograms.items():
        axes.step(centres, np.maximum(counts, 0.5), where="mid", color=_colour(model, models), label=model)
    for t in thresholds:
        axes.axvline(t, color="0.7", linewidth=0.8, linestyle=":")
    axes.set_yscale("log")
    axes.set_xlabel("intensity (target units)")
    axes.set_ylabel("voxels")
    axes.legend(fontsize=8)
    figure.savefig(path, dpi=110)
    return path


def plot_sweep(rows: list[dict], path: Path) -> Path:
    """Metrics vs threshold fraction per model (fraction 0 = the unthresholded prediction)."""
    models = list(dict.fromkeys(r["model"] for r in rows if r["model"] != "target"))
    figure = _figure(1, len(SWEEP_METRICS))
    for n, (key, label) in enumerate(SWEEP_METRICS):
        axes = figure.add_subplot(1, len(SWEEP_METRICS), n + 1)
        for model in models:
            mine = [r for r in rows if r["model"] == model]
            fractions = sorted({0.0 if math.isnan(r["threshold_fraction"]) else r["threshold_fraction"] for r in mine})
            means = []
            for f in fractions:
                values = [
                    r.get(key, math.nan)
                    for r in mine
                    if (math.isnan(r["threshold_fraction"]) and f == 0.0) or r["threshold_fraction"] == f
                ]
                means.append(np.nanmean(values) if np.isfinite(values).any() else math.nan)
            axes.plot(fractions, means, marker="o", color=_colour(model, models), label=model)
        axes.set_xlabel("threshold (fraction of target range)")
        axes.set_title(label, fontsize=9)
        if n == 0:
            axes.legend(fontsize=7)
    figure.savefig(path, dpi=110)
    return path


def plot_slices(target: np.ndarray, predictions: dict[str, np.ndarray], path: Path, name: str = "") -> Path:
    """XY and XZ planes of the target and every prediction, all in the target's display window.

    The XY plane is the one where the target is brightest on average (the nuclei's middle),
    the XZ plane the middle row; the window is the target's 0.5th to 99.8th percentile, so a
    prediction brighter or darker than the target shows as such.
    """
    volumes = {"target": target, **predictions}
    z = int(np.argmax(target.reshape(target.shape[0], -1).mean(axis=1)))
    y = target.shape[1] // 2
    lo, hi = (float(v) for v in np.percentile(target, [0.5, 99.8]))
    hi = hi if hi > lo else lo + 1.0
    aspect = target.shape[0] / target.shape[2]
    figure = _figure(2, len(volumes), 3.0, 1.6 + 1.6 * max(aspect, 0.25))
    grid = figure.add_gridspec(2, len(volumes), height_ratios=[target.shape[1], max(target.shape[0], 1)])
    for column, (label, volume) in enumerate(volumes.items()):
        for row, (plane, where) in enumerate(((volume[z], f"XY, z={z}"), (volume[:, y], f"XZ, y={y}"))):
            axes = figure.add_subplot(grid[row, column])
            axes.imshow(plane, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
            axes.set_xticks([])
            axes.set_yticks([])
            if row == 0:
                axes.set_title(label, fontsize=9)
            if column == 0:
                axes.set_ylabel(where, fontsize=8)
    figure.suptitle(f"{name}: window [{lo:.3g}, {hi:.3g}] (target's p0.5 to p99.8)", fontsize=9)
    figure.savefig(path, dpi=90)
    return path
