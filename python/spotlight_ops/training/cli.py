"""``spotlight train``: flags for every :class:`TrainConfig` key, a YAML ``--config``, ``--resume``.

Errors propagate to the ``spotlight`` command, which prints them as one line (:mod:`spotlight_ops.cli`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import defaults
from ..data.plates import field_path_argument
from ..presets import PRESETS, TRAINED
from .config import TrainConfig, build_config, config_from_checkpoint, read_yaml, stored_config_keys


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _auto_bool(text: str):
    return "auto" if text.strip().lower() == "auto" else _bool(text)


def add_loss_options(p: argparse.ArgumentParser) -> None:
    """--preset and a flag for every option of the Spotlight loss (spotlight_ops.loss), each the preset's
    unless given."""
    trained = {**{n: defaults.LOSS_DEFAULTS[n] for n in defaults.OPTIONS}, **PRESETS[TRAINED]}
    # No argparse choices or types here: every value reaches the loss's own checks (TrainConfig), whose
    # errors are one line and the same as the library's.
    p.add_argument("--preset", metavar="{" + ",".join(PRESETS) + "}",
                   help=f"the Spotlight loss's option set (spotlight_ops.presets; default {TRAINED}: lam "
                        f"{trained['lam']}, k {trained['k']}, mse_term {trained['mse_term']}, T = "
                        f"{trained['threshold']} on Otsu-standardized targets; spotlight: the paper's loss)")
    for name, kind in defaults.OPTIONS.items():
        flag = "--" + name.replace("_", "-")
        what = f"{defaults.OPTION_HELP[name]} (default: the preset's; {TRAINED}: {trained[name]})"
        if kind is bool:
            p.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, help=what)
        elif kind is str:
            p.add_argument(flag, dest=name, metavar="{" + ",".join(defaults.CHOICES[name]) + "}", help=what)
        else:
            p.add_argument(flag, dest=name, metavar=name.upper(), help=what)


def add_parser(subparsers) -> argparse.ArgumentParser:
    d = TrainConfig()
    p = subparsers.add_parser(
        "train", help="train an F-net with the MSE or Spotlight loss",
        description="Train F-net on a CSV manifest of (signal, target) pairs or on an HCS OME-Zarr plate, with as "
                    "many input and output channels as the data have. Defaults: F-net's and the "
                    "Spotlight paper's training hyperparameters (Adam, lr, betas, patches), and the loss that trains "
                    "on the project's real data (the preset 'trained': lam * MSE + (1 - lam) * Dice with the MSE over "
                    "every voxel, T = 0 on Otsu-standardized targets; the paper's loss, which collapses there, is "
                    "--preset spotlight or --mse-term masked; docs/collapse.md). Values come from the defaults, then "
                    "--config YAML, then flags.")
    p.add_argument("--config", help="YAML file whose keys are the long flag names with underscores")
    p.add_argument("--train-csv", dest="train_csv",
                   help="manifest CSV: path_signal,path_target[,path_mask], further channels as path_signal_2, "
                        "path_target_2, ... (docs/data.md)")
    p.add_argument("--train-plate", dest="train_plate",
                   help="an HCS OME-Zarr plate to train on instead of a manifest (with --signal-channels and "
                        "--target-channels)")
    p.add_argument("--signal-channels", dest="signal_channels", nargs="+", metavar="NAME",
                   help="the plate's signal channels, by name (the F-net's input channels)")
    p.add_argument("--target-channels", dest="target_channels", nargs="+", metavar="NAME",
                   help="the plate's target channels, by name (the F-net's output channels)")
    p.add_argument("--fields", nargs="+", metavar="ROW/COL/FIELD", type=field_path_argument,
                   help="the plate's fields of view to train on (default: all)")
    p.add_argument("--stored-masks", dest="stored_masks", action=argparse.BooleanOptionalAction,
                   help="--stored-masks: any masks stored with the pairs (a manifest's path_mask too, e.g. "
                        "ground-truth labels) are the Spotlight loss's mask; --no-stored-masks: none, M = Y > T "
                        "(default: the masks spotlight preprocess stored, when every pair has them; the start "
                        "line says which)")
    p.add_argument("--out", dest="out_dir", help="run folder (config.yaml, log.csv, checkpoints/, model.pt)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its latest intact checkpoint (its config.yaml is the base "
                        "config unless --config is given)")
    p.add_argument("--loss", choices=["mse", "spotlight"], help=f"training loss (default {d.loss})")
    add_loss_options(p)
    p.add_argument("--lr", type=float, help=f"Adam learning rate (default {d.lr})")
    p.add_argument("--betas", type=float, nargs=2, help=f"Adam betas (default {d.betas[0]} {d.betas[1]})")
    p.add_argument("--batch-size", dest="batch_size", type=int, help=f"global batch (default {d.batch_size})")
    p.add_argument("--patch-size", dest="patch_size", type=int, nargs=3, metavar=("Z", "Y", "X"),
                   help="patch size (default 32 64 64)")
    p.add_argument("--iterations", type=int, help=f"training iterations (default {d.iterations})")
    p.add_argument("--depth", type=int, help=f"F-net depth (default {d.depth})")
    p.add_argument("--base-channels", dest="base_channels", type=int, help=f"F-net width (default {d.base_channels})")
    p.add_argument("--checkpoint-every", dest="checkpoint_every", type=int,
                   help=f"iterations between checkpoints (default {d.checkpoint_every})")
    p.add_argument("--log-every", dest="log_every", type=int, help=f"iterations between log rows (default {d.log_every})")
    p.add_argument("--seed", type=int, help=f"random seed, in [0, 2**64 - 1] (default {d.seed})")
    p.add_argument("--voxel-size", dest="voxel_size", type=float, nargs=3, metavar=("Z", "Y", "X"),
                   help="input voxel size; resample to isotropic voxels")
    p.add_argument("--isotropic-voxel-size", dest="isotropic_voxel_size", type=float,
                   help="voxel size after resampling (default: the smallest of --voxel-size)")
    p.add_argument("--target-norm", dest="target_norm", choices=["otsu", "zscore"],
                   help="target standardization (default otsu: (x - T) / std)")
    p.add_argument("--smooth-threshold", dest="smooth_threshold", action=argparse.BooleanOptionalAction,
                   help="choose Otsu T on a median(5)+Gaussian(5) smoothed copy (default false)")
    p.add_argument("--crop-multiple", dest="crop_multiple", type=int, help="crop volumes to a multiple (default 16)")
    p.add_argument("--min-foreground-fraction", dest="min_foreground_fraction", type=float,
                   help="minimum foreground fraction per patch (default 0.001)")
    p.add_argument("--max-retries", dest="max_retries", type=int, help="patch positions tried per image (default 1000)")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--amp", type=_auto_bool, help="mixed precision on CUDA: auto, true, false (default auto)")
    p.add_argument("--amp-dtype", dest="amp_dtype", choices=["bfloat16", "float16"], help="autocast dtype")
    p.add_argument("--deterministic", action=argparse.BooleanOptionalAction,
                   help="use deterministic algorithms (default false)")
    p.add_argument("--num-threads", dest="num_threads", type=int, help="torch CPU threads")
    p.add_argument("--sync-batchnorm", dest="sync_batchnorm", action=argparse.BooleanOptionalAction,
                   help="SyncBatchNorm under DDP")
    p.add_argument("--lr-schedule", dest="lr_schedule", choices=["constant", "cosine"],
                   help=f"learning-rate schedule after the warm-up (default {d.lr_schedule}, the paper's)")
    p.add_argument("--warmup-iterations", dest="warmup_iterations", type=int,
                   help=f"iterations of linear warm-up from 0 to --lr (default {d.warmup_iterations})")
    p.add_argument("--min-lr", dest="min_lr", type=float,
                   help=f"learning rate at the end of the cosine schedule (default {d.min_lr})")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, help="show a progress bar (default: shown)")
    p.add_argument("--tensorboard", type=_auto_bool, help="TensorBoard logging: auto, true, false")
    p.add_argument("--val-csv", dest="val_csv", help="manifest of held-out validation pairs")
    p.add_argument("--val-plate", dest="val_plate",
                   help="an HCS plate of held-out validation pairs (the --signal-channels and --target-channels)")
    p.add_argument("--val-fields", dest="val_fields", nargs="+", metavar="ROW/COL/FIELD", type=field_path_argument,
                   help="the validation plate's fields of view (default: all)")
    p.add_argument("--val-fraction", dest="val_fraction", type=float,
                   help="hold out this fraction of the training manifest instead (seeded split; default 0)")
    p.add_argument("--val-every", dest="val_every", type=int, help=f"iterations between validations (default {d.val_every})")
    p.add_argument("--val-patches", dest="val_patches", type=int,
                   help=f"fixed validation patches (default {d.val_patches})")
    p.add_argument("--bn-batches", dest="bn_batches", type=int,
                   help=f"training batches over which a written model's BatchNorm statistics are recomputed, so "
                        f"predictions do not swing with the last batches' running averages; 0 keeps those "
                        f"(default {d.bn_batches})")
    p.add_argument("--ema-decay", dest="ema_decay", type=float,
                   help=f"decay of the moving average of the weights that written models hold, so predictions do "
                        f"not swing with the last steps; 0 writes the last weights (default {d.ema_decay})")
    p.add_argument("--augment", choices=["none", "yx", "zyx"],
                   help="random flips and quarter turns in YX (yx), and z flips (zyx); default none")
    p.add_argument("--buffer-size", dest="buffer_size", type=int,
                   help="volumes held in memory at once, read lazily (default 0: all of them)")
    p.add_argument("--buffer-switch-every", dest="buffer_switch_every", type=int,
                   help=f"iterations between replacing one buffered volume (default {d.buffer_switch_every})")
    p.add_argument("--stats-cache", dest="stats_cache",
                   help="JSON cache of per-volume statistics (default RUN/preprocess_stats.json)")
    p.set_defaults(handler=run)
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Defaults < YAML < flags; ``--resume`` without ``--config`` starts from the run's own config.yaml,
    or, when that is missing or damaged, from the config stored in the run's newest intact checkpoint."""
    overrides = {name: getattr(args, name) for name in TrainConfig.field_names() if hasattr(args, name)}
    if args.config is not None or not (getattr(args, "resume", False) and args.out_dir):
        return build_config(args.config, overrides)
    saved = Path(args.out_dir) / "config.yaml"
    try:
        if not saved.is_file():
            raise ValueError(f"{saved}: config file not found")
        config = build_config(saved, overrides, stored_run=True)
        missing = sorted(set(TrainConfig.field_names()) - set(read_yaml(saved)))
        if missing:  # spotlight writes every key: a file without some is torn (or from an older version)
            stored = stored_config_keys(Path(args.out_dir) / "checkpoints")
            lost = [key for key in missing if key in stored]
            if lost:
                raise ValueError(f"{saved}: incomplete, without {', '.join(lost[:4])}"
                                 f"{' ...' if len(lost) > 4 else ''} (torn by a crash?)")
        return config
    except ValueError as err:
        fallback = config_from_checkpoint(Path(args.out_dir) / "checkpoints", overrides)
        if fallback is None:
            if saved.is_file():
                raise
            return build_config(None, overrides)  # a fresh folder: --resume starts from scratch
        print(f"WARNING: {err}; using the config stored in the run's checkpoint instead "
              f"(config.yaml is rewritten from it)", file=sys.stderr)
        return fallback


def run(args: argparse.Namespace) -> int:
    from .trainer import Stopped, train

    config = config_from_args(args)
    try:
        result = train(config, resume=args.resume)
    except Stopped as stop:
        print(f"spotlight train: {stop}", file=sys.stderr)
        return stop.exit_code
    if not result.already_finished and result.model_path is not None:
        print(f"Finished {result.iteration} iterations; model written to {result.model_path}")
    return 0
