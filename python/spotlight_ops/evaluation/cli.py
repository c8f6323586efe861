"""``spotlight evaluate``: the paper's evaluation of virtual stains from TIFF files.

Examples::

    spotlight evaluate --target t1.tif,t2.tif --pred mse=m1.tif,m2.tif \\
        --pred spotlight=s1.tif,s2.tif --masks k1.tif,k2.tif --out report/
    spotlight evaluate --csv runs.csv --out report/   # model,path_prediction,path_target[,path_mask]
    python -m spotlight_ops.evaluation.cli ...       # the same, standalone

Writes ``metrics.csv``, PNG plots and ``report.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

DESCRIPTION = (
    "Evaluate virtual stains against real fluorescence: PSNR/SSIM/MicroSSIM/Pearson (whole volume and "
    "Otsu foreground), FRC resolution, Otsu+watershed segmentation AP against instance masks, nucleus "
    "morphology, and the threshold sweep; writes metrics.csv, PNG plots and report.md."
)


def _paths(text: str) -> list[Path]:
    from .inputs import split_paths

    try:
        return split_paths(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def _fractions(text: str) -> tuple[float, ...]:
    if text.strip().lower() in ("", "none", "off"):
        return ()
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"--sweep-fractions: expected numbers like 0.05,0.1, got {text!r}") from err


def _labels(text: str) -> tuple[str, ...]:
    labels = tuple(item.strip() for item in text.split(","))
    if any(not label for label in labels):
        raise argparse.ArgumentTypeError(f"--training-seeds: empty label in {text!r}")
    return labels


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of ``evaluate`` on any parser (the subcommand or the standalone one)."""
    io = p.add_argument_group("inputs and output")
    io.add_argument("--pred", action="append", default=[], metavar="NAME=A.tif[,B.tif...]",
                    help="one model's predicted volumes, in the order of --target; repeat for each model")
    io.add_argument("--target", type=_paths, action="extend", default=[], metavar="A.tif[,B.tif...]",
                    help="real fluorescence volumes (comma-separated or repeated; a 4D TIFF counts as N volumes)")
    io.add_argument("--masks", type=_paths, action="extend", default=None, metavar="A.tif[,B.tif...]",
                    help="ground-truth nuclei: instance labels, or binary masks split by connected components")
    io.add_argument("--seeds", type=_paths, action="extend", default=None, metavar="A.tif[,B.tif...]",
                    help="nucleus-centre seeds splitting binary --masks by a seeded watershed")
    io.add_argument("--csv", type=Path, help="long-format CSV: model,path_prediction,path_target[,path_mask]")
    io.add_argument("--out", type=Path, required=True, help="output folder")

    units = p.add_argument_group("units (docs/evaluation.md: the defaults fit predictions of `spotlight predict`)")
    units.add_argument("--target-norm", choices=("otsu", "none"), default="otsu",
                       help="targets Otsu-standardized as in training (default), or used as given")
    units.add_argument("--prediction-units", choices=("auto", "target", "standardized", "zscored"), default="auto",
                       help="predictions in the targets' own units, in the Otsu-standardized ones of `spotlight "
                            "predict`, in z-scored ones (a model trained with target_norm zscore), or auto (default): "
                            "target or standardized, whichever fits the targets plainly better, else an error")
    units.add_argument("--smooth-threshold", action="store_true",
                       help="targets' Otsu T from their median(5)+Gaussian(5) copy (if the model was trained so)")
    units.add_argument("--rescale", choices=("none", "range", "minmax", "affine"), default="none",
                       help="how predictions reach the target's scale (default %(default)s; range: the paper's)")
    units.add_argument("--target-range", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                       help="--rescale range: min and max of the combined training targets")
    units.add_argument("--training-run", type=Path, default=None,
                       help="--rescale range: read the combined training targets' range from this run folder")

    metrics = p.add_argument_group("pixel metrics and FRC")
    metrics.add_argument("--frc-bin-delta", type=int, default=5, help="FRC ring width in pixels (default %(default)s)")
    metrics.add_argument("--frc-threshold", choices=("one-seventh", "half-bit"), default="one-seventh")
    metrics.add_argument("--pixel-size", type=float, default=1.0, help="XY pixel size: FRC resolution unit")
    metrics.add_argument("--bg-percentile", type=float, default=3.0, help="MicroSSIM background percentile")

    seg = p.add_argument_group("segmentation (Otsu + watershed; tuned on the targets when masks are given)")
    seg.add_argument("--tune-segmentation", action=argparse.BooleanOptionalAction, default=None,
                     help="tune the segmentation on the targets against --masks and freeze it for every model "
                          "(default: on when masks are given); the flags below are its base, or the segmentation "
                          "itself with --no-tune-segmentation")
    seg.add_argument("--downsample", type=int, choices=(1, 2), default=1,
                     help="2: segment at half resolution, labels upsampled back (the paper's choice)")
    seg.add_argument("--spacing", type=float, nargs=3, default=(1.0, 1.0, 1.0), metavar=("Z", "Y", "X"),
                     help="voxel size for the distance transform, seeds and morphology")
    seg.add_argument("--no-clahe", dest="clahe", action="store_false", help="skip CLAHE")
    seg.add_argument("--clahe-clip-limit", type=float, default=0.01)
    seg.add_argument("--clahe-kernel-size", type=int, nargs=3, default=None, metavar=("Z", "Y", "X"))
    seg.add_argument("--smoothing-sigma", type=float, default=1.0)
    seg.add_argument("--threshold-correction", type=float, default=1.0, help="factor on the Otsu threshold")
    seg.add_argument("--footprint", type=float, default=9.0, help="seed-finding box, physical units per axis")
    seg.add_argument("--min-volume", type=int, default=100, help="smallest nucleus kept (voxels)")
    seg.add_argument("--max-volume", type=int, default=None, help="largest nucleus kept (voxels)")
    seg.add_argument("--clear-border", choices=("xy", "all", "none"), default="xy")
    seg.add_argument("--cellpose-model", type=Path, default=None,
                     help="local Cellpose model file: also segment with Cellpose (needs the cellpose package)")
    seg.add_argument("--cellpose-diameter", type=float, default=None)

    rest = p.add_argument_group("sweep and report")
    rest.add_argument("--sweep-fractions", type=_fractions, default=None, metavar="F1,F2,...",
                      help="thresholds as fractions of the target range ('none' to skip; default 0.02..0.3)")
    rest.add_argument("--no-morphology", dest="morphology", action="store_false", help="skip nucleus features")
    rest.add_argument("--no-plots", dest="plots", action="store_false", help="skip the PNG figures")
    rest.add_argument("--psnr-tolerance", type=float, default=1.0, help="'about equal' foreground PSNR, in dB")
    rest.add_argument("--training-seeds", type=_labels, default=None, metavar="S1,S2,...",
                      help="per target volume, the training run (seed) whose models predicted it; several seeds are "
                           "resampled by the bootstrap too")
    rest.add_argument("--bootstrap-resamples", type=int, default=9999,
                      help="resamples of the differences' intervals (default %(default)s)")
    rest.add_argument("--confidence", type=float, default=0.95, help="the intervals' confidence level")
    rest.add_argument("--bootstrap-seed", type=int, default=0, help="seed of the intervals' draws (reproducible)")
    rest.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bar")
    return p


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers ``evaluate`` on the ``spotlight`` command's subparsers."""
    p = subparsers.add_parser("evaluate", help="evaluate predicted volumes against targets (report.md, CSV, PNGs)",
                              description=DESCRIPTION)
    add_arguments(p)
    p.set_defaults(handler=run)
    return p


