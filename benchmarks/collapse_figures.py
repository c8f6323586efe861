r"""The figures and the sweep table of docs/collapse.md, from the records of benchmarks/collapse_study.py.

    python benchmarks/collapse_figures.py --records /tmp/study --out docs/figures/collapse

Writes ``soft_mask_derivative.png`` (dS/dP of SPEC 11's soft masks), ``gradients.png`` (the gradient
that reaches background and foreground voxels from each term, the paper's setting), ``fractions.png``
(held-out and batch foreground fractions of every record named in ``--curves``) and prints a
Markdown table of every record: held-out foreground fraction and background mean at each evaluation.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.append(str(Path(__file__).resolve().parents[1] / "python"))  # after an installed spotlight_ops (spawned workers inherit sys.path)
from spotlight_ops.defaults import K  # noqa: E402  (the package, and so the op library, loads too)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def soft_mask_derivative(path: Path, k: float = K) -> None:
    plt = _plt()
    x = np.linspace(-2.5, 2.5, 2001)
    sig = lambda v: (v - k * v) / (k - 2 * k * np.abs(v) + 1)  # noqa: E731
    dsig = lambda v: (1 - k * k) / (k - 2 * k * np.abs(v) + 1) ** 2  # noqa: E731
    inside = np.abs(x) < 1
    curves = {"clamped (SPEC 3, default)": np.where(inside, dsig(x) / 2, 0.0),
              "unclamped (authors' code)": dsig(x) / 2,
              "VisCy: clamp(sigma, 0, 1)": np.where((sig(x) > 0) & (sig(x) < 1), dsig(x), 0.0)}
    fig, ax = plt.subplots(figsize=(5.2, 3.0), constrained_layout=True)
    for (name, y), style in zip(curves.items(), ("-", "--", ":")):
        ax.semilogy(x, np.maximum(y, 1e-4), style, lw=1.5, label=name)
    ax.axvspan(1, 2.5, color="0.9", zorder=0)
    ax.text(1.05, 3e-4, "clamped: no gradient\nfor P - T >= 1", fontsize=7)
    ax.set(xlabel="P - T (standardized units)", ylabel="dS/dP", ylim=(1e-4, 60),
           title=f"soft-mask derivative, k = {k}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left")
    fig.savefig(path, dpi=80)
    plt.close(fig)


def gradients(record: dict, path: Path) -> None:
    plt = _plt()
    t = record["train"]
    it = np.asarray(t["it"])
    smooth = lambda v: np.convolve(np.asarray(v, float), np.ones(10) / 10, mode="same")  # noqa: E731
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.0), constrained_layout=True)
    axes[0].plot(it, -smooth(t["grad_fg_mmse"]), label="MMSE on foreground (up)")
    axes[0].plot(it, -smooth(t["grad_fg_dice"]), label="Dice on foreground (up)")
    axes[0].plot(it, smooth(t["grad_bg_dice"]), label="Dice on background (down)")
    axes[0].axhline(0, color="k", lw=0.6)
    axes[0].set(xlabel="iteration", ylabel="mean |dL/dP| per voxel x n", title="gradient by term and voxel class")
    axes[0].legend(fontsize=7)
    axes[1].plot(it, 100 * np.asarray(t["fg_pred"]), label="batch voxels predicted > T")
    axes[1].plot(it, 100 * np.asarray(t["fg_target"]), label="batch voxels with Y > T")
    axes[1].plot(it, 100 * np.asarray(t["bg_dead"]), label="background at P - T >= 1 (no gradient)")
    axes[1].set(xlabel="iteration", ylabel="%", title="where the predictions sit")
    axes[1].legend(fontsize=7)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def fractions(records: dict, path: Path) -> None:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), constrained_layout=True)
    target = None
    for name, r in records.items():
        h = r["held_out"]
        axes[0].plot(h["it"], 100 * np.asarray(h["fg_pred"]), marker=".", lw=1.2, label=name)
        axes[1].plot(h["it"], h["bg_mean"], marker=".", lw=1.2, label=name)
        target = r if "held_out_target_fg" in r else target
    if target is not None:
        axes[0].axhline(100 * target["held_out_target_fg"], color="k", ls="--", lw=1, label="target")
        axes[1].axhline(target["held_out_target_bg_mean"], color="k", ls="--", lw=1, label="target")
    axes[0].set(xlabel="iteration", ylabel="held-out voxels predicted > T (%)", ylim=(0, 101))
    axes[1].set(xlabel="iteration", ylabel="mean prediction on target background")
    axes[0].legend(fontsize=6)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def experiment_record(path: Path, last: int = 300) -> dict:
    """A run's ``heldout.json`` of benchmarks/real_data_experiment.py up to iteration ``last``, as a study
    record's held-out part."""
    curve = {int(k): v for k, v in json.loads(path.read_text()).items()}
    its = [i for i in sorted(curve) if i <= last]
    return {"held_out": {"it": its, "fg_pred": [curve[i]["fg_fraction"] for i in its],
                         "bg_mean": [curve[i]["bg_mean"] for i in its]}}


def table(records: dict, iterations=(50, 100, 150, 200, 250, 300)) -> str:
    """Held-out foreground fraction / background mean of every record at the given iterations."""
    lines = ["| run | " + " | ".join(f"it {i}" for i in iterations) + " |", "|---|" + "---:|" * len(iterations)]
    for name, r in records.items():
        h = dict(zip(r["held_out"]["it"], zip(r["held_out"]["fg_pred"], r["held_out"]["bg_mean"])))
        cells = [f"{100 * h[i][0]:.0f} % / {h[i][1]:.2f}" if i in h else "" for i in iterations]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--paper", help="record name (file stem) of the paper's setting, for gradients.png")
    parser.add_argument("--curves", nargs="*", default=[], help="label=record-stem pairs for fractions.png")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    records = {p.stem: json.loads(p.read_text()) for p in sorted(args.records.glob("*.json"))}
    soft_mask_derivative(args.out / "soft_mask_derivative.png")
    if args.paper:
        gradients(records[args.paper], args.out / "gradients.png")
    if args.curves:
        chosen = {}
        for pair in args.curves:
            label, stem = pair.split("=", 1)
            chosen[label] = records[stem] if stem in records else experiment_record(Path(stem))
        fractions(chosen, args.out / "fractions.png")
    print(table(records))


if __name__ == "__main__":
    main()
