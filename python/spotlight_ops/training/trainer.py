r"""The training loop: F-net on foreground-aware random patches, MSE or Spotlight loss.

Per iteration: draw a batch of patches (:class:`~spotlight_ops.data.PatchSampler`), predict,
compute the loss in float32 (``mse``: ``mean((P - Y)^2)``; ``spotlight``: ``lam * MSE + (1 - lam) * Dice``,
the MSE over every voxel (``mse_term="plain"``, the default, docs/collapse.md) or over the foreground
(``"masked"``: the paper's MMSE), with ``threshold=0.0`` on Otsu-standardized targets),
step Adam, log, and every ``checkpoint_every`` iterations write a checkpoint.

A checkpoint holds the model, the optimizer, the AMP grad scaler, the RNG states of Python,
numpy and torch and the sampler state of every process, and the iteration, so ``resume=True``
continues exactly: the losses after a resume equal those of an uninterrupted run (bit for bit
on CPU with the same thread count). Runs under ``torchrun`` use DistributedDataParallel; the
global ``batch_size`` is split evenly over the processes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn

from ..data import PatchSampler, load_pairs
from ..models import FNet
from . import distributed as D
from .checkpoint import CheckpointError, CheckpointManager, save_atomic
from .config import TrainConfig, write_yaml
from .log import LossLog
from .monitor import FRACTION_COLUMNS, CollapseMonitor, collapse_hint, foreground_fractions
from .rng import capture_rng_state, restore_rng_state, seed_everything

FORMAT_VERSION = 1


@dataclass
class TrainResult:
    """Where a run ended: ``iteration`` reached, the run folder, the final model file (when finished)."""

    run_dir: Path
    iteration: int
    finished: bool
    already_finished: bool = False
    model_path: Optional[Path] = None
    last_loss: Optional[float] = None


def make_criterion(config: TrainConfig) -> Callable:
    """``criterion(pred, target)`` of the configured loss, on float32 tensors."""
    if config.loss == "mse":
        return nn.functional.mse_loss
    import spotlight_ops

    # Otsu-standardized targets put the foreground at > 0 (SPEC 6), so no histogram per batch
    threshold = 0.0 if config.target_norm == "otsu" else None
    if config.mse_term == "masked":  # the paper: lam * MMSE (foreground voxels) + (1 - lam) * Dice
        return lambda pred, target: spotlight_ops.loss(pred, target, threshold=threshold, lam=config.lam, k=config.k)
    # lam * MSE over every voxel + (1 - lam) * Dice: the background keeps a gradient where the soft Dice's
    # vanishes, and no term pulls the foreground alone (docs/collapse.md)
    return lambda pred, target: (config.lam * nn.functional.mse_loss(pred, target) + (1.0 - config.lam)
                                 * spotlight_ops.loss(pred, target, threshold=threshold, lam=0.0, k=config.k))


def _amp_settings(config: TrainConfig, device: torch.device) -> tuple:
    """(enabled, dtype): autocast only ever on CUDA."""
    enabled = device.type == "cuda" and config.amp in ("auto", True)
    if config.amp is True and device.type != "cuda":
        print("WARNING: amp=true ignored: mixed precision is used on CUDA only", file=sys.stderr)
    dtype = torch.bfloat16 if config.amp_dtype == "bfloat16" else torch.float16
    if enabled and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        dtype = torch.float16
    return enabled, dtype


def _resume_payload(config: TrainConfig, manager: CheckpointManager, ctx: D.DistContext) -> Optional[dict]:
    """Rank 0 picks the newest intact checkpoint; every rank loads that same file."""
    path = None
    if ctx.is_main:
        try:
            payload, path = manager.load_for_resume()
        except CheckpointError as err:
            path = err
        else:
            path = str(path) if path is not None else None
    path = D.broadcast_object(path, ctx)
    if isinstance(path, CheckpointError):
        raise path
    if path is None:
        return None
    if not ctx.is_main:
        from .checkpoint import load_checkpoint

        payload = load_checkpoint(path)
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {payload.get('format_version')} is not the supported "
                              f"{FORMAT_VERSION}")
    saved = TrainConfig.from_dict(payload["config"], f"{path} (config)")
    changed = config.differences(saved)
    if changed:
        details = ", ".join(f"{k}: checkpoint {saved.to_dict()[k]!r} vs now {config.to_dict()[k]!r}" for k in changed)
        raise ValueError(f"cannot resume {path} with a different config ({details}); only "
                         f"iterations, checkpoint_every, log_every, device, progress, tensorboard, num_threads "
                         f"may change")
    payload["_path"] = path
    return payload


def train(config: TrainConfig, resume: bool = False,
          on_iteration: Optional[Callable[[int, float], None]] = None) -> TrainResult:
    """Trains (or resumes) the run described by ``config``; see the module docstring.

    ``on_iteration(iteration, loss)`` is called after each iteration (and its checkpoint).
    Resuming a finished run prints so and returns ``already_finished=True``.
    """
    if not config.train_csv:
        raise ValueError("train_csv is required (the manifest CSV of training pairs)")
    if not config.out_dir:
        raise ValueError("out_dir is required (the run folder for logs and checkpoints)")
    ctx = D.init_distributed(config.device)
    threads = torch.get_num_threads()
    try:
        return _train(config, resume, on_iteration, ctx)
    except BaseException as err:
        # _train's finished frames, kept alive by the traceback, hold the DDP model, whose reducer
        # holds the process group. Free them now, while the group exists: dying later, after
        # destroy_process_group, a gloo group's destructor can block forever joining its threads
        # (seen with torch 2.11 when on_iteration raised in both processes).
        traceback.clear_frames(err.__traceback__)
        raise
    finally:
        torch.set_num_threads(threads)  # num_threads is this run's setting, not the caller's
        D.shutdown(ctx)


def _train(config: TrainConfig, resume: bool, on_iteration, ctx: D.DistContext) -> TrainResult:
    run_dir = Path(config.out_dir)
    manager = CheckpointManager(run_dir / "checkpoints")
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    if config.batch_size % ctx.world_size:
        raise ValueError(f"batch_size {config.batch_size} must be divisible by the number of processes "
                         f"{ctx.world_size}")

    payload = None
    if resume:
        payload = _resume_payload(config, manager, ctx)
        if payload is None and ctx.is_main:
            print(f"No checkpoint in {manager.folder}; starting from scratch.", file=sys.stderr)
        elif payload is not None and payload["iteration"] >= config.iterations:
            if ctx.is_main:
                print(f"Run {run_dir} already finished (iteration {payload['iteration']} of {config.iterations}); "
                      f"nothing to do.")
            return TrainResult(run_dir, payload["iteration"], True, already_finished=True,
                               model_path=run_dir / "model.pt" if (run_dir / "model.pt").exists() else None)
    elif manager.exists():
        raise FileExistsError(f"{run_dir} already holds checkpoints of a run; pass --resume to continue it "
                              f"or choose another output folder")
    if ctx.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_yaml(config, run_dir / "config.yaml")

    if config.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    if ctx.device.type == "cuda":
        torch.backends.cudnn.benchmark = not config.deterministic

    pairs = load_pairs(config.train_csv, config.preprocess(), progress=config.progress and ctx.is_main)
    seed_everything(config.seed)  # the same initial weights on every process
    model = FNet(depth=config.depth, base_channels=config.base_channels).to(ctx.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=config.betas)
    amp_enabled, amp_dtype = _amp_settings(config, ctx.device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_enabled and amp_dtype == torch.float16)
    sampler = PatchSampler(pairs, config.patch_size, config.batch_size // ctx.world_size, seed=config.seed,
                           rank=ctx.rank, min_foreground_fraction=config.min_foreground_fraction,
                           max_retries=config.max_retries)
    start = 0
    if payload is not None:
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        scaler.load_state_dict(payload["scaler"])
        start = int(payload["iteration"])
        if payload["world_size"] == ctx.world_size:
            sampler.load_state_dict(payload["sampler"][ctx.rank])
            restore_rng_state(payload["rng"][ctx.rank])
        else:  # a different process count cannot replay the same streams: fresh ones, still seeded
            if ctx.is_main:
                print(f"WARNING: resuming with {ctx.world_size} processes instead of {payload['world_size']}: "
                      f"patch sampling continues with new random streams", file=sys.stderr)
            sampler = PatchSampler(pairs, config.patch_size, config.batch_size // ctx.world_size,
                                   seed=config.seed + 7919 * start, rank=ctx.rank,
                                   min_foreground_fraction=config.min_foreground_fraction,
                                   max_retries=config.max_retries)
        if ctx.is_main:
            print(f"Resuming {run_dir} from {payload['_path']} at iteration {start}.", file=sys.stderr)

    if ctx.distributed:
        if config.sync_batchnorm:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model = nn.parallel.DistributedDataParallel(model, device_ids=[ctx.device] if ctx.device.type == "cuda"
                                                    else None)
    bare_model = model.module if ctx.distributed else model
    criterion = make_criterion(config)
    autocast = (lambda: torch.autocast("cuda", dtype=amp_dtype)) if amp_enabled else contextlib.nullcontext

    def checkpoint_payload(iteration: int) -> dict:
        rng_states = D.all_gather_objects(capture_rng_state(), ctx)
        sampler_states = D.all_gather_objects(sampler.state_dict(), ctx)
        return {"format_version": FORMAT_VERSION, "iteration": iteration, "config": config.to_dict(),
                "model_config": bare_model.config(), "model": bare_model.state_dict(),
                "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), "rng": rng_states,
                "sampler": sampler_states, "world_size": ctx.world_size,
                "preprocess": dataclasses.asdict(config.preprocess())}

    log = LossLog(run_dir, start, config.tensorboard, columns=FRACTION_COLUMNS) if ctx.is_main else None
    fraction_threshold = 0.0 if config.target_norm == "otsu" else None  # the loss's T (make_criterion)
    monitor = CollapseMonitor(hint=collapse_hint(config))
    from tqdm import tqdm

    bar = tqdm(total=config.iterations, initial=start, unit="it", dynamic_ncols=True, desc=f"train {config.loss}",
               disable=not (config.progress and ctx.is_main))
    loss_value = None
    model.train()
    try:
        for iteration in range(start + 1, config.iterations + 1):
            signal_np, target_np = sampler.sample()
            signal = torch.from_numpy(signal_np).to(ctx.device, non_blocking=True)
            target = torch.from_numpy(target_np).to(ctx.device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            with autocast():
                prediction = model(signal)
            loss = criterion(prediction.float(), target)  # the loss in float32: fp16 would lose the Dice sums
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            loss_value = float(D.mean_across_ranks(loss.detach(), ctx))
            if not math.isfinite(loss_value):
                raise FloatingPointError(f"loss became {loss_value} at iteration {iteration}; the last checkpoint "
                                         f"in {manager.folder} is intact (lower lr or check the data)")
            if iteration % config.log_every == 0 or iteration == config.iterations:  # the same on every rank
                fractions = D.mean_across_ranks(foreground_fractions(prediction, target, fraction_threshold), ctx)
                fg_pred, fg_target = fractions.tolist()
                if log is not None:
                    log.log(iteration, loss_value, {"fg_fraction_pred": fg_pred, "fg_fraction_target": fg_target})
                    warning = monitor.update(iteration, fg_pred, fg_target)
                    if warning:
                        tqdm.write(warning, file=sys.stderr)
                    bar.set_postfix(loss=f"{loss_value:.4g}", fg=f"{fg_pred:.2f}/{fg_target:.2f}", refresh=False)
            bar.update(1)
            if iteration % config.checkpoint_every == 0 or iteration == config.iterations:
                state = checkpoint_payload(iteration)
                if ctx.is_main:
                    manager.save(state)
            if on_iteration is not None:
                on_iteration(iteration, loss_value)
    finally:
        bar.close()
        if log is not None:
            log.close()

    model_path = None
    if ctx.is_main:
        model_path = save_atomic(run_dir / "model.pt", {
            "format_version": FORMAT_VERSION, "iteration": config.iterations, "model_config": bare_model.config(),
            "model": bare_model.state_dict(), "preprocess": dataclasses.asdict(config.preprocess()),
            "config": config.to_dict()})
    D.barrier(ctx)
    return TrainResult(run_dir, config.iterations, True, model_path=model_path, last_loss=loss_value)
