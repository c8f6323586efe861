"""One-line messages and exit codes for the ``spotlight`` command's failures.

A user error (bad argument, config or data file, a full disk, a read-only folder, no GPU, a run
folder in use, a checkpoint of another run, a missing optional package that was asked for) is exit
code 2; a failure of the run itself (non-finite loss, no intact checkpoint) or an unexpected error is
1; a run folder removed, moved or taken over while training (:class:`~.files.runfiles.RunFolderLost`)
is 3. Messages name the file or argument and say what to do.
"""

from __future__ import annotations

import errno

_WHAT_TO_DO = {
    errno.ENOSPC: "no space left on the device; free space or choose another folder (--out), then run again "
                  "(a training resumes from its last checkpoint with --resume)",
    errno.EDQUOT: "disk quota exceeded; free space or choose another folder (--out), then run again",
    errno.EROFS: "read-only file system; choose a writable folder (--out)",
    errno.EACCES: "permission denied; choose a folder you can write to (--out) or fix its permissions",
    errno.EPERM: "operation not permitted; choose a folder you can write to (--out) or fix its permissions",
    errno.ENOENT: "no such file or folder; check the path",
    errno.ENOTDIR: "a path component is not a folder; check the path",
    errno.EISDIR: "is a folder, expected a file; check the path",
}


def _one_line(text: str) -> str:
    return "; ".join(part.strip() for part in str(text).splitlines() if part.strip())


def describe(err: BaseException) -> str:
    """The one-line message for ``err``."""
    if isinstance(err, OSError) and err.errno is not None and not _is_user_error_type(err):
        where = err.filename or "(file unknown)"
        what = _WHAT_TO_DO.get(err.errno, err.strerror or str(err))
        return _one_line(f"{where}: {what}")
    if _is_user_error_type(err) or _is_run_failure(err):
        return _one_line(str(err)) or type(err).__name__
    return _one_line(f"{type(err).__name__}: {err}") + \
        " (an unexpected error: rerun with --debug for the traceback and report it)"


def _is_user_error_type(err: BaseException) -> bool:
    from .data import DataError
    from .optional import MissingDependency
    from .files.runfiles import RunLockedError

    return isinstance(err, (ValueError, FileExistsError, FileNotFoundError, RunLockedError, DataError,
                            MissingDependency)) and not isinstance(err, UnicodeError)


def _is_run_failure(err: BaseException) -> bool:
    from .files.checkpoint import CheckpointError
    from .files.runfiles import RunFolderLost

    return isinstance(err, (CheckpointError, FloatingPointError, RunFolderLost))


def exit_code(err: BaseException) -> int:
    from .files.runfiles import RunFolderLost

    if isinstance(err, RunFolderLost):
        return RunFolderLost.exit_code
    if _is_run_failure(err):
        return 1
    if _is_user_error_type(err) or isinstance(err, OSError):
        return 2
    return 1
