r"""The training loop: F-net on foreground-aware random patches, MSE or Spotlight loss.

Per iteration: draw a batch of patches (:class:`~spotlight_ops.data.PatchSampler`), predict,
compute the loss in float32 (``mse``: ``mean((P - Y)^2)``; ``spotlight``: one fused op,
``SpotlightLoss.from_preset(preset, **options)`` (:func:`make_criterion`), by default the ``"trained"``
preset: ``lam * MSE + (1 - lam) * Dice`` with the MSE over every voxel, ``threshold=0.0`` on
Otsu-standardized targets, docs/collapse.md),
step Adam, log, and every ``checkpoint_every`` iterations write a checkpoint.

A checkpoint holds the model, the optimizer, the AMP grad scaler, the RNG states of Python,
numpy and torch and the sampler state of every process, the iteration, the run's id and its log so far,
so ``resume=True`` continues exactly: the losses after a resume equal those of an uninterrupted run (bit
for bit on CPU with the same thread count). Every written model (``model.pt``, ``checkpoint_best.pt``, and the
``inference_model`` of each checkpoint, which prediction reads) has its BatchNorm statistics recomputed
over ``bn_batches`` training batches of their own stream (:mod:`.batchnorm`); validation scores that model.
Runs under ``torchrun`` use DistributedDataParallel; the global ``batch_size`` is split evenly over the
processes.

The loop is a sequence of named steps, the methods of :class:`_Run` (one process's training state),
each doing one job::

    for each iteration:
        step             the iteration's learning rate, a batch, forward under autocast, the loss in
                         float32, backward and Adam through the AMP grad scaler
        average          the moving average of the weights (ema_decay)
        reduce           the loss and any stop request, averaged over DDP processes (one all-reduce)
        check_finite     a non-finite loss stops the run, naming the checkpoint to resume from
        validate         at validation iterations: the written model on the held-out patches, the best model
        record           at log iterations: foreground fractions, the log row, the collapse monitor, the
                         loss plot, the progress bar's numbers
        save_checkpoint  at checkpoint iterations: the log fsynced, then the checkpoint published
        estimate, stop   the time left; a signal's checkpoint and :class:`Stopped`
    finish               model.pt

Around each write the main process checks that the run folder is still the one it locked
(:meth:`_Run.writing`, :meth:`~spotlight_ops.files.runfiles.RunLock.check`): a folder removed, moved or
taken over stops the run with :class:`~spotlight_ops.files.runfiles.RunFolderLost` (exit code 3) instead
of writing into it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import math
import os
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn

from ..data import PatchSampler, StatsCache, VolumeBuffer, load_pairs
from ..files.checkpoint import CheckpointManager, read_digest
from ..files.runfiles import RunLock, RunLockedError, remove_temporaries
from ..models import FNet, model_file
from . import averaging as A
from . import batchnorm as BN
from . import channels as CH
from . import distributed as D
from . import progress as P
from . import resume as R
from . import validation as V
from .config import TrainConfig, write_yaml
from .log import LossLog, read_log
from .monitor import FRACTION_COLUMNS, CollapseMonitor, batch_fractions, collapse_hint
from .rng import capture_rng_state, restore_rng_state, seed_everything
from .schedule import learning_rate
from .signals import STOP_SIGNALS, StopRequests, Stopped

FORMAT_VERSION = R.FORMAT_VERSION

__all__ = ["Stopped", "TrainResult", "default_num_threads", "make_criterion", "train"]


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


def train(config: TrainConfig, resume: bool = False,
          on_iteration: Optional[Callable[[int, float], None]] = None) -> TrainResult:
    """Trains (or resumes) the run described by ``config``; see the module docstring.

    ``on_iteration(iteration, loss)`` is called after each iteration (and its checkpoint).
    Resuming a finished run prints so and returns ``already_finished=True``.
    """
    if not (config.train_csv or config.train_plate):
        raise ValueError("train_csv or train_plate is required (the manifest CSV, or the HCS plate, of the training "
                         "pairs)")
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
        if ctx.distributed:
            gc.collect()  # and whatever of the run a reference cycle still holds
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
        return _train_locked(config, resume, on_iteration, ctx, run_dir, lock)
    finally:
        lock.release()


def _train_locked(config: TrainConfig, resume: bool, on_iteration, ctx: D.DistContext, run_dir: Path,
                  lock: RunLock) -> TrainResult:
    """The run folder prepared (a fresh run, or the checkpoint to resume from), then the loop."""
    manager = CheckpointManager(run_dir / "checkpoints")
    if ctx.is_main:
        for folder in (run_dir, manager.folder):  # left by a process killed while writing one of its files
            remove_temporaries(folder)
    payload = None
    if resume:
        payload = R.resume_payload(config, manager, ctx, run_dir)
        if payload is None and ctx.is_main:
            print(f"No checkpoint in {manager.folder}; starting from scratch.", file=sys.stderr)
        elif payload is not None and payload["iteration"] >= config.iterations:
            return _already_finished(config, ctx, run_dir, payload)
    elif manager.exists():
        raise FileExistsError(f"{run_dir} already holds checkpoints of a run; pass --resume to continue it "
                              f"or choose another output folder")
    run_id = R.run_id_to_continue(run_dir, payload, ctx)
    if ctx.is_main:
        write_yaml(config, run_dir / "config.yaml")
    _configure_determinism(config, ctx.device)
    return _Run(config, ctx, run_dir, manager, lock, payload, run_id).run(on_iteration)


def _already_finished(config: TrainConfig, ctx: D.DistContext, run_dir: Path, payload: dict) -> TrainResult:
    model_path = None
    if ctx.is_main:
        model_path = R.repair_model(run_dir, payload)
        print(f"Run {run_dir} already finished (iteration {payload['iteration']} of {config.iterations}); "
              f"nothing to do.")
    D.barrier(ctx)
    return TrainResult(run_dir, payload["iteration"], True, already_finished=True, model_path=model_path)


def _configure_determinism(config: TrainConfig, device: torch.device) -> None:
    if config.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not config.deterministic


class _Run:
    """One process's training state and the steps of its loop (the module docstring), in the order
    :meth:`run` calls them. Built in the order the random streams are drawn from (data, seed, model,
    sampler, then the checkpoint's states), which an exact resume depends on."""

    def __init__(self, config: TrainConfig, ctx: D.DistContext, run_dir: Path, manager: CheckpointManager,
                 lock: RunLock, payload: Optional[dict], run_id: str) -> None:
        self.config, self.ctx, self.run_dir, self.run_id = config, ctx, run_dir, run_id
        self.manager, self.lock = manager, lock
        self.pairs, val_rows = _training_data(config, run_dir, ctx)
        self.plan = CH.plan(config, getattr(self.pairs, "rows", None) or [p.source for p in self.pairs], val_rows)
        self.channels, self.use_masks = self.plan.names, self.plan.use_masks
        seed_everything(config.seed)  # the same initial weights on every process
        model = FNet(depth=config.depth, base_channels=config.base_channels, in_channels=self.plan.in_channels,
                     out_channels=self.plan.out_channels).to(ctx.device)
        self.optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=config.betas)
        amp_enabled, amp_dtype = _amp_settings(config, ctx.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=amp_enabled and amp_dtype == torch.float16)
        self.sampler = self._sampler(config.seed)
        self.start = 0
        self.saved_at: Optional[int] = None  # the iteration of the last checkpoint written or resumed from
        self.saved_digest: Optional[str] = None  # its payload's SHA-256, recorded in model.pt
        self.best = {"val_loss": None, "iteration": None}
        if payload is not None:
            self._restore(model, payload)
        self.model = self._distributed(model)
        self.bare_model = self.model.module if ctx.distributed else self.model
        self.averaged = self._weight_average(payload)
        self.criterion = make_criterion(config)
        self.autocast = (lambda: torch.autocast("cuda", dtype=amp_dtype)) if amp_enabled else contextlib.nullcontext
        self._written = {}  # the model written for prediction, of one iteration (:meth:`inference`)
        self.validating = bool(val_rows)
        self.validator = self._validator(val_rows, amp_enabled)
        columns = dict(FRACTION_COLUMNS, **(V.COLUMNS if val_rows else {}))
        self.log = LossLog(run_dir, self.start, config.tensorboard, columns=columns,
                           saved=payload.get("log") if payload is not None else None) if ctx.is_main else None
        self.fraction_threshold = 0.0 if config.target_norm == "otsu" else None  # MSE runs: the T of the Spotlight loss
        self.monitor = CollapseMonitor(hint=collapse_hint(config))
        self.last_plot = -math.inf
        self.bar = P.progress_bar(config, self.start, ctx.is_main)
        self.estimate = P.Estimate(config.iterations)

    # building the state

    def _sampler(self, seed: int) -> PatchSampler:
        c = self.config
        return PatchSampler(self.pairs, c.patch_size, c.batch_size // self.ctx.world_size, seed=seed,
                            rank=self.ctx.rank, min_foreground_fraction=c.min_foreground_fraction,
                            max_retries=c.max_retries, augment=c.augment)

    def _restore(self, model: nn.Module, payload: dict) -> None:
        """The checkpoint's weights, optimizer, scaler, sampler and RNG states, best validation and iteration."""
        config, ctx = self.config, self.ctx
        saved = payload.get("model_config", {})
        if any(saved.get(k, 1) != getattr(model, k) for k in ("in_channels", "out_channels")):
            raise ValueError(f"{payload['_path']}: the run was trained with {saved.get('in_channels', 1)} signal and "
                             f"{saved.get('out_channels', 1)} target channel(s), the data given now have "
                             f"{model.in_channels} and {model.out_channels}; resume with the run's data")
        model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scaler.load_state_dict(payload["scaler"])
        self.start = self.saved_at = int(payload["iteration"])
        if payload["world_size"] == ctx.world_size:
            self.sampler.load_state_dict(payload["sampler"][ctx.rank])
            restore_rng_state(payload["rng"][ctx.rank])
        else:  # a different process count cannot replay the same streams: fresh ones, still seeded
            if ctx.is_main:
                print(f"WARNING: resuming with {ctx.world_size} processes instead of {payload['world_size']}: "
                      f"patch sampling continues with new random streams", file=sys.stderr)
            self.sampler = self._sampler(config.seed + 7919 * self.start)
        self.best = dict(payload.get("validation") or self.best)
        self.saved_digest = read_digest(payload["_path"])
        if ctx.is_main:
            print(f"Resuming {self.run_dir} from {payload['_path']} at iteration {self.start}.", file=sys.stderr)
            if payload.get("threads") not in (None, torch.get_num_threads()) and ctx.device.type == "cpu":
                print(f"WARNING: the checkpoint was written with {payload['threads']} CPU threads, this run uses "
                      f"{torch.get_num_threads()}: losses may differ from an uninterrupted run in the last bits "
                      f"(set --num-threads {payload['threads']} for a bit-exact resume)", file=sys.stderr)

    def _distributed(self, model: nn.Module) -> nn.Module:
        if not self.ctx.distributed:
            return model
        if self.config.sync_batchnorm:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return nn.parallel.DistributedDataParallel(model, device_ids=[self.ctx.device]
                                                   if self.ctx.device.type == "cuda" else None)

    def _weight_average(self, payload: Optional[dict]) -> Optional[A.WeightAverage]:
        """The moving average of the weights that written models hold (``ema_decay``), continued from the
        checkpoint; a switched ``ema_decay`` chooses the best model afresh."""
        config, ctx = self.config, self.ctx
        averaged = A.WeightAverage(self.bare_model, config.ema_decay) if config.ema_decay else None
        if averaged is not None and payload is not None:
            if "ema" in payload:
                averaged.load_state_dict(payload["ema"])
            elif ctx.is_main:
                print(f"WARNING: {payload['_path']} holds no weight average (written without ema_decay): the "
                      f"average starts with iteration {self.start + 1}", file=sys.stderr)
        if payload is not None and float(payload["config"].get("ema_decay", 0.0)) != config.ema_decay \
                and self.best["val_loss"] is not None:  # scores of other weights (last or averaged) do not compare
            if ctx.is_main:
                print(f"WARNING: ema_decay changed from {payload['config'].get('ema_decay', 0.0)} to "
                      f"{config.ema_decay}: checkpoint_best.pt is chosen afresh from the next validation",
                      file=sys.stderr)
            self.best = {"val_loss": None, "iteration": None}
        if averaged is not None and not config.bn_batches and BN.has_batchnorm(self.bare_model) and ctx.is_main:
            print("WARNING: ema_decay with bn_batches 0: written models hold averaged weights with the BatchNorm "
                  "running statistics of the last weights; set bn_batches > 0 to recompute them", file=sys.stderr)
        return averaged

    def _validator(self, val_rows: list, amp_enabled: bool) -> Optional[V.Validator]:
        c = self.config
        if not (val_rows and self.ctx.is_main):
            return None
        patches = V.fixed_patches(val_rows, c.preprocess(), c.patch_size, c.val_patches, c.seed,
                                  c.min_foreground_fraction, c.max_retries, progress=c.progress,
                                  with_mask=self.use_masks)
        return V.Validator(patches, self.criterion, c.batch_size // self.ctx.world_size, self.ctx.device,
                           self.autocast if amp_enabled else None)

    # the loop

    def run(self, on_iteration) -> TrainResult:
        config, ctx = self.config, self.ctx
        if ctx.is_main:
            P.start_line(config, ctx.device, ctx.world_size, self.start, self.plan.describe())
        self.model.train()
        loss_value = None
        with contextlib.ExitStack() as cleanup:
            cleanup.callback(self._close)
            stop = cleanup.enter_context(StopRequests(announce=ctx.is_main))
            for iteration in range(self.start + 1, config.iterations + 1):
                prediction, target, loss = self.step(iteration)
                self.average()
                loss_value, stop_requested = self.reduce(loss, stop.signum)
                self.check_finite(iteration, loss_value)
                metrics = self.validate(iteration)
                if iteration % config.log_every == 0 or iteration == config.iterations \
                        or self.validation_due(iteration):  # alike on every process
                    self.record(iteration, loss_value, prediction, target, metrics)
                self.bar.update(1)
                if iteration % config.checkpoint_every == 0 or iteration == config.iterations:
                    self.save_checkpoint(iteration)
                if ctx.is_main:
                    self.estimate.tick(iteration)
                if stop_requested and iteration < config.iterations:
                    self.stop(iteration, stop.signum)
                if on_iteration is not None:
                    on_iteration(iteration, loss_value)
        return self.finish(loss_value)

    def rate(self, iteration: int) -> float:
        c = self.config
        return learning_rate(iteration, c.lr, c.lr_schedule, c.warmup_iterations, c.iterations, c.min_lr)

    def step(self, iteration: int) -> tuple:
        """One Adam step at the iteration's learning rate on a fresh batch: ``(prediction, target, loss)``."""
        for group in self.optimizer.param_groups:
            group["lr"] = self.rate(iteration)
        batch = self.sampler.sample(with_mask=self.use_masks)
        signal = torch.from_numpy(batch[0]).to(self.ctx.device, non_blocking=True)
        target = torch.from_numpy(batch[1]).to(self.ctx.device, non_blocking=True)
        masks = {"mask": torch.from_numpy(batch[2] != 0).to(self.ctx.device, non_blocking=True)} \
            if self.use_masks else {}
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            prediction = self.model(signal)
        loss = self.criterion(prediction.float(), target, **masks)  # in float32: fp16 would lose the Dice sums
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return prediction, target, loss

    def average(self) -> None:
        if self.averaged is not None:
            self.averaged.update_parameters(self.bare_model)

    def reduce(self, loss: torch.Tensor, signum: int) -> tuple:
        """``(loss, stop requested)``: the loss as a float (the mean over processes) and whether any process
        was asked to stop; under DDP one all-reduce carries both."""
        if not self.ctx.distributed:
            return float(loss.detach()), signum != 0
        flags = torch.stack([loss.detach().float(), torch.tensor(float(signum), device=loss.device)])
        flags = D.mean_across_ranks(flags, self.ctx)
        return float(flags[0]), float(flags[1]) > 0

    def check_finite(self, iteration: int, loss_value: float) -> None:
        if math.isfinite(loss_value):
            return
        c = self.config
        where = (f"the checkpoint of iteration {self.saved_at} in {self.manager.folder} is intact and --resume "
                 f"continues from it" if self.saved_at else
                 f"no checkpoint was written yet (the first is due at iteration "
                 f"{min(c.checkpoint_every, c.iterations)})")
        raise FloatingPointError(f"loss became {loss_value} at iteration {iteration}; {where}; lower --lr "
                                 f"or check the data of {c.data_name()} (targets of extreme values?)")

    def validation_due(self, iteration: int) -> bool:
        c = self.config
        return self.validating and (iteration % c.val_every == 0 or iteration == c.iterations)

    def validate(self, iteration: int) -> dict:
        """At validation iterations (main process): the metrics of the written model on the held-out
        patches, and ``checkpoint_best.pt`` whenever ``val_loss`` is the lowest so far; ``{}`` otherwise."""
        if self.validator is None or not self.validation_due(iteration):
            return {}
        model = self.inference(iteration)
        metrics = self.validator.evaluate(model)
        if self.best["val_loss"] is None or metrics["val_loss"] < self.best["val_loss"]:
            self.best = {"val_loss": metrics["val_loss"], "iteration": iteration}
            with self.writing(f"checkpoint_best.pt of iteration {iteration}"):
                model_file.write_model_file(self.manager.folder / "checkpoint_best.pt",
                                            _model_file(self.config, model, iteration, validation=dict(self.best),
                                                        channels=self.channels))
        return metrics

    def record(self, iteration: int, loss_value: float, prediction: torch.Tensor, target: torch.Tensor,
               metrics: dict) -> None:
        """A log iteration: the batch's foreground fractions (the mean over processes), then in the main
        process the log row, the collapse monitor, the loss plot and the progress bar's numbers."""
        fractions = batch_fractions(self.criterion, prediction, target, self.fraction_threshold)
        fractions = D.mean_across_ranks(fractions, self.ctx)
        fg_pred, fg_target = fractions.tolist()
        if self.log is None:
            return
        with self.writing(f"the log row of iteration {iteration}"):
            self.log.log(iteration, loss_value, {"fg_fraction_pred": fg_pred, "fg_fraction_target": fg_target,
                                                 **metrics})
        self.watch_collapse(iteration, fg_pred, fg_target)
        self.plot(iteration, metrics)
        self.bar.set_postfix(loss=f"{loss_value:.4g}", fg=f"{fg_pred:.2f}/{fg_target:.2f}", refresh=False)

    def watch_collapse(self, iteration: int, fg_pred: float, fg_target: float) -> None:
        """The collapse monitor's update (:class:`CollapseMonitor`): a warning when a divergence starts."""
        warning = self.monitor.update(iteration, fg_pred, fg_target)
        if warning:
            from tqdm import tqdm

            tqdm.write(warning, file=sys.stderr)

    def plot(self, iteration: int, metrics: dict) -> None:
        """``loss_curve.png`` after a validation, redrawn at most every ``PLOT_SECONDS`` (a figure costs
        about a second) and at the last iteration."""
        if metrics and (iteration == self.config.iterations or time.monotonic() - self.last_plot >= V.PLOT_SECONDS):
            with self.writing("loss_curve.png"):
                V.plot_losses(read_log(self.log.path), self.run_dir / "loss_curve.png")
            self.last_plot = time.monotonic()

    def inference(self, iteration: int) -> nn.Module:
        """The weights of ``iteration`` as written for prediction (main process only): the weight average
        (:mod:`.averaging`) or the current weights, BatchNorm statistics recomputed (:mod:`.batchnorm`)."""
        c = self.config
        source = self.averaged.module if self.averaged is not None else self.bare_model
        if not (c.bn_batches and BN.has_batchnorm(source)):
            return source
        if self._written.get("iteration") != iteration:  # a copy: the source and its mode are untouched
            self._written.update(iteration=iteration, model=BN.inference_model(
                source, self.pairs, c.patch_size, c.batch_size, c.bn_batches, c.seed, iteration,
                c.min_foreground_fraction, c.max_retries, c.augment))
        return self._written["model"]

    def checkpoint_payload(self, iteration: int) -> dict:
        """What a checkpoint of ``iteration`` holds (every process takes part: RNG and sampler states)."""
        ctx = self.ctx
        rng_states = D.all_gather_objects(capture_rng_state(), ctx)
        sampler_states = D.all_gather_objects(self.sampler.state_dict(), ctx)
        written = self.inference(iteration) if ctx.is_main else self.bare_model
        extra = {"inference_model": written.state_dict()} if written is not self.bare_model else {}
        if self.averaged is not None:
            extra["ema"] = self.averaged.state_dict()
        if self.log is not None:
            extra["log"] = self.log.text()
        return {**extra, "format_version": FORMAT_VERSION, "run_id": self.run_id, "iteration": iteration,
                "config": self.config.to_dict(), "model_config": self.bare_model.config(),
                "model": self.bare_model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(), "rng": rng_states, "sampler": sampler_states,
                "world_size": ctx.world_size, "threads": torch.get_num_threads(),
                "preprocess": dataclasses.asdict(self.config.preprocess()), "validation": dict(self.best),
                CH.CHANNELS_KEY: self.channels}

    def save_checkpoint(self, iteration: int) -> None:
        """Publishes the checkpoint of ``iteration`` (main process), after the log rows it continues from
        are on disk (fsync), so no checkpoint outlives rows up to its iteration."""
        state = self.checkpoint_payload(iteration)
        if self.ctx.is_main:
            with self.writing(f"the checkpoint of iteration {iteration}"):
                self.log.sync()
                self.saved_digest = self.manager.save(state)
        self.saved_at = iteration

    def stop(self, iteration: int, signum: int) -> None:
        """A stop signal: a checkpoint of ``iteration`` (unless just written), then :class:`Stopped`."""
        if self.saved_at != iteration:
            self.save_checkpoint(iteration)
        raise Stopped(signum or STOP_SIGNALS[0], iteration, self.manager.latest, self.run_dir)

    @contextlib.contextmanager
    def writing(self, what: str):
        """Around each write into the run folder (main process: it alone holds the lock), a check that the
        folder is still the one locked (:class:`~spotlight_ops.files.runfiles.RunFolderLost` otherwise):
        before the write, so nothing goes into a folder removed or taken; after it, for one lost meanwhile;
        and after a failed write, whose cause that loss then is (a file vanished with its folder)."""
        self.lock.check(what)
        try:
            yield
        except OSError:
            self.lock.check(what)
            raise
        self.lock.check(what)

    def finish(self, loss_value: Optional[float]) -> TrainResult:
        c = self.config
        model_path = None
        if self.ctx.is_main:
            with self.writing("model.pt"):
                model_path = _write_model(self.run_dir, self.inference(c.iterations), c, c.iterations,
                                          self.saved_digest, self.channels)
        D.barrier(self.ctx)
        return TrainResult(self.run_dir, c.iterations, True, model_path=model_path, last_loss=loss_value)

    def _close(self) -> None:
        self.bar.close()
        if self.log is not None:
            self.log.close()


