"""What a training says while it runs (main process, stderr): the start line, the progress bar and the
estimate of the time left."""

from __future__ import annotations

import os
import sys
import time
from typing import Optional

import torch

ESTIMATE_AFTER = 5  # timed iterations (after the first, which warms up) before the estimate


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 120:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 120:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours < 48 else f"{hours / 24:.1f} days"


def start_line(config, device: torch.device, processes: int, start: int, data: str = "") -> None:
    """The device, threads, processes, iterations and learning rate of the run about to start, and ``data``
    (its channels and masks)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    schedule = config.lr_schedule + (f" after {config.warmup_iterations} warm-up" if config.warmup_iterations else "")
    print(f"train: device {device}, {torch.get_num_threads()} CPU thread(s) of {cores} core(s), "
          f"{processes} process(es); iterations {start + 1}..{config.iterations}, lr {config.lr:g} "
          f"({schedule}){'; ' + data if data else ''}; a time estimate follows the first iterations",
          file=sys.stderr, flush=True)


def progress_bar(config, start: int, shown: bool):
    from tqdm import tqdm

    return tqdm(total=config.iterations, initial=start, unit="it", dynamic_ncols=True, desc=f"train {config.loss}",
                disable=not (config.progress and shown))


class Estimate:
    """Prints one line with the time per iteration and the time left after :data:`ESTIMATE_AFTER` timed
    iterations (the first iteration, which warms up, is not timed)."""

    def __init__(self, last: int) -> None:
        self.last = last
        self._from: Optional[float] = None
        self._timed = 0

    def tick(self, iteration: int) -> None:
        """Called at the end of every iteration."""
        now = time.monotonic()
        if self._from is None:
            self._from = now
            return
        self._timed += 1
        if self._timed == ESTIMATE_AFTER and iteration < self.last:
            per = (now - self._from) / self._timed
            print(f"train: {per:.3g} s/iteration; about {duration(per * (self.last - iteration))} for the remaining "
                  f"{self.last - iteration} iterations", file=sys.stderr, flush=True)
