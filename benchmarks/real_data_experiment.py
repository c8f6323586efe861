r"""MSE against Spotlight on the real Allen pair: train, predict the held-out part, evaluate, write docs.

One command:

    python benchmarks/real_data_experiment.py                  # 3 seeds x 3 arms x 1500 iterations
    python benchmarks/real_data_experiment.py --iterations 20 --early 10 --seeds 0 --docs /tmp/e.md   # a smoke run

The pair ``fnet_sample`` (``../shared/data`` beside the checkout, or ``$SPOTLIGHT_DATA``) is split in
space: the model trains on ``x < 96`` and predicts ``x >= 96``. Arms: ``mse``, ``spotlight_paper``
(the paper's loss, ``mse_term="masked"``) and ``spotlight`` (the product's default,
``lam * MSE + (1 - lam) * Dice`` with the MSE over every voxel, ``mse_term="plain"``, docs/collapse.md). Every run goes through
:func:`spotlight_ops.training.train` (F-net depth 2, 8 channels, patches 16x32x32, batch 4, Adam 1e-3
with betas 0.5/0.999, one thread, CPU); every ``--eval-every`` iterations the held-out part is
predicted from the checkpoint just written, for the curve of its foreground fraction. At ``--early``
and at ``--iterations`` the held-out predictions are evaluated with
:func:`spotlight_ops.evaluation.evaluate_models` (the seeds as volumes: its means are means over
seeds), and ``docs/experiments.md`` is written with the figures, the command, the machine and the
date. The data have no nuclei masks, so segmentation is scored against the target's own Otsu +
watershed segmentation (the evaluation package's rule), which the page says.

Runs live in ``--out`` (default ``runs/real_data_experiment``, git-ignored); a rerun skips finished
trainings and resumes interrupted ones. The data are never copied into the product: the split crops
are written into ``--out``. Without the data the script prints why and exits 0.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.append(str(REPO / "python"))  # after an installed spotlight_ops (spawned workers inherit sys.path)

SPLIT_X = 96
WINDOW = 250  # iterations before a budget whose evaluations are averaged
ARMS = ("mse", "spotlight_paper", "spotlight")
ARM_LABELS = {"mse": "MSE", "spotlight_paper": "Spotlight, the paper's loss", "spotlight": "Spotlight, plain MSE term (default)"}
ARM_TEXT = {"mse": "`mse` (`--loss mse`)",
            "spotlight_paper": "`spotlight_paper` (`--loss spotlight --mse-term masked`: the paper's `0.5 MMSE + 0.5 Dice`)",
            "spotlight": "`spotlight` (`--loss spotlight`, the default `--mse-term plain`: `0.5 MSE + 0.5 Dice`, the MSE "
                         "over every voxel, docs/collapse.md)"}
ARM_COLORS = {"mse": "tab:blue", "spotlight_paper": "tab:red", "spotlight": "tab:green"}


def find_data() -> Path | None:
    env = os.environ.get("SPOTLIGHT_DATA")
    root = Path(env) if env else REPO.parent / "shared" / "data"
    folder = root / "fnet_sample"
    return folder if (folder / "light.tif").is_file() and (folder / "nuc.tif").is_file() else None


def split(source: Path, out: Path) -> dict:
    """Train (x < 96) and held-out (x >= 96) crops as TIFFs in ``out/data``, a manifest for the first."""
    import tifffile

    from spotlight_ops.data.manifest import ManifestRow, write_manifest

    folder = out / "data"
    folder.mkdir(parents=True, exist_ok=True)
    signal, target = tifffile.imread(source / "light.tif"), tifffile.imread(source / "nuc.tif")
    paths = {}
    for part, box in (("train", np.s_[..., :SPLIT_X]), ("test", np.s_[..., SPLIT_X:])):
        for role, volume in (("signal", signal), ("target", target)):
            path = folder / f"{part}_{role}.tif"
            crop = np.ascontiguousarray(volume[box], dtype=np.float32)
            if not (path.is_file() and np.array_equal(tifffile.imread(path), crop)):
                partial = path.with_suffix(f".{os.getpid()}.tmp")
                tifffile.imwrite(partial, crop)
                os.replace(partial, path)  # another process of the experiment may be reading it
            paths[f"{part}_{role}"] = path
    paths["train_csv"] = folder / "train.csv"
    if not paths["train_csv"].is_file():
        partial = folder / f"train.{os.getpid()}.csv"
        write_manifest(partial, [ManifestRow(paths["train_signal"], paths["train_target"])])
        os.replace(partial, paths["train_csv"])
    return paths


def arm_config(arm: str, seed: int, run_dir: Path, train_csv: Path, args: argparse.Namespace):
    from spotlight_ops.training import TrainConfig

    return TrainConfig(train_csv=str(train_csv), out_dir=str(run_dir), loss="mse" if arm == "mse" else "spotlight",
                       mse_term="masked" if arm == "spotlight_paper" else TrainConfig.mse_term, depth=2,
                       base_channels=8, patch_size=(16, 32, 32), batch_size=4, lr=1e-3, betas=(0.5, 0.999),
                       iterations=args.iterations, checkpoint_every=args.eval_every, seed=seed, device="cpu",
                       num_threads=1, progress=args.progress, tensorboard=False, ema_decay=args.ema_decay)


class HeldOut:
    """Predicts the held-out part from a run's newest checkpoint; records its foreground fraction."""

    def __init__(self, paths: dict) -> None:
        import tifffile

        from spotlight_ops.data import PreprocessConfig
        from spotlight_ops.data.dataset import prepare_signal
        from spotlight_ops.data.preprocess import otsu_standardize_volume

        self.signal = prepare_signal(tifffile.imread(paths["test_signal"]).astype(np.float32), PreprocessConfig())
        # the target in the units the model predicts: Otsu-standardized, T = 0 (SPEC 6)
        self.target = otsu_standardize_volume(tifffile.imread(paths["test_target"]).astype(np.float32))
        self.foreground = self.target > 0

    def predict(self, checkpoint: Path) -> tuple:
        """``(prediction, as_trained)``: with the weights prediction uses (BatchNorm statistics recomputed over
        training batches, :mod:`spotlight_ops.training.batchnorm`) and with the training's running averages."""
        from spotlight_ops.models import model_file
        from spotlight_ops.predict import predict_volume

        payload = model_file.read_model_payload(checkpoint)
        model = model_file.build_model(payload, checkpoint).eval()
        prediction = predict_volume(model, self.signal, tile_size=self.signal.shape, overlap=(0, 0, 0))
        model.load_state_dict(payload["model"])
        as_trained = predict_volume(model, self.signal, tile_size=self.signal.shape, overlap=(0, 0, 0))
        return prediction, as_trained

    def summary(self, prediction: np.ndarray, as_trained: np.ndarray) -> dict:
        return {"fg_fraction": float(np.mean(prediction > 0)),
                "bg_mean": float(prediction[~self.foreground].mean()),
                "fg_mean": float(prediction[self.foreground].mean()),
                "as_trained_fg_fraction": float(np.mean(as_trained > 0)),
                "as_trained_bg_mean": float(as_trained[~self.foreground].mean())}


