r"""The training loop: F-net on foreground-aware random patches, MSE or Spotlight loss.

Per iteration: draw a batch of patches (:class:`~spotlight_ops.data.PatchSampler`), predict,
compute the loss in float32 (``mse``: ``mean((P - Y)^2)``; ``spotlight``: one fused op,
``SpotlightLoss.from_preset(preset, **options)`` (:func:`make_criterion`), by default the ``"trained"``
preset: ``lam * MSE + (1 - lam) * Dice`` with the MSE over every voxel, ``threshold=0.0`` on
Otsu-standardized targets, docs/collapse.md),
step Adam, log, and every ``checkpoint_every`` iterations write a checkpoint.

A checkpoint holds the model, the optimizer, the AMP grad scaler, the RNG states of Python,
numpy and torch and the sampler state of every process, and the iteration, so ``resume=True``
continues exactly: the losses after a resume equal those of an uninterrupted run (bit for bit
on CPU with the same thread count). Every written model (``model.pt``, ``checkpoint_best.pt``, and the
``inference_model`` of each checkpoint, which prediction reads) has its BatchNorm statistics recomputed
over ``bn_batches`` training batches of their own stream (:mod:`.batchnorm`); validation scores that model. Runs under ``torchrun`` use DistributedDataParallel; the
global ``batch_size`` is split evenly over the processes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn

from ..data import PatchSampler, StatsCache, VolumeBuffer, load_pairs, read_manifest
from ..models import FNet
from . import averaging as A
from . import batchnorm as BN
from . import distributed as D
from ..models import model_file
from ..files.checkpoint import CheckpointError, CheckpointManager, read_digest
from .config import RESUMABLE_CHANGES, TrainConfig, write_yaml
from .log import LossLog, read_log
from .monitor import FRACTION_COLUMNS, CollapseMonitor, batch_fractions, collapse_hint
from .rng import capture_rng_state, restore_rng_state, seed_everything
from ..files.runfiles import RunLock, RunLockedError, remove_temporaries
from .schedule import learning_rate
from . import validation as V

FORMAT_VERSION = 1


STOP_SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s)


class Stopped(Exception):
    """Training stopped by SIGTERM or SIGHUP after saving a checkpoint at the current iteration.

    ``exit_code`` is 128 + the signal number (143 for SIGTERM, 129 for SIGHUP), as a shell reports a
    process ended by that signal, so job schedulers see a pre-empted job.
    """

    def __init__(self, signum: int, iteration: int, checkpoint: Path, run_dir: Path) -> None:
        self.signum, self.iteration, self.checkpoint = signum, iteration, checkpoint
        self.exit_code = 128 + signum
        super().__init__(f"stopped by {signal.Signals(signum).name} at iteration {iteration}; checkpoint saved to "
                         f"{checkpoint}; continue with: spotlight train --out {run_dir} --resume")


class _StopRequests:
    """SIGTERM/SIGHUP handlers that only note the signal; the loop saves and stops at the iteration's end."""

    def __init__(self) -> None:
        self.signum = 0
        self._previous = {}

    def __enter__(self) -> "_StopRequests":
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._note)
        return self

    def _note(self, signum, frame) -> None:
        self.signum = self.signum or signum

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def default_num_threads() -> int:
    """Threads when ``num_threads`` is not set: half the CPUs this process may use, at least 1.

    torch's default (all cores) stalls on a shared machine: its OpenMP threads spin waiting for each
    other while other processes hold the cores (docs/training.md, "Threads", has the measurements).
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, cpus // 2)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 120:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 120:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours < 48 else f"{hours / 24:.1f} days"


@dataclass
class TrainResult:
    """Where a run ended: ``iteration`` reached, the run folder, the final model file (when finished)."""

    run_dir: Path
    iteration: int
    finished: bool
    already_finished: bool = False
    model_path: Optional[Path] = None
    last_loss: Optional[float] = None


def make_criterion(config: TrainConfig) -> nn.Module:
    """The criterion of the configured loss, on float32 tensors: ``nn.MSELoss()``, or
    ``SpotlightLoss.from_preset(config.preset, **config.loss_options())``, the same public call a script
    makes (the default is bit for bit ``SpotlightLoss.from_preset("trained")``). Its collapse warning is
    off: the trainer's monitor reads the same counts (``criterion.fractions()``) and speaks in flags."""
    if config.loss == "mse":
        return nn.MSELoss()
    from ..losses import SpotlightLoss

    return SpotlightLoss.from_preset(config.preset, **config.loss_options(), collapse_warning=False)


