"""Loss logging: a CSV file (always) and TensorBoard (when installed and wanted).

The CSV ``log.csv`` has columns ``iteration,loss,seconds``; ``loss`` is written with ``repr``
so it reads back bit-exactly. On resume the rows after the checkpoint's iteration (written
before a crash) are dropped, so the log always matches the state it continues from; that rewrite
is atomic (a kill during it leaves the old log whole), and rows are appended after it.
"""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Optional, Union

from .runfiles import atomic_write_text

COLUMNS = ("iteration", "loss", "seconds")


def read_log(path: Union[str, Path]) -> list[dict]:
    """Rows of a loss log as dicts of numbers; a torn last line (crash mid-write) is skipped."""
    rows = []
    path = Path(path)
    if not path.is_file():
        return rows
    with open(path, newline="") as handle:
        for raw in csv.DictReader(handle):
            try:
                rows.append({"iteration": int(raw["iteration"]), "loss": float(raw["loss"]),
                             "seconds": float(raw["seconds"])})
            except (TypeError, ValueError, KeyError):
                continue
    return rows


class LossLog:
    """Appends ``(iteration, loss)`` rows to ``log.csv`` and optionally TensorBoard."""

    def __init__(self, run_dir: Union[str, Path], resume_from_iteration: int = 0, tensorboard="auto") -> None:
        self.path = Path(run_dir) / "log.csv"
        kept = [r for r in read_log(self.path) if r["iteration"] <= resume_from_iteration] \
            if resume_from_iteration > 0 else []
        # the kept rows go to a new file that replaces the old one atomically: a kill here leaves
        # the old log whole, never a truncated one; then rows are appended to it
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(COLUMNS)
        for r in kept:
            writer.writerow([r["iteration"], repr(r["loss"]), repr(r["seconds"])])
        atomic_write_text(self.path, text.getvalue())
        self._handle = open(self.path, "a", newline="")
        self._writer = csv.writer(self._handle)
        self._offset = kept[-1]["seconds"] if kept else 0.0
        self._start = time.monotonic()
        self._tb = self._open_tensorboard(Path(run_dir) / "tensorboard", tensorboard)

    @staticmethod
    def _open_tensorboard(folder: Path, wanted):
        if wanted is False:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            if wanted is True:
                raise RuntimeError("tensorboard=true but the tensorboard package is not installed") from None
            return None
        return SummaryWriter(str(folder))

    def log(self, iteration: int, loss: float) -> None:
        seconds = self._offset + time.monotonic() - self._start
        self._writer.writerow([iteration, repr(float(loss)), f"{seconds:.3f}"])
        self._handle.flush()  # a killed process loses at most the row being written
        if self._tb is not None:
            self._tb.add_scalar("loss/train", loss, iteration)

    def close(self) -> None:
        self._handle.close()
        if self._tb is not None:
            self._tb.close()

    def __enter__(self) -> "LossLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def newest_iteration(path: Optional[Union[str, Path]]) -> int:
    rows = read_log(path) if path else []
    return rows[-1]["iteration"] if rows else 0
