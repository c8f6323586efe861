"""Training log: a CSV file (always) and TensorBoard (when installed and wanted).

``log.csv`` has the columns ``iteration,loss,seconds`` followed by the run's extra metric columns
(named at run start, for example the batch's predicted and target foreground fractions, or
validation metrics). Numbers are written with ``repr`` so they read back bit-exactly; a metric
without a value in a row is an empty cell and reads back as ``None``.

Durable with the checkpoints: :meth:`LossLog.sync` (flush and fsync) runs before every checkpoint is
published, so the rows up to a checkpoint's iteration are on disk before the checkpoint is, and
:meth:`LossLog.text` (the log so far) goes into every checkpoint. On resume the rows after the
checkpoint's iteration (written before a crash) are dropped, so the log always matches the state it
continues from; the rows up to it are the checkpoint's copy (or, from a checkpoint without one, the
intact rows of the file), rewritten under the current header (a column the old file lacks is empty in
them). That rewrite is atomic (a kill during it leaves the old log whole), and rows are appended after
it. Damage is never silent: reading takes the file line by line, so a bad byte, a torn row or a
missing header costs only its own line, and a resume names each damaged line that held rows up to the
checkpoint, and says whether their rows were restored from the checkpoint.

Every append first checks that ``log.csv`` is still the file it opened: a log removed or replaced
while training raises :class:`~spotlight_ops.files.runfiles.RunFolderLost` rather than writing rows no
one will see. A failed write (a full disk) raises an ``OSError`` naming the file.
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

from ..files.runfiles import RunFolderLost, atomic_write_text

COLUMNS = ("iteration", "loss", "seconds")


def _number(text: str) -> Optional[float]:
    return None if text == "" else float(text)


class _Damaged(ValueError):
    """One line of ``log.csv`` that is not a row (the reason is the message)."""


def _cells(raw: bytes) -> list[str]:
    try:
        text = raw.rstrip(b"\r").decode("utf-8")
    except UnicodeDecodeError as err:
        raise _Damaged(f"byte {raw[err.start]:#04x} at column {err.start + 1} is not UTF-8 text") from None
    return text.split(",")  # the cells are numbers and checked column names: no quoting


def _row(cells: list[str], header: Optional[tuple]) -> dict:
    """A row of numbers; ``header`` None (unknown metric names): the three built-in columns only."""
    if header is not None and len(cells) != len(header):
        raise _Damaged(f"{len(cells)} cells where the header has {len(header)}")
    if len(cells) < len(COLUMNS):
        raise _Damaged(f"{len(cells)} cells, fewer than the {len(COLUMNS)} of every row")
    try:
        row = {"iteration": int(cells[0]), "loss": float(cells[1]), "seconds": float(cells[2])}
        row.update({name: _number(cells[i]) for i, name in enumerate((header or COLUMNS)[3:], 3)})
    except ValueError:
        raise _Damaged("a cell that is not a number") from None
    return row


def _leading_iteration(raw: bytes) -> Optional[int]:
    try:
        return int(raw.split(b",", 1)[0])
    except ValueError:
        return None


def _scan(data: bytes, columns: Optional[Sequence[str]] = None) -> tuple[list, list]:
    """``(rows, damaged)`` of a log's bytes: ``rows`` as ``(line number, row)``, in file order, and
    ``damaged`` as ``(line number, reason, leading iteration or None)``.

    Line 1 is the header; one that is a row instead is read as one under ``COLUMNS + columns``
    (``columns`` None: the built-in columns only) and reported. A last line without its line end (a
    write torn by a crash) is damaged, as is a row whose iteration does not exceed the one before it.
    """
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a line end
    numbered = [(n, raw) for n, raw in enumerate(lines, 1)] + ([(len(lines) + 1, None)] if tail else [])
    expected = None if columns is None else COLUMNS + tuple(columns)
    header, rows, damaged = expected, [], []
    for number, raw in numbered:
        if raw is None:
            damaged.append((number, "torn (no line end)", _leading_iteration(tail)))
            continue
        try:
            cells = _cells(raw)
            if number == 1 and cells[:len(COLUMNS)] == list(COLUMNS):
                try:
                    header = COLUMNS + _check_columns(cells[len(COLUMNS):])
                except ValueError:
                    raise _Damaged("a damaged header") from None
                continue
            try:
                row = _row(cells, header)
            except _Damaged as err:
                raise _Damaged("a damaged header" if number == 1 else str(err)) from None
            if number == 1:
                damaged.append((1, "a row where the header belongs (the header is missing)", None))
            if rows and row["iteration"] <= rows[-1][1]["iteration"]:
                raise _Damaged(f"iteration {row['iteration']} after iteration {rows[-1][1]['iteration']}")
            rows.append((number, row))
        except _Damaged as err:
            damaged.append((number, str(err), _leading_iteration(raw)))
    return rows, damaged


def read_log(path: Union[str, Path], columns: Optional[Sequence[str]] = None) -> list[dict]:
    """The intact rows of a training log as dicts of numbers (``iteration`` an int, the others floats or
    ``None`` where empty). Damaged lines (a bad byte, a wrong cell count, a torn last line) are skipped;
    a log without its header reads its rows under ``COLUMNS + columns`` (the built-in columns when
    ``columns`` is None)."""
    path = Path(path)
    if not path.is_file():
        return []
    return [row for _, row in _scan(path.read_bytes(), columns)[0]]


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


def _line(cells: Sequence) -> str:
    return ",".join(map(str, cells)) + "\r\n"  # csv's line end, as logs have always had


def _ranges(numbers: Sequence[int]) -> str:
    """``1-3, 7``."""
    spans = []
    for n in numbers:
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def _named(err: OSError, path: Path) -> OSError:
    """``err`` naming ``path`` when it names no file (a failed append or fsync names none)."""
    if err.errno is None or err.filename is not None:
        return err
    return type(err)(err.errno, err.strerror, str(path))


class LossLog:
    """Appends ``(iteration, loss, seconds, *metrics)`` rows to ``log.csv`` and optionally TensorBoard.

    Args:
        run_dir: the run folder.
        resume_from_iteration: keep the existing rows up to this iteration (0: a fresh log).
        tensorboard: ``"auto"`` (when installed), True (required) or False.
        columns: names of the extra metric columns, fixed for the run; a mapping gives each name
            its TensorBoard tag (default: the name itself).
        saved: the checkpoint's copy of the log (:meth:`text`), whose rows up to
            ``resume_from_iteration`` replace the file's; None (a checkpoint without one): the file's
            intact rows are kept.
    """

    def __init__(self, run_dir: Union[str, Path], resume_from_iteration: int = 0, tensorboard="auto",
                 columns: Union[Sequence[str], Mapping[str, str]] = (), saved: Optional[str] = None) -> None:
        self.columns = _check_columns(columns)
        self._tags = {name: (columns[name] if isinstance(columns, Mapping) else name) for name in self.columns}
        self.path = Path(run_dir) / "log.csv"
        kept = self._resumed_rows(resume_from_iteration, saved) if resume_from_iteration > 0 else []
        self._lines = [_line(COLUMNS + self.columns)] + [self._render(row) for row in kept]
        # the kept rows go to a new file that replaces the old one atomically: a kill here leaves
        # the old log whole, never a truncated one; then rows are appended to it
        atomic_write_text(self.path, "".join(self._lines))
        self._handle = open(self.path, "a", newline="")
        self._file = os.fstat(self._handle.fileno())
        self._failed = False
        self._offset = kept[-1]["seconds"] if kept else 0.0
        self._start = time.monotonic()
        self._tb = self._open_tensorboard(Path(run_dir) / "tensorboard", tensorboard)

    def _render(self, row: Mapping) -> str:
        return _line([row["iteration"], repr(row["loss"]), repr(row["seconds"])]
                     + [_cell(row.get(name)) for name in self.columns])

    def _resumed_rows(self, upto: int, saved: Optional[str]) -> list[dict]:
        """The rows up to iteration ``upto`` to continue from, with one warning line when the file's
        differ from them or hold damaged lines (see the module docstring)."""
        data = self.path.read_bytes() if self.path.is_file() else None
        rows, damaged = _scan(data or b"", self.columns)
        kept = [row for _, row in rows if row["iteration"] <= upto]
        after = min((n for n, row in rows if row["iteration"] > upto), default=math.inf)
        problems = [] if data is not None else ["missing"]
        for number, reason, iteration in damaged:  # the lines that held (or may have held) rows <= upto
            before = max((row["iteration"] for n, row in rows if n < number), default=0)
            if number < after and (iteration is None or before < iteration <= upto):
                problems.append(f"line {number}: {reason}")
        copy = None if saved is None else [row for _, row in _scan(saved.encode("utf-8"))[0]
                                           if row["iteration"] <= upto]
        restored = copy is not None and [self._render(r) for r in kept] != [self._render(r) for r in copy]
        if restored and data is not None:
            missing = sorted({r["iteration"] for r in copy} - {r["iteration"] for r in kept})
            if missing:
                problems.append(f"iteration(s) {_ranges(missing)} missing")
            if not problems:
                problems.append("rows that differ from the checkpoint's copy")
        if problems:
            shown = "; ".join(problems[:4]) + (f"; and {len(problems) - 4} more damaged line(s)"
                                               if len(problems) > 4 else "")
            if restored:
                done = f"its rows up to iteration {upto} were restored from the checkpoint's copy"
            elif copy is not None:
                done = f"its {len(kept)} rows up to iteration {upto} are intact (the checkpoint's copy agrees)"
            else:
                done = (f"kept its {len(kept)} intact rows up to iteration {upto}; the checkpoint holds no copy of "
                        f"the log to restore the others from (written by an older spotlight)")
            print(f"WARNING: {self.path}: {shown}; {done}", file=sys.stderr)
        return copy if copy is not None else kept

    @staticmethod
    def _open_tensorboard(folder: Path, wanted):
        if wanted is False:
            return None
        from ..optional import optional_import

        tensorboard = optional_import("torch.utils.tensorboard", needs=("tensorboard",), purpose="tensorboard: true",
                                      install="pip install tensorboard" if wanted is True else None)
        return None if tensorboard is None else tensorboard.SummaryWriter(str(folder))

    def _check_file(self, iteration: int) -> None:
        try:
            now = os.stat(self.path)
        except (FileNotFoundError, NotADirectoryError):
            now = None
        if now is None or (now.st_dev, now.st_ino) != (self._file.st_dev, self._file.st_ino):
            raise RunFolderLost(f"{self.path}: the log was removed or replaced while training; stopped before "
                                f"writing the row of iteration {iteration}. --resume continues from the last "
                                f"checkpoint, which restores the log's rows up to it")

    def log(self, iteration: int, loss: float, metrics: Optional[Mapping[str, Optional[float]]] = None) -> None:
        """One row; ``metrics`` maps column names to values (a missing name or None: an empty cell)."""
        metrics = dict(metrics or {})
        unknown = sorted(set(metrics) - set(self.columns))
        if unknown:
            raise ValueError(f"metrics: unknown column(s) {', '.join(unknown)}; this log's columns are "
                             f"{', '.join(self.columns) or '(none)'} (fixed when the run starts)")
        seconds = self._offset + time.monotonic() - self._start
        line = _line([iteration, repr(float(loss)), f"{seconds:.3f}"] + [_cell(metrics.get(name))
                                                                          for name in self.columns])
        self._check_file(iteration)
        try:
            self._handle.write(line)
            self._handle.flush()  # a killed process loses at most the row being written
        except OSError as err:
            self._failed = True
            raise _named(err, self.path) from err
        self._lines.append(line)
        if self._tb is not None:
            self._tb.add_scalar("loss/train", loss, iteration)
            for name in self.columns:
                value = metrics.get(name)
                if value is not None and math.isfinite(float(value)):
                    self._tb.add_scalar(self._tags[name], float(value), iteration)

    def sync(self) -> None:
        """The rows written so far, on disk (fsync): called before a checkpoint is published."""
        try:
            self._handle.flush()
            os.fsync(self._handle.fileno())
        except OSError as err:
            self._failed = True
            raise _named(err, self.path) from err

    def text(self) -> str:
        """The log as written so far (header and rows): the copy a checkpoint holds."""
        return "".join(self._lines)

    def close(self) -> None:
        try:
            self._handle.close()
        except OSError as err:
            if not self._failed:  # a write that failed has been reported; its retry at close would repeat it
                raise _named(err, self.path) from err
        finally:
            if self._tb is not None:
                self._tb.close()

    def __enter__(self) -> "LossLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
