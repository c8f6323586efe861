"""Crash-safe checkpoints: atomic writes, integrity checks, and a last-good copy.

File format: ``MAGIC`` (16 bytes) + SHA-256 of the payload (32 bytes) + payload length
(8 bytes, little endian) + the payload, a ``torch.save`` archive. Loading checks all three,
so a truncated or corrupted file raises :class:`CheckpointError` instead of loading garbage.

Writing (:func:`save_atomic`): write to a temporary file in the same folder, flush, fsync,
``os.replace`` onto the destination, fsync the folder: a crash leaves either the old or the
new file, never a torn one.

:class:`CheckpointManager` keeps two files in a run's ``checkpoints/`` folder:
``checkpoint_latest.pt`` and ``checkpoint_last_good.pt`` (the one before, known good). Before a
new latest is written, the current latest becomes last-good only if it is known intact (written
by this process or verified when resumed from); a corrupt latest is never promoted.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import sys
from pathlib import Path
from typing import Optional, Union

import torch

MAGIC = b"SPOTLIGHT-CKPT01"
_HEADER = struct.Struct("<16s32sQ")
LATEST = "checkpoint_latest.pt"
LAST_GOOD = "checkpoint_last_good.pt"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used (missing, truncated, corrupted, incompatible); names the file."""


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some platforms cannot open folders; the rename is still atomic there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_atomic(path: Union[str, Path], payload: dict) -> Path:
    """Writes ``payload`` (torch-serializable) to ``path`` atomically and durably."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    header = _HEADER.pack(MAGIC, hashlib.sha256(data).digest(), len(data))
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            handle.write(header)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)
    return path


def load_checkpoint(path: Union[str, Path], map_location: Union[str, torch.device] = "cpu") -> dict:
    """Reads and verifies a checkpoint written by :func:`save_atomic`; :class:`CheckpointError` otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"{path}: cannot read checkpoint ({err})") from err
    if len(raw) < _HEADER.size:
        raise CheckpointError(f"{path}: checkpoint truncated ({len(raw)} bytes, shorter than its header)")
    magic, digest, length = _HEADER.unpack_from(raw)
    if magic != MAGIC:
        raise CheckpointError(f"{path}: not a spotlight checkpoint (bad magic bytes)")
    data = raw[_HEADER.size:]
    if len(data) != length:
        raise CheckpointError(f"{path}: checkpoint truncated or padded: header says {length} payload bytes, "
                              f"file holds {len(data)}")
    if hashlib.sha256(data).digest() != digest:
        raise CheckpointError(f"{path}: checkpoint corrupted (SHA-256 of the payload does not match its header)")
    try:
        payload = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as err:  # an intact file from an incompatible version
        raise CheckpointError(f"{path}: cannot unpickle checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: checkpoint payload is a {type(payload).__name__}, expected a dict")
    return payload


class CheckpointManager:
    """Latest and last-good checkpoints of one run folder (see the module docstring)."""

    def __init__(self, folder: Union[str, Path]) -> None:
        self.folder = Path(folder)
        self.latest = self.folder / LATEST
        self.last_good = self.folder / LAST_GOOD
        self._latest_is_good = False

    def exists(self) -> bool:
        return self.latest.exists() or self.last_good.exists()

    def remove_stale_temporaries(self) -> None:
        """Temporary files left by a process killed while writing."""
        for tmp in self.folder.glob(".checkpoint_*.tmp-*"):
            tmp.unlink(missing_ok=True)

    def save(self, payload: dict) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        if self._latest_is_good and self.latest.exists():
            os.replace(self.latest, self.last_good)
        save_atomic(self.latest, payload)
        self._latest_is_good = True
        return self.latest

    def load_for_resume(self, map_location="cpu") -> tuple[Optional[dict], Optional[Path]]:
        """The newest intact checkpoint, or (None, None) when the folder holds none.

        A corrupt latest is reported on stderr, renamed ``*.corrupt`` (kept for inspection) and
        the last-good checkpoint is used; if that is corrupt too, :class:`CheckpointError`.
        """
        self.remove_stale_temporaries()
        errors = []
        for candidate in (self.latest, self.last_good):
            if not candidate.exists():
                continue
            try:
                payload = load_checkpoint(candidate, map_location)
            except CheckpointError as err:
                errors.append(str(err))
                print(f"ERROR: {err}", file=sys.stderr)
                continue
            if errors:
                print(f"WARNING: resuming from the last-good checkpoint {candidate} "
                      f"(iteration {payload.get('iteration')}) instead", file=sys.stderr)
                corrupt = self.latest.with_name(self.latest.name + ".corrupt")
                if self.latest.exists():
                    os.replace(self.latest, corrupt)
                    print(f"WARNING: the unreadable checkpoint was kept as {corrupt}", file=sys.stderr)
                # the last-good file stays where it is; the next save writes a fresh latest
                self._latest_is_good = False
            else:
                self._latest_is_good = candidate == self.latest
            return payload, candidate
        if errors:
            raise CheckpointError("no intact checkpoint to resume from:\n  " + "\n  ".join(errors))
        return None, None
