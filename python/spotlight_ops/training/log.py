"""Training log: a CSV file (always) and TensorBoard (when installed and wanted).

``log.csv`` has the columns ``iteration,loss,seconds`` followed by the run's extra metric columns
(named at run start, for example the batch's predicted and target foreground fractions, or
validation metrics). Numbers are written with ``repr`` so they read back bit-exactly; a metric
without a value in a row is an empty cell and reads back as ``None``. On resume the rows after the
checkpoint's iteration (written before a crash) are dropped, so the log always matches the state it
continues from; kept rows are rewritten under the current header (a column the old file lacks is
empty in them). That rewrite is atomic (a kill during it leaves the old log whole), and rows are
appended after it.
"""

from __future__ import annotations

import csv
import io
import math
import time
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

from ..files.runfiles import atomic_write_text

COLUMNS = ("iteration", "loss", "seconds")


def _number(text: Optional[str]) -> Optional[float]:
    return None if text is None or text == "" else float(text)


def read_log(path: Union[str, Path]) -> list[dict]:
    """Rows of a training log as dicts of numbers (``iteration`` an int, the others floats or ``None``
    where empty). A torn last line (a crash mid-write: no line end) is skipped, as is any row whose
    cell count differs from the header's."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        text = handle.read()
    if not text.endswith("\n"):
        text = text[:text.rfind("\n") + 1]
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if not header:
        return []
    rows = []
    extra = [name for name in header if name not in COLUMNS]
    for cells in reader:
        if len(cells) != len(header):
            continue
        raw = dict(zip(header, cells))
        try:
            row = {"iteration": int(raw["iteration"]), "loss": float(raw["loss"]),
                   "seconds": float(raw["seconds"])}
            row.update({name: _number(raw[name]) for name in extra})
        except (TypeError, ValueError, KeyError):
            continue
        rows.append(row)
    return rows


def _check_columns(columns: Sequence[str]) -> tuple:
    names = tuple(columns)
    for name in names:
        if not isinstance(name, str) or not name or any(c in name for c in ',"\r\n') or name != name.strip():
            raise ValueError(f"columns: a metric column name must be a non-empty string without commas, quotes, "
                             f"newlines or surrounding spaces, got {name!r}")
        if name in COLUMNS:
            raise ValueError(f"columns: {name!r} is a built-in column of log.csv")
    if len(set(names)) != len(names):
        raise ValueError(f"columns: duplicate metric column names in {names!r}")
    return names


def _cell(value: Optional[float]) -> str:
    return "" if value is None else repr(float(value))


class LossLog:
    """Appends ``(iteration, loss, seconds, *metrics)`` rows to ``log.csv`` and optionally TensorBoard.

    Args:
        run_dir: the run folder.
        resume_from_iteration: keep the existing rows up to this iteration (0: a fresh log).
        tensorboard: ``"auto"`` (when installed), True (required) or False.
        columns: names of the extra metric columns, fixed for the run; a mapping gives each name
            its TensorBoard tag (default: the name itself).
    """

    def __init__(self, run_dir: Union[str, Path], resume_from_iteration: int = 0, tensorboard="auto",
                 columns: Union[Sequence[str], Mapping[str, str]] = ()) -> None:
        self.columns = _check_columns(columns)
        self._tags = {name: (columns[name] if isinstance(columns, Mapping) else name) for name in self.columns}
        self.path = Path(run_dir) / "log.csv"
        kept = [r for r in read_log(self.path) if r["iteration"] <= resume_from_iteration] \
            if resume_from_iteration > 0 else []
        # the kept rows go to a new file that replaces the old one atomically: a kill here leaves
        # the old log whole, never a truncated one; then rows are appended to it
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(COLUMNS + self.columns)
        for r in kept:
            writer.writerow([r["iteration"], repr(r["loss"]), repr(r["seconds"])]
                            + [_cell(r.get(name)) for name in self.columns])
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
        from ..optional import optional_import

        tensorboard = optional_import("torch.utils.tensorboard", needs=("tensorboard",), purpose="tensorboard: true",
                                      install="pip install tensorboard" if wanted is True else None)
        return None if tensorboard is None else tensorboard.SummaryWriter(str(folder))

    def log(self, iteration: int, loss: float, metrics: Optional[Mapping[str, Optional[float]]] = None) -> None:
        """One row; ``metrics`` maps column names to values (a missing name or None: an empty cell)."""
        metrics = dict(metrics or {})
        unknown = sorted(set(metrics) - set(self.columns))
        if unknown:
            raise ValueError(f"metrics: unknown column(s) {', '.join(unknown)}; this log's columns are "
                             f"{', '.join(self.columns) or '(none)'} (fixed when the run starts)")
        seconds = self._offset + time.monotonic() - self._start
        self._writer.writerow([iteration, repr(float(loss)), f"{seconds:.3f}"]
                              + [_cell(metrics.get(name)) for name in self.columns])
        self._handle.flush()  # a killed process loses at most the row being written
        if self._tb is not None:
            self._tb.add_scalar("loss/train", loss, iteration)
            for name in self.columns:
                value = metrics.get(name)
                if value is not None and math.isfinite(float(value)):
                    self._tb.add_scalar(self._tags[name], float(value), iteration)

    def close(self) -> None:
        self._handle.close()
        if self._tb is not None:
            self._tb.close()

    def __enter__(self) -> "LossLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