def train_arm(arm: str, seed: int, paths: dict, held: HeldOut, args: argparse.Namespace) -> dict:
    """Trains (or resumes, or skips) one run; returns its held-out curve and writes its budget predictions."""
    import tifffile

    from spotlight_ops.training import train

    run_dir = args.out / "runs" / f"{arm}_s{seed}"
    curve_path = run_dir / "heldout.json"
    curve = json.loads(curve_path.read_text()) if curve_path.is_file() else {}
    budgets = sorted({args.early, args.iterations})

    def on_iteration(iteration: int, loss: float) -> None:
        if iteration % args.eval_every and iteration not in budgets:
            return
        prediction, as_trained = held.predict(run_dir / "checkpoints" / "checkpoint_latest.pt")
        curve[str(iteration)] = held.summary(prediction, as_trained)
        if iteration in budgets:
            out = args.out / "predictions" / str(iteration)
            out.mkdir(parents=True, exist_ok=True)
            tifffile.imwrite(out / f"{arm}_s{seed}.tif", prediction.astype(np.float32))
        curve_path.write_text(json.dumps(curve))

    config = arm_config(arm, seed, run_dir, paths["train_csv"], args)
    if any(b % args.eval_every for b in budgets):
        raise SystemExit(f"--early and --iterations must be multiples of --eval-every ({args.eval_every})")
    started = time.monotonic()
    result = train(config, resume=True, on_iteration=on_iteration)
    if not result.already_finished:
        (run_dir / "seconds.txt").write_text(f"{time.monotonic() - started:.1f}\n")
    return {int(k): v for k, v in curve.items()}