def _amp_settings(config: TrainConfig, device: torch.device) -> tuple:
    """(enabled, dtype): autocast only ever on CUDA."""
    enabled = device.type == "cuda" and config.amp in ("auto", True)
    if config.amp is True and device.type != "cuda":
        print("WARNING: amp=true ignored: mixed precision is used on CUDA only", file=sys.stderr)
    dtype = torch.bfloat16 if config.amp_dtype == "bfloat16" else torch.float16
    if enabled and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        dtype = torch.float16
    return enabled, dtype


_ESTIMATE_AFTER = 5  # timed iterations (after the first, which warms up) before the estimate


def _estimate(timing_from: Optional[float], timed: int, iteration: int, last: int) -> tuple:
    """Prints one line with the time per iteration and the time left, after the first few iterations."""
    now = time.monotonic()
    if timing_from is None:
        return now, 0
    timed += 1
    if timed == _ESTIMATE_AFTER and iteration < last:
        per = (now - timing_from) / timed
        print(f"train: {per:.3g} s/iteration; about {_duration(per * (last - iteration))} for the remaining "
              f"{last - iteration} iterations", file=sys.stderr, flush=True)
    return timing_from, timed


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
        from ..files.checkpoint import load_checkpoint

        payload = load_checkpoint(path)
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {payload.get('format_version')} is not the supported "
                              f"{FORMAT_VERSION}")
    saved = TrainConfig.from_dict(payload["config"], f"{path} (config)")
    changed = config.differences(saved)
    if changed:
        details = ", ".join(f"{k}: checkpoint {saved.to_dict()[k]!r} vs now {config.to_dict()[k]!r}" for k in changed)
        raise ValueError(f"cannot resume {path} with a different config ({details}); only "
                         f"{', '.join(sorted(RESUMABLE_CHANGES))} may change")
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
    if config.batch_size % ctx.world_size:
        raise ValueError(f"batch_size {config.batch_size} must be divisible by the number of processes "
                         f"{ctx.world_size}")
    if ctx.device.type == "cpu":
        torch.set_num_threads(config.num_threads or default_num_threads())
    elif config.num_threads:
        torch.set_num_threads(config.num_threads)
    lock = RunLock(run_dir)
    refused = None
    if ctx.is_main:
        try:
            lock.acquire()  # before anything in the folder is read or written; the kernel frees it if we die
        except (OSError, RunLockedError) as err:  # every process stops, none waits for rank 0
            refused = err
    refused = D.broadcast_object(refused, ctx)
    if refused is not None:
        raise refused
    try:
        return _train_locked(config, resume, on_iteration, ctx, run_dir)
    finally:
        lock.release()


def _write_model(run_dir: Path, bare_model, config: TrainConfig, iteration: int, digest: Optional[str]) -> Path:
    """model.pt from the weights of the checkpoint with payload SHA-256 ``digest`` (recorded as its source)."""
    payload = _model_file(config, bare_model, iteration, {"checkpoint": "checkpoints/checkpoint_latest.pt",
                                                          "iteration": iteration, "sha256": digest})
    return model_file.write_model_file(run_dir / model_file.MODEL_NAME, payload)


def _repair_model(run_dir: Path, manager: CheckpointManager, payload: dict) -> Path:
    """A finished run's model.pt, rewritten from the latest checkpoint when missing or not copied from it."""
    model_path = run_dir / model_file.MODEL_NAME
    source = Path(payload["_path"])
    if model_file.is_current(model_path, source):
        return model_path
    state = model_file.model_payload(FNet(**payload["model_config"]), payload["preprocess"], payload["config"],
                                     payload["iteration"], {"checkpoint": f"checkpoints/{source.name}",
                                                            "iteration": payload["iteration"],
                                                            "sha256": read_digest(source)})
    state["model"] = payload.get("inference_model", payload["model"])
    print(f"Run {run_dir}: {model_path} was {'stale' if model_path.exists() else 'missing'}; rewritten from "
          f"{source} (iteration {payload['iteration']}).", file=sys.stderr)
    return model_file.write_model_file(model_path, state)