def _load(args: argparse.Namespace):
    from .inputs import from_csv, from_specs, read_all
    from .instances import to_instances

    if args.csv is not None:
        if args.pred or args.target or args.masks:
            raise ValueError("give either --csv or --pred/--target/--masks, not both")
        inputs = from_csv(args.csv)
    else:
        if not args.target:
            raise ValueError("give --target (the real fluorescence volumes) or --csv")
        inputs = from_specs(args.pred, args.target, args.masks)
    if args.seeds is not None:
        if inputs.masks is None:
            raise ValueError("--seeds splits --masks; give --masks too")
        seeds = read_all(args.seeds, "--seeds")[0]
        if len(seeds) != len(inputs.masks):
            raise ValueError(f"--seeds: {len(seeds)} volume(s) for {len(inputs.masks)} mask volume(s)")
        inputs.masks = [to_instances(m, s, args.spacing) for m, s in zip(inputs.masks, seeds)]
    return inputs


def options_from_args(args: argparse.Namespace) -> dict:
    """The ``evaluate_models`` keyword options named by the command line."""
    from .sweep import DEFAULT_FRACTIONS

    options = {
        "target_norm": args.target_norm,
        "prediction_units": args.prediction_units,
        "smooth_threshold": args.smooth_threshold,
        "rescale": args.rescale,
        "target_range": tuple(args.target_range) if args.target_range else None,
        "training_run": args.training_run,
        "tune_segmentation": args.tune_segmentation,
        "frc_bin_delta": args.frc_bin_delta,
        "frc_threshold": args.frc_threshold,
        "pixel_size": args.pixel_size,
        "bg_percentile": args.bg_percentile,
        "segmentation": {
            "spacing": tuple(args.spacing),
            "clahe": args.clahe,
            "clahe_kernel_size": tuple(args.clahe_kernel_size) if args.clahe_kernel_size else None,
            "clahe_clip_limit": args.clahe_clip_limit,
            "smoothing_sigma": args.smoothing_sigma,
            "threshold_correction": args.threshold_correction,
            "footprint": args.footprint,
            "min_volume": args.min_volume,
            "max_volume": args.max_volume,
            "clear_border": args.clear_border,
            "downsample": args.downsample,
        },
        "cellpose_model": args.cellpose_model,
        "cellpose_diameter": args.cellpose_diameter,
        "sweep_fractions": DEFAULT_FRACTIONS if args.sweep_fractions is None else args.sweep_fractions,
        "morphology": args.morphology,
        "plots": args.plots,
        "psnr_tolerance_db": args.psnr_tolerance,
        "training_seeds": args.training_seeds,
        "bootstrap_resamples": args.bootstrap_resamples,
        "confidence_level": args.confidence,
        "bootstrap_seed": args.bootstrap_seed,
        "progress": args.progress,
    }
    return options


def run(args: argparse.Namespace) -> int:
    """Runs the evaluation; returns 0, or 2 with a one-line error for bad inputs."""
    import matplotlib

    matplotlib.use("Agg")
    from .evaluate import run_evaluation

    try:
        inputs = _load(args)
        options = options_from_args(args)
        evaluation = run_evaluation(inputs.predictions, inputs.targets, inputs.masks, args.out,
                                    volume_names=inputs.names, **options)
    except (ValueError, TypeError, FileNotFoundError) as err:
        print(f"spotlight evaluate: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.out / 'report.md'}, {args.out / 'metrics.csv'} ({len(evaluation.rows)} rows)")
    for line in evaluation.pattern.lines:
        print(line)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry point: ``python -m spotlight_ops.evaluation.cli [options]``."""
    parser = argparse.ArgumentParser(prog="python -m spotlight_ops.evaluation.cli", description=DESCRIPTION)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