def _write_model(run_dir: Path, bare_model, config: TrainConfig, iteration: int, digest: Optional[str],
                 channels: dict) -> Path:
    """model.pt from the weights of the checkpoint with payload SHA-256 ``digest`` (recorded as its source)."""
    payload = _model_file(config, bare_model, iteration, {"checkpoint": "checkpoints/checkpoint_latest.pt",
                                                          "iteration": iteration, "sha256": digest},
                          channels=channels)
    return model_file.write_model_file(run_dir / model_file.MODEL_NAME, payload)


def _model_file(config: TrainConfig, model: nn.Module, iteration: int, source: Optional[dict] = None,
                **extra) -> dict:
    """What ``model.pt`` and ``checkpoint_best.pt`` hold (:mod:`spotlight_ops.models.model_file`); ``extra``:
    ``validation``, and ``channels``, the channel names ``{"signal": [name or None, ...], "target": [...]}``
    (:func:`.channels.channel_names`)."""
    payload = model_file.model_payload(model, dataclasses.asdict(config.preprocess()), config.to_dict(), iteration,
                                       source)
    payload.update(extra)
    return payload


def _training_data(config: TrainConfig, run_dir: Path, ctx: D.DistContext) -> tuple:
    """``(pairs, val_rows)``: the training volumes (all in memory, or a :class:`VolumeBuffer`) and the held-out rows."""
    rows = CH.training_rows(config)
    val_rows = CH.validation_rows(config)
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
