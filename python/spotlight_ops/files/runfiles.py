"""Files of a run folder: atomic writes, the one-trainer lock, and deterministic fault injection.

Atomic write (:func:`atomic_write_bytes`): the bytes go to a temporary file ``.NAME.tmp-PID`` in the
destination's folder, which is flushed and fsynced, moved over the destination with ``os.replace``
(atomic on POSIX), and the folder is fsynced so the rename itself survives a power cut. A process
killed at any moment leaves the old file or the new one, never a torn one; a failed write (disk
full, read-only folder) removes its temporary and leaves the old file as it was.

Lock (:class:`RunLock`): ``flock`` on ``RUN/.lock``. The kernel drops the lock when the process dies,
however it dies, so a crashed or killed run never leaves the folder locked; a second trainer on the
same folder fails at once with :class:`RunLockedError`. The lock file is locked, never renamed (a lock
is held on an inode), and only names the holder for the error message. A lock is tied to the identity
of the folder and of the lock file it was taken in (device and inode of each, both held open so that
neither number can be reused by a file created later): :meth:`RunLock.check`,
called before every write of a training, raises :class:`RunFolderLost` once the path ``RUN`` or
``RUN/.lock`` names anything else (the folder removed, moved or replaced, the lock file removed and
taken by another trainer), so a training never goes on writing into a folder no one sees, or into
another training's.

Fault injection, for the tests: ``SPOTLIGHT_FAULT=kill@N`` sends SIGKILL to the process at the N-th
fault point (1-based), ``SPOTLIGHT_FAULT=enospc@N`` raises ``OSError(ENOSPC)`` there. Every atomic
write passes three points (``partial``: half the bytes in the temporary; ``synced``: temporary
complete, before the rename; ``renamed``: after the rename, before the folder fsync), and callers add
their own (:func:`fault_point`). ``SPOTLIGHT_FAULT_TRACE=FILE`` appends one line per point passed
(``N label``), so a test can list the points of a run and then kill at each one.
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
from pathlib import Path
from typing import Optional, Union

_points_passed = 0


def reset_fault_points() -> None:
    """Restart the fault-point count (tests running several trainings in one process)."""
    global _points_passed
    _points_passed = 0


def fault_point(label: str) -> None:
    """Counts one fault point; kills the process or raises ENOSPC when ``SPOTLIGHT_FAULT`` names it."""
    global _points_passed
    spec = os.environ.get("SPOTLIGHT_FAULT")
    trace = os.environ.get("SPOTLIGHT_FAULT_TRACE")
    if not spec and not trace:
        return
    _points_passed += 1
    if trace:
        with open(trace, "a") as handle:
            handle.write(f"{_points_passed} {label}\n")
    if not spec:
        return
    kind, _, at = spec.partition("@")
    if not at.isdigit() or kind not in ("kill", "enospc"):
        raise ValueError(f"SPOTLIGHT_FAULT must be kill@N or enospc@N, got {spec!r}")
    if _points_passed == int(at):
        if kind == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), label.split(":", 1)[-1])


def fsync_dir(folder: Union[str, Path]) -> None:
    """fsync a folder so a rename in it is durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temporary_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def remove_temporaries(folder: Union[str, Path]) -> None:
    """Temporaries left by a process killed while writing (``.NAME.tmp-PID``)."""
    folder = Path(folder)
    if folder.is_dir():
        for tmp in folder.glob(".*.tmp-*"):
            tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: Union[str, Path], data: bytes, label: Optional[str] = None) -> Path:
    """Writes ``data`` to ``path`` atomically and durably (see the module docstring)."""
    path = Path(path)
    label = label or path.name
    tmp = temporary_name(path)
    try:
        with open(tmp, "wb") as handle:
            half = len(data) // 2
            handle.write(data[:half])
            handle.flush()
            fault_point(f"partial:{path}")
            handle.write(data[half:])
            handle.flush()
            os.fsync(handle.fileno())
        fault_point(f"synced:{path}")
        os.replace(tmp, path)
    except OSError as err:
        if err.errno is None or err.filename not in (None, str(tmp), tmp):
            raise
        # name the destination, not the temporary (which is removed below)
        raise type(err)(err.errno, err.strerror, str(path)) from err
    finally:
        if tmp.exists():
            tmp.unlink()
    fault_point(f"renamed:{path}")
    fsync_dir(path.parent)
    return path


def atomic_write_text(path: Union[str, Path], text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


class RunLockedError(RuntimeError):
    """Another live process trains in this run folder."""


class RunFolderLost(RuntimeError):
    """The run folder, its lock or its log was removed, moved or replaced while a training wrote to it.

    ``exit_code`` 3: ``spotlight train`` stopped without writing further, neither into the removed
    folder nor into whatever now stands at its path (another training may own it).
    """

    exit_code = 3


def _identity(stat: os.stat_result) -> tuple:
    return stat.st_dev, stat.st_ino


def _identity_of(path: Path) -> Optional[tuple]:
    """(device, inode) of ``path``; None when nothing is there."""
    try:
        return _identity(os.stat(path))
    except (FileNotFoundError, NotADirectoryError):
        return None


class RunLock:
    """An exclusive ``flock`` on ``RUN/.lock`` for the life of a training (see the module docstring)."""

    def __init__(self, run_dir: Union[str, Path]) -> None:
        self.path = Path(run_dir) / ".lock"
        self._fd: Optional[int] = None
        self._folder_fd: Optional[int] = None
        self._folder: Optional[tuple] = None  # (device, inode) of the folder the lock was taken in

    def acquire(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # the folder stays open while the lock is held: an open folder (like the open lock file) keeps its
        # inode, so a folder created later at the same path cannot reuse its number and pass for it
        folder = os.open(self.path.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:  # the lock file is opened in that very folder, so the two identities belong together
            fd = os.open(self.path.name, os.O_RDWR | os.O_CREAT, 0o644, dir_fd=folder)
        except OSError:
            os.close(folder)
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            os.close(folder)
            raise RunLockedError(f"{self.path.parent}: another training is running in this folder ({holder}); "
                                 f"wait for it to end, or choose another --out") from None
        except OSError:
            os.close(fd)
            os.close(folder)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {os.uname().nodename}\n".encode(), 0)
        self._fd, self._folder_fd = fd, folder
        self._folder = _identity(os.fstat(folder))
        return self

    def check(self, at: str) -> None:
        """Raises :class:`RunFolderLost` unless ``RUN`` and ``RUN/.lock`` are still the folder and the file
        this lock was taken on; ``at`` names the write checked (for the message). Two ``stat`` calls:
        cheap enough around every log row."""
        if self._fd is None:
            return
        run_dir = self.path.parent
        folder, lock = _identity_of(run_dir), _identity_of(self.path)
        if folder == self._folder and lock == _identity(os.fstat(self._fd)):
            return
        if folder is None:
            what = "the run folder was removed or moved while training"
        elif folder != self._folder:
            what = "the run folder was replaced while training (another folder now has its path)"
        else:
            what = "the run folder's .lock was removed while training (another training may hold a new one)"
        raise RunFolderLost(f"{run_dir}: {what}; stopped at {at}, writing nothing more. See what is at {run_dir} "
                            f"now before resuming it (--resume continues from its last intact checkpoint)")

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            os.close(self._folder_fd)
            self._fd = self._folder_fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