def budget_runs(budget: int, args: argparse.Namespace) -> tuple:
    """(seeds, arms) evaluated at ``budget``: the seeds at which every arm compared with MSE reached it (all
    arms where possible; an arm that did not reach it at those seeds is left out of that budget)."""
    folder = args.out / "predictions" / str(budget)
    have = lambda arm, s: (folder / f"{arm}_s{s}.tif").is_file()  # noqa: E731
    core = [a for a in args.arms if a in ("mse", "spotlight")] or list(args.arms)
    seeds = [s for s in args.seeds if all(have(a, s) for a in core)]
    arms = [a for a in args.arms if seeds and all(have(a, s) for s in seeds)]
    return seeds, arms


def evaluate(budget: int, seeds: list, arms: list, args: argparse.Namespace, held: HeldOut) -> dict:
    """evaluate_models on the held-out predictions of the arms at one budget (seeds as volumes)."""
    import tifffile

    from spotlight_ops.evaluation import evaluate_models

    folder = args.out / "predictions" / str(budget)
    predictions = {arm: [tifffile.imread(folder / f"{arm}_s{s}.tif") for s in seeds] for arm in arms}
    out = args.out / f"evaluation_{budget}"
    rows = evaluate_models(predictions, [held.target] * len(seeds), None, out, rescale="none",
                           volume_names=[f"seed{s}" for s in seeds], progress=args.progress,
                           **({} if args.sweep else {"sweep_fractions": ()}))
    return {"rows": rows, "folder": out, "seeds": seeds, "arms": arms}