def _train_locked(config: TrainConfig, resume: bool, on_iteration, ctx: D.DistContext, run_dir: Path
                  ) -> TrainResult:
    manager = CheckpointManager(run_dir / "checkpoints")
    if ctx.is_main:
        for folder in (run_dir, manager.folder):  # left by a process killed while writing one of its files
            remove_temporaries(folder)

    payload = None
    if resume:
        payload = _resume_payload(config, manager, ctx)
        if payload is None and ctx.is_main:
            print(f"No checkpoint in {manager.folder}; starting from scratch.", file=sys.stderr)
        elif payload is not None and payload["iteration"] >= config.iterations:
            model_path = None
            if ctx.is_main:
                model_path = _repair_model(run_dir, manager, payload)
                print(f"Run {run_dir} already finished (iteration {payload['iteration']} of {config.iterations}); "
                      f"nothing to do.")
            D.barrier(ctx)
            return TrainResult(run_dir, payload["iteration"], True, already_finished=True, model_path=model_path)
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

    pairs, val_rows = _training_data(config, run_dir, ctx)
    seed_everything(config.seed)  # the same initial weights on every process
    model = FNet(depth=config.depth, base_channels=config.base_channels).to(ctx.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=config.betas)
    saved_digest = None  # the SHA-256 of the last checkpoint written, recorded in model.pt
    amp_enabled, amp_dtype = _amp_settings(config, ctx.device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_enabled and amp_dtype == torch.float16)
    sampler = PatchSampler(pairs, config.patch_size, config.batch_size // ctx.world_size, seed=config.seed,
                           rank=ctx.rank, min_foreground_fraction=config.min_foreground_fraction,
                           max_retries=config.max_retries, augment=config.augment)
    start = 0
    best = {"val_loss": None, "iteration": None}
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
                                   max_retries=config.max_retries, augment=config.augment)
        best = dict(payload.get("validation") or best)
        saved_digest = read_digest(payload["_path"])
        if ctx.is_main:
            print(f"Resuming {run_dir} from {payload['_path']} at iteration {start}.", file=sys.stderr)
            if payload.get("threads") not in (None, torch.get_num_threads()) and ctx.device.type == "cpu":
                print(f"WARNING: the checkpoint was written with {payload['threads']} CPU threads, this run uses "
                      f"{torch.get_num_threads()}: losses may differ from an uninterrupted run in the last bits "
                      f"(set --num-threads {payload['threads']} for a bit-exact resume)", file=sys.stderr)

    if ctx.distributed:
        if config.sync_batchnorm:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model = nn.parallel.DistributedDataParallel(model, device_ids=[ctx.device] if ctx.device.type == "cuda"
                                                    else None)
    bare_model = model.module if ctx.distributed else model
    averaged = A.WeightAverage(bare_model, config.ema_decay) if config.ema_decay else None
    if averaged is not None and payload is not None:
        if "ema" in payload:
            averaged.load_state_dict(payload["ema"])
        elif ctx.is_main:
            print(f"WARNING: {payload['_path']} holds no weight average (written without ema_decay): the average "
                  f"starts with iteration {start + 1}", file=sys.stderr)
    if payload is not None and float(payload["config"].get("ema_decay", 0.0)) != config.ema_decay \
            and best["val_loss"] is not None:  # scores of other weights (last or averaged) do not compare
        if ctx.is_main:
            print(f"WARNING: ema_decay changed from {payload['config'].get('ema_decay', 0.0)} to {config.ema_decay}: "
                  f"checkpoint_best.pt is chosen afresh from the next validation", file=sys.stderr)
        best = {"val_loss": None, "iteration": None}
    if averaged is not None and not config.bn_batches and BN.has_batchnorm(bare_model) and ctx.is_main:
        print("WARNING: ema_decay with bn_batches 0: written models hold averaged weights with the BatchNorm "
              "running statistics of the last weights; set bn_batches > 0 to recompute them", file=sys.stderr)
    criterion = make_criterion(config)
    autocast = (lambda: torch.autocast("cuda", dtype=amp_dtype)) if amp_enabled else contextlib.nullcontext

    inference_cache = {}

    def inference(iteration: int) -> nn.Module:
        """The weights of ``iteration`` as written for prediction (main process only): the weight average
        (:mod:`.averaging`) or the current weights, BatchNorm statistics recomputed (:mod:`.batchnorm`)."""
        source = averaged.module if averaged is not None else bare_model
        if not (config.bn_batches and BN.has_batchnorm(source)):
            return source
        if inference_cache.get("iteration") != iteration:  # a copy: the source and its mode are untouched
            inference_cache.update(iteration=iteration, model=BN.inference_model(
                source, pairs, config.patch_size, config.batch_size, config.bn_batches, config.seed, iteration,
                config.min_foreground_fraction, config.max_retries, config.augment))
        return inference_cache["model"]

    def checkpoint_payload(iteration: int) -> dict:
        rng_states = D.all_gather_objects(capture_rng_state(), ctx)
        sampler_states = D.all_gather_objects(sampler.state_dict(), ctx)
        written = inference(iteration) if ctx.is_main else bare_model
        extra = {"inference_model": written.state_dict()} if written is not bare_model else {}
        if averaged is not None:
            extra["ema"] = averaged.state_dict()
        return {**extra, "format_version": FORMAT_VERSION, "iteration": iteration, "config": config.to_dict(),
                "model_config": bare_model.config(), "model": bare_model.state_dict(),
                "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), "rng": rng_states,
                "sampler": sampler_states, "world_size": ctx.world_size, "threads": torch.get_num_threads(),
                "preprocess": dataclasses.asdict(config.preprocess()), "validation": dict(best)}

    def save_checkpoint(iteration: int) -> None:
        nonlocal saved_digest, saved_at
        state = checkpoint_payload(iteration)
        if ctx.is_main:
            saved_digest = manager.save(state)
        saved_at = iteration

    def rate(iteration: int) -> float:
        return learning_rate(iteration, config.lr, config.lr_schedule, config.warmup_iterations,
                             config.iterations, config.min_lr)

    validator, last_plot = None, -math.inf
    if val_rows and ctx.is_main:
        patches = V.fixed_patches(val_rows, config.preprocess(), config.patch_size, config.val_patches, config.seed,
                                  config.min_foreground_fraction, config.max_retries, progress=config.progress)
        validator = V.Validator(patches, criterion, config.batch_size // ctx.world_size, ctx.device,
                                autocast if amp_enabled else None)
    columns = dict(FRACTION_COLUMNS, **(V.COLUMNS if val_rows else {}))
    log = LossLog(run_dir, start, config.tensorboard, columns=columns) if ctx.is_main else None
    fraction_threshold = 0.0 if config.target_norm == "otsu" else None  # MSE runs: the T of the Spotlight loss
    monitor = CollapseMonitor(hint=collapse_hint(config))
    from tqdm import tqdm

    bar = tqdm(total=config.iterations, initial=start, unit="it", dynamic_ncols=True, desc=f"train {config.loss}",
               disable=not (config.progress and ctx.is_main))
    loss_value = None
    saved_at = start if payload is not None else None
    timing_from, timed = None, 0
    if ctx.is_main:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        schedule = config.lr_schedule + (f" after {config.warmup_iterations} warm-up" if config.warmup_iterations
                                         else "")
        print(f"train: device {ctx.device}, {torch.get_num_threads()} CPU thread(s) of {cores} core(s), "
              f"{ctx.world_size} process(es); iterations {start + 1}..{config.iterations}, lr {config.lr:g} "
              f"({schedule}); a time estimate follows the first iterations", file=sys.stderr, flush=True)
    model.train()
    stop = _StopRequests()
    try:
        stop.__enter__()
        for iteration in range(start + 1, config.iterations + 1):
            for group in optimizer.param_groups:
                group["lr"] = rate(iteration)
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
            if averaged is not None:
                averaged.update_parameters(bare_model)
            if ctx.distributed:  # one reduction carries the loss and whether any process was asked to stop
                flags = torch.stack([loss.detach().float(), torch.tensor(float(stop.signum), device=loss.device)])
                flags = D.mean_across_ranks(flags, ctx)
                loss_value, stop_requested = float(flags[0]), float(flags[1]) > 0
            else:
                loss_value, stop_requested = float(loss.detach()), stop.signum != 0
            if not math.isfinite(loss_value):
                where = (f"the checkpoint of iteration {saved_at} in {manager.folder} is intact and --resume "
                         f"continues from it" if saved_at else
                         f"no checkpoint was written yet (the first is due at iteration "
                         f"{min(config.checkpoint_every, config.iterations)})")
                raise FloatingPointError(f"loss became {loss_value} at iteration {iteration}; {where}; lower --lr "
                                         f"or check the data of {config.train_csv} (targets of extreme values?)")
            val_due = bool(val_rows) and (iteration % config.val_every == 0 or iteration == config.iterations)
            metrics = {}
            if validator is not None and val_due:
                metrics = validator.evaluate(inference(iteration))
                if best["val_loss"] is None or metrics["val_loss"] < best["val_loss"]:
                    best = {"val_loss": metrics["val_loss"], "iteration": iteration}
                    model_file.write_model_file(manager.folder / "checkpoint_best.pt",
                                                _model_file(config, inference(iteration), iteration,
                                                            validation=dict(best)))
            if iteration % config.log_every == 0 or iteration == config.iterations or val_due:  # alike on every rank
                fractions = D.mean_across_ranks(batch_fractions(criterion, prediction, target, fraction_threshold), ctx)
                fg_pred, fg_target = fractions.tolist()
                if log is not None:
                    log.log(iteration, loss_value, {"fg_fraction_pred": fg_pred, "fg_fraction_target": fg_target,
                                                    **metrics})
                    warning = monitor.update(iteration, fg_pred, fg_target)
                    if warning:
                        tqdm.write(warning, file=sys.stderr)
                    # redrawn at most every PLOT_SECONDS (a figure costs about a second) and at the last iteration
                    if metrics and (iteration == config.iterations or time.monotonic() - last_plot >= V.PLOT_SECONDS):
                        V.plot_losses(read_log(log.path), run_dir / "loss_curve.png")
                        last_plot = time.monotonic()
                    bar.set_postfix(loss=f"{loss_value:.4g}", fg=f"{fg_pred:.2f}/{fg_target:.2f}", refresh=False)
            bar.update(1)
            if iteration % config.checkpoint_every == 0 or iteration == config.iterations:
                save_checkpoint(iteration)
            if ctx.is_main:
                timing_from, timed = _estimate(timing_from, timed, iteration, config.iterations)
            if stop_requested and iteration < config.iterations:
                if saved_at != iteration:
                    save_checkpoint(iteration)
                signum = stop.signum or STOP_SIGNALS[0]
                raise Stopped(signum, iteration, manager.latest, run_dir)
            if on_iteration is not None:
                on_iteration(iteration, loss_value)
    finally:
        stop.__exit__(None, None, None)
        bar.close()
        if log is not None:
            log.close()

    model_path = None
    if ctx.is_main:
        model_path = _write_model(run_dir, inference(config.iterations), config, config.iterations, saved_digest)
    D.barrier(ctx)
    return TrainResult(run_dir, config.iterations, True, model_path=model_path, last_loss=loss_value)


