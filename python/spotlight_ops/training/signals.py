"""Stopping a training by signal: SIGTERM, SIGHUP and SIGINT (Ctrl-C) save a checkpoint first.

The handlers only note the signal; the loop finishes the iteration in progress, saves a checkpoint of
it and raises :class:`Stopped`, whose ``exit_code`` is 128 + the signal number, as a shell reports a
process ended by that signal (143 for SIGTERM, 129 for SIGHUP, 130 for SIGINT), so job schedulers see
a pre-empted job. A second SIGINT raises ``KeyboardInterrupt`` at once, without a checkpoint, for a
user who will not wait for the save (exit 130 too; the iterations since the last checkpoint are lost).
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path

STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP", "SIGINT") if hasattr(signal, name))


class Stopped(Exception):
    """Training stopped by SIGTERM, SIGHUP or SIGINT after saving a checkpoint at the current iteration."""

    def __init__(self, signum: int, iteration: int, checkpoint: Path, run_dir: Path) -> None:
        self.signum, self.iteration, self.checkpoint = signum, iteration, checkpoint
        self.exit_code = 128 + signum
        super().__init__(f"stopped by {signal.Signals(signum).name} at iteration {iteration}; checkpoint saved to "
                         f"{checkpoint}; continue with: spotlight train --out {run_dir} --resume")


class StopRequests:
    """Handlers of :data:`STOP_SIGNALS` for the life of a ``with`` block (main thread only): ``signum`` is
    the first signal received (0: none). ``announce``: say on stderr, at the first Ctrl-C, what happens
    next (the main process; every process of a DDP run gets the terminal's SIGINT)."""

    def __init__(self, announce: bool = True) -> None:
        self.signum = 0
        self.announce = announce
        self._interrupts = 0
        self._previous = {}

    def __enter__(self) -> "StopRequests":
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._note)
        return self

    def _note(self, signum, frame) -> None:
        if signum == signal.SIGINT:
            self._interrupts += 1
            if self._interrupts > 1:
                raise KeyboardInterrupt
            if self.announce:
                try:  # a handler may run while stderr is being written: never fail over the message
                    sys.stderr.write("\nCtrl-C: saving a checkpoint at the end of this iteration, then stopping; "
                                     "press Ctrl-C again to stop at once (losing the iterations since the last "
                                     "checkpoint)\n")
                except (RuntimeError, OSError, ValueError):
                    pass
        self.signum = self.signum or signum

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