def plot_curves(curves: dict, held: HeldOut, args: argparse.Namespace, path: Path, prefix: str = "") -> None:
    """The held-out fraction above T and background mean over iterations; ``prefix="as_trained_"``: with the
    training's running BatchNorm averages instead of the recomputed statistics."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), constrained_layout=True)
    for arm in args.arms:
        for i, seed in enumerate(args.seeds):
            c = curves[arm].get(seed, {})
            if not c:
                continue
            its = sorted(c)
            kw = dict(color=ARM_COLORS[arm], lw=1.2, alpha=0.85, label=ARM_LABELS[arm] if i == 0 else None)
            its = [t for t in its if prefix + "fg_fraction" in c[t]]
            axes[0].plot(its, [100 * c[t][prefix + "fg_fraction"] for t in its], **kw)
            axes[1].plot(its, [c[t][prefix + "bg_mean"] for t in its], **kw)
    axes[0].axhline(100 * held.foreground.mean(), color="k", ls="--", lw=1, label="target")
    axes[1].axhline(float(held.target[~held.foreground].mean()), color="k", ls="--", lw=1, label="target")
    axes[0].set(xlabel="iteration", ylabel="held-out voxels predicted > T (%)", ylim=(0, 101))
    axes[1].set(xlabel="iteration", ylabel="mean prediction on target background")
    for ax in axes:
        ax.axvline(args.early, color="0.6", lw=0.8, ls=":")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="center right")
    weights = "running BatchNorm averages of training" if prefix else "BatchNorm statistics recomputed (as predicted)"
    if args.ema_decay:
        weights = ("last weights, " if prefix else f"weights averaged (ema {args.ema_decay:g}), ") + weights
    fig.suptitle(f"fnet_sample, held-out x >= {SPLIT_X}: seeds {', '.join(map(str, args.seeds))}; {weights}",
                 fontsize=9)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def shown(path: Path) -> str:
    """A path as the page shows it: relative to the checkout when inside it."""
    try:
        return str(Path(os.path.abspath(path)).relative_to(REPO))  # not resolve(): runs/ may be a link
    except ValueError:
        return str(path)


def _mean_sd(values: list) -> str:
    values = np.asarray(values, float)
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{values.mean():.3f} ± {values.std(ddof=1):.3f}"


def _machine() -> str:
    import torch

    from spotlight_ops.machine import cpu_model, load_average

    load = load_average()
    return (f"{platform.system()} {platform.machine()}, {cpu_model()}, {os.cpu_count()} logical CPUs (load average "
            f"{load[0] if load else float('nan'):.1f} when the page was written), Python {platform.python_version()}, "
            f"torch {torch.__version__}; each training on one thread (`num_threads=1`), CPU")


def write_page(args: argparse.Namespace, held: HeldOut, curves: dict, evaluations: dict, seconds: dict) -> None:
    docs = Path(args.docs)
    figures = docs.parent / "figures" / docs.stem  # one folder per page: pages of other settings keep theirs
    figures.mkdir(parents=True, exist_ok=True)
    plot_curves(curves, held, args, figures / "heldout_fraction.png")
    plot_curves(curves, held, args, figures / "heldout_fraction_as_trained.png", prefix="as_trained_")
    for budget, ev in evaluations.items():
        for name in ("histograms.png", "sweep.png"):
            if (ev["folder"] / name).is_file():
                shutil.copyfile(ev["folder"] / name, figures / f"{name[:-4]}_{budget}.png")
    rel = lambda p: os.path.relpath(p, docs.parent)  # noqa: E731
    target_fg, target_bg = float(held.foreground.mean()), float(held.target[~held.foreground].mean())
    budgets = sorted(evaluations)
    lines = [
        "# Real-data experiment: MSE and Spotlight on the Allen pair"
        + (f", written models averaged (`--ema-decay {args.ema_decay:g}`)" if args.ema_decay else ""),
        "",
        "Written by `benchmarks/real_data_experiment.py` (the whole page, numbers and figures; rerun it to",
        "regenerate). Command:",
        "",
        "```",
        " ".join(["python benchmarks/real_data_experiment.py"] + [a for a in args.argv if a != "--no-train"]),
        "```",
        "",
        f"- Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC. Machine: {_machine()}.",
        f"- Data: `fnet_sample` (one brightfield/Hoechst pair, 32 x 128 x 128, Allen Institute licence: read from",
        f"  `../shared/data`, never copied into the product). Train on x < {SPLIT_X} (32 x 128 x 96), predict and",
        f"  evaluate x >= {SPLIT_X} (32 x 128 x 32): a split in space of one cell field, not new cells.",
        "- Training (`spotlight_ops.training.train`): F-net depth 2, 8 channels, patches 16 x 32 x 32, batch 4,",
        f"  Adam lr 1e-3, betas (0.5, 0.999), seeds {', '.join(map(str, args.seeds))}, {args.iterations} iterations;",
        f"  the {args.early}-iteration numbers are the same runs' checkpoints at iteration {args.early}.",
        *([f"  Written models hold the moving average of the weights, `--ema-decay {args.ema_decay:g}`"
           " (docs/training.md, \"Weight averaging\")."] if args.ema_decay else []),
        "  Arms: " + ", ".join(ARM_TEXT[a] for a in args.arms) + ".",
        *(["- That command trains every run to the full budget; the runs on this page stopped earlier where "
           "listed below (the machine's time, not a choice of the method)."]
          if any(max(curves[a].get(s) or {0: 0}) < args.iterations for a in args.arms for s in args.seeds) else []),
        "- Runs on this page (iterations reached): " + ", ".join(
            f"`{arm}` seed {s} {max(curves[arm][s]) if curves[arm].get(s) else 0}" for arm in args.arms
            for s in args.seeds) + ".",
        "- Units: predictions and the held-out target are both Otsu-standardized (`(x - T) / std`, T = 0, the",
        "  held-out target with its own T and std), so metrics use `rescale=\"none\"`; foreground = target > T.",
        f"  The held-out target has {100 * target_fg:.1f} % of its voxels above T; its background mean is "
        f"{target_bg:.3f}.",
        "- Segmentation: the pair has no nuclei masks, so each prediction's Otsu + watershed segmentation is",
        "  scored against the **target's own** segmentation (docs/evaluation.md), not against ground truth.",
        "",
        "## Foreground fraction and background over iterations",
        "",
        f"![held-out foreground fraction and background mean]({rel(figures / 'heldout_fraction.png')})",
        "",
        f"Held-out part, every {args.eval_every} iterations, each seed a line; dashed: the target. Predicted as",
        "`spotlight predict` does: with the checkpoint's `inference_model`"
        + (", the moving average of the weights," if args.ema_decay else ",") + " whose BatchNorm statistics are",
        "recomputed over 32 training batches (`--bn-batches`, docs/training.md). The same checkpoints predicted",
        "with the " + ("last weights and the " if args.ema_decay else "")
        + "running averages that training leaves in the BatchNorm layers (momentum 0.1, batches of 4):",
        "",
        f"![the same with the running BatchNorm averages]({rel(figures / 'heldout_fraction_as_trained.png')})",
        "",
        *(["With those averages, one checkpoint can put most of the held-out part above T and the next one little",
           "of it, for MSE and the default alike; the same weights with recomputed statistics (the upper figure)",
           "swing far less, so most of that swing is the statistics' noise, not the weights'."]
          if not args.ema_decay else
          ["The upper figure's curves, from averaged weights with recomputed statistics, are the smoother ones;",
           "docs/training.md (\"Weight averaging\") separates the two effects."]),
        "",
    ]
    for budget in budgets:
        seeds, arms = evaluations[budget]["seeds"], evaluations[budget]["arms"]
        lines += [f"## After {budget} iterations", "",
                  f"Seeds {', '.join(map(str, seeds))}; arms {', '.join(f'`{a}`' for a in arms)}.", "",
                  "Held-out part, per seed: percentage of voxels predicted above T (target "
                  f"{100 * target_fg:.1f} %) and mean prediction over the target's background (target "
                  f"{target_bg:.3f}).", "",
                  "| arm | " + " | ".join(f"seed {s}: > T, bg mean" for s in seeds) + " |",
                  "|---|" + "---:|" * len(seeds)]
        for arm in arms:
            cells = [f"{100 * curves[arm][s][budget]['fg_fraction']:.1f} %, {curves[arm][s][budget]['bg_mean']:.3f}"
                     for s in seeds]
            lines.append(f"| {arm} | " + " | ".join(cells) + " |")
        lo = max(0, budget - WINDOW)
        lines += ["", f"The same, averaged over every evaluation in iterations {lo + 1}..{budget} and over the seeds "
                      "(what is left of the checkpoint-to-checkpoint swing is the weights' own, with Adam's betas (0.5, 0.999) on "
                      "batches of 4):", "",
                  "| arm | > T | bg mean | evaluations |", "|---|---:|---:|---:|"]
        for arm in arms:
            points = [v for s in seeds for it, v in curves[arm][s].items() if lo < it <= budget]
            lines.append(f"| {arm} | {100 * np.mean([p['fg_fraction'] for p in points]):.1f} % | "
                         f"{np.mean([p['bg_mean'] for p in points]):.3f} | {len(points)} |")
        lines += ["", "Evaluation package (`evaluate_models`, means ± sd over seeds; whole volume and foreground):",
                  ""]
        rows = [r for r in evaluations[budget]["rows"] if np.isnan(r.get("threshold_fraction", np.nan))]
        metrics = [("psnr", "PSNR"), ("psnr_fg", "PSNR fg"), ("ssim", "SSIM"), ("ssim_fg", "SSIM fg"),
                   ("pearson", "Pearson"), ("pearson_fg", "Pearson fg"), ("n_nuclei", "nuclei found"),
                   ("mean_ap", "mean AP vs target seg.")]
        metrics = [(k, n) for k, n in metrics if any(k in r for r in rows)]
        lines += ["| arm | " + " | ".join(n for _, n in metrics) + " |", "|---|" + "---:|" * len(metrics)]
        for arm in arms:
            mine = [r for r in rows if r["model"] == arm]
            lines.append(f"| {arm} | " + " | ".join(_mean_sd([r[k] for r in mine]) for k, _ in metrics) + " |")
        reference = [r["n_reference"] for r in rows if r.get("n_reference") is not None
                     and np.isfinite(float(r["n_reference"]))]
        if reference:
            lines += ["", f"The target's own segmentation (the reference) finds {_mean_sd(reference)} nuclei in the "
                          f"held-out crop (32 x 128 x 32 voxels, nuclei touching its lateral faces removed): a small "
                          f"reference, so the AP columns say little here."]
        lines.append("")
        for name, caption in (("histograms", "Voxel-intensity histograms (the paper's Figure 3a)"),
                              ("sweep", "Metrics against the threshold of the sweep (the paper's Figure 3b)")):
            if (figures / f"{name}_{budget}.png").is_file():
                lines += [f"{caption}, {budget} iterations:", "",
                          f"![{name} {budget}]({rel(figures / f'{name}_{budget}.png')})", ""]
        lines += [f"The evaluation package's own report: `{shown(args.out)}/evaluation_{budget}/report.md`.", ""]
    lines += ["## What the numbers say", ""] + verdict_lines(args, curves, target_fg, evaluations) + [""]
    if seconds:
        lines += [f"Training times (s, this machine, shared): " + ", ".join(f"{k} {v:.0f}" for k, v in
                                                                          sorted(seconds.items())) + ".", ""]
    docs.write_text("\n".join(lines))


def verdict_lines(args, curves, target_fg, evaluations) -> list:
    """Plain statements of the done criterion, from the numbers only."""
    out = []
    for arm in ("spotlight", "spotlight_paper"):
        for budget, ev in sorted(evaluations.items()):
            seeds = ev["seeds"]
            if arm not in ev["arms"] or "mse" not in ev["arms"]:
                continue
            closer = [abs(curves[arm][s][budget]["fg_fraction"] - target_fg)
                      < abs(curves["mse"][s][budget]["fg_fraction"] - target_fg) for s in seeds]
            darker = [curves[arm][s][budget]["bg_mean"] < curves["mse"][s][budget]["bg_mean"] for s in seeds]
            out.append(f"- `{arm}` against `mse` after {budget} iterations: foreground fraction closer to the "
                       f"target's for {sum(closer)} of {len(closer)} seeds, background darker for {sum(darker)} "
                       f"of {len(darker)}.")
        # every evaluation both runs of a seed reached (the same batches up to there): a paired count that
        # does not rest on one checkpoint
        if arm not in curves or "mse" not in curves:
            continue
        pairs = [(curves[arm][s][it], curves["mse"][s][it]) for s in args.seeds if curves[arm].get(s)
                 and curves["mse"].get(s) for it in sorted(set(curves[arm][s]) & set(curves["mse"][s]))]
        if len(pairs) >= 2:
            closer = sum(abs(a["fg_fraction"] - target_fg) < abs(m["fg_fraction"] - target_fg) for a, m in pairs)
            darker = sum(a["bg_mean"] < m["bg_mean"] for a, m in pairs)
            gap = np.array([abs(a["fg_fraction"] - target_fg) - abs(m["fg_fraction"] - target_fg) for a, m in pairs])
            bg = np.array([a["bg_mean"] - m["bg_mean"] for a, m in pairs])
            out.append(f"- `{arm}` against `mse` at every evaluation both reached ({len(pairs)} pairs over the seeds): "
                       f"closer at {closer}, darker at {darker}; distance to the target's fraction minus MSE's "
                       f"{100 * gap.mean():+.1f} ± {100 * gap.std(ddof=1) / np.sqrt(len(gap)):.1f} points (mean ± "
                       f"standard error; negative: closer), background mean minus MSE's {bg.mean():+.3f} ± "
                       f"{bg.std(ddof=1) / np.sqrt(len(bg)):.3f} (consecutive evaluations of a run are correlated, so these "
                       f"errors are lower bounds).")
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "real_data_experiment")
    parser.add_argument("--docs", default=str(REPO / "docs" / "experiments.md"), help="page to write")
    parser.add_argument("--iterations", type=int, default=1500)
    parser.add_argument("--early", type=int, default=300, help="the earlier budget, from the same runs")
    parser.add_argument("--eval-every", type=int, default=50, help="iterations between held-out predictions")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    parser.add_argument("--ema-decay", type=float, default=0.0,
                        help="weight average of the written models (TrainConfig.ema_decay; default 0: the last weights)")
    parser.add_argument("--no-sweep", dest="sweep", action="store_false", help="skip the threshold sweep")
    parser.add_argument("--progress", action="store_true", help="progress bars of the trainings")
    parser.add_argument("--no-train", dest="train", action="store_false",
                        help="train nothing: evaluate and write the page from the runs in --out")
    args = parser.parse_args(argv)
    args.argv = argv
    source = find_data()
    if source is None:
        print("real_data_experiment: skipped: fnet_sample not found (put shared/data beside the checkout or set "
              "SPOTLIGHT_DATA to the folder holding fnet_sample/)")
        return 0
    if not 0 < args.early <= args.iterations:
        parser.error("--early must lie in 1..--iterations")
    import torch

    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    paths = split(source, args.out)
    held = HeldOut(paths)
    curves, seconds = {}, {}
    for seed in args.seeds:
        for arm in args.arms:
            run_dir = args.out / "runs" / f"{arm}_s{seed}"
            if args.train:
                print(f"training {arm}, seed {seed}, {args.iterations} iterations", flush=True)
                curves.setdefault(arm, {})[seed] = train_arm(arm, seed, paths, held, args)
            else:
                saved = json.loads((run_dir / "heldout.json").read_text()) if (run_dir / "heldout.json").is_file() \
                    else {}
                curves.setdefault(arm, {})[seed] = {int(k): v for k, v in saved.items()}
            if (run_dir / "seconds.txt").is_file():
                seconds[f"{arm}_s{seed}"] = float((run_dir / "seconds.txt").read_text())
    evaluations = {}
    for budget in sorted({args.early, args.iterations}):
        seeds, arms = budget_runs(budget, args)
        if seeds:
            evaluations[budget] = evaluate(budget, seeds, arms, args, held)
        else:
            print(f"no seed has every arm's prediction at iteration {budget}: not evaluated", flush=True)
    write_page(args, held, curves, evaluations, seconds)
    print(f"wrote {args.docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