def _model_file(config: TrainConfig, model: nn.Module, iteration: int, source: Optional[dict] = None,
                **extra) -> dict:
    """What ``model.pt`` and ``checkpoint_best.pt`` hold (:mod:`spotlight_ops.models.model_file`)."""
    payload = model_file.model_payload(model, dataclasses.asdict(config.preprocess()), config.to_dict(), iteration,
                                       source)
    payload.update(extra)
    return payload


def _training_data(config: TrainConfig, run_dir: Path, ctx: D.DistContext) -> tuple:
    """``(pairs, val_rows)``: the training volumes (all in memory, or a :class:`VolumeBuffer`) and the held-out rows."""
    rows = read_manifest(config.train_csv)
    val_rows = read_manifest(config.val_csv) if config.val_csv else []
    if config.val_fraction:
        rows, val_rows = V.split_rows(rows, config.val_fraction, config.seed)
    progress = config.progress and ctx.is_main
    if not config.buffer_size:
        return load_pairs(rows, config.preprocess(), progress=progress), val_rows
    cache = StatsCache(config.stats_cache or run_dir / "preprocess_stats.json")
    buffer = VolumeBuffer(rows, config.preprocess(), config.buffer_size, config.buffer_switch_every, cache,
                          seed=config.seed, rank=ctx.rank, progress=progress)
    if ctx.is_main:
        print(f"Volume buffer: {buffer.size} of {len(rows)} pairs in memory, one switched every "
              f"{config.buffer_switch_every} iterations; statistics: {cache.hits} cached, {cache.misses} computed "
              f"({cache.path})", file=sys.stderr)
    return buffer, val_rows
