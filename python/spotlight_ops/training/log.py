"""Loss logging: a CSV file (always) and TensorBoard (when installed and wanted).

The CSV ``log.csv`` has columns ``iteration,loss,seconds`` and then any extra named metric
columns (validation: ``val_loss,val_fg_pred,val_fg_target``, empty in rows without them); numbers
are written with ``repr`` so they read back bit-exactly. On resume the rows after the checkpoint's iteration (written
before a crash) are dropped, so the log always matches the state it continues from.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Optional, Union

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
                row = {"iteration": int(raw["iteration"]), "loss": float(raw["loss"]),
                       "seconds": float(raw["seconds"])}
                for name, value in raw.items():
                    if name is not None and name not in row:
                        row[name] = float(value) if value not in (None, "") else None
            except (TypeError, ValueError, KeyError):
                continue
            rows.append(row)
    return rows


class LossLog:
    """Appends ``(iteration, loss)`` rows to ``log.csv`` and optionally TensorBoard."""

    def __init__(self, run_dir: Union[str, Path], resume_from_iteration: int = 0, tensorboard="auto",
                 extra_columns: tuple = ()) -> None:
        self.path = Path(run_dir) / "log.csv"
        self.extra_columns = tuple(extra_columns)
        kept = [r for r in read_log(self.path) if r["iteration"] <= resume_from_iteration] \
            if resume_from_iteration > 0 else []
        self.rows = kept
        self._handle = open(self.path, "w", newline="")
        self._writer = csv.writer(self._handle)
        self._writer.writerow(COLUMNS + self.extra_columns)
        for r in kept:
            self._writer.writerow([r["iteration"], repr(r["loss"]), repr(r["seconds"])] + self._extras(r))
        self._handle.flush()
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

    def _extras(self, metrics: dict) -> list:
        return ["" if metrics.get(c) is None else repr(float(metrics[c])) for c in self.extra_columns]

    def log(self, iteration: int, loss: float, **metrics: float) -> None:
        """One row; ``metrics`` fill the extra columns of their names (others stay empty)."""
        unknown = sorted(set(metrics) - set(self.extra_columns))
        if unknown:
            raise ValueError(f"metrics {unknown} are not columns of {self.path} ({self.extra_columns})")
        seconds = self._offset + time.monotonic() - self._start
        self._writer.writerow([iteration, repr(float(loss)), f"{seconds:.3f}"] + self._extras(metrics))
        self._handle.flush()  # a killed process loses at most the row being written
        self.rows.append({"iteration": iteration, "loss": float(loss), "seconds": seconds,
                          **{c: metrics.get(c) for c in self.extra_columns}})
        if self._tb is not None:
            self._tb.add_scalar("loss/train", loss, iteration)
            for name, value in metrics.items():
                if value is not None:
                    self._tb.add_scalar(name.replace("val_", "val/", 1), value, iteration)

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
