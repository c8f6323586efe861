"""Crash-safe checkpoints: atomic writes, integrity checks, and a last-good copy.

File format: ``MAGIC`` (16 bytes) + SHA-256 of the payload (32 bytes) + payload length
(8 bytes, little endian) + the payload, a ``torch.save`` archive. Loading checks all three,
so a truncated or corrupted file raises :class:`CheckpointError` instead of loading garbage.

Writing (:func:`save_atomic`): :func:`~.runfiles.atomic_write_bytes` (temporary file in the same
folder, fsync, ``os.replace``, folder fsync): a crash leaves either the old or the new file, never a
torn one.

:class:`CheckpointManager` keeps two files in a run's ``checkpoints/`` folder:
``checkpoint_latest.pt`` and ``checkpoint_last_good.pt`` (the one before, known good). A save
writes the new checkpoint to a temporary first, then hard-links the current latest to a second
temporary and renames that over last-good, then renames the new checkpoint over latest: at every
instant ``checkpoint_latest.pt`` exists and is intact. The current latest becomes last-good only if
it is known intact (written by this process or verified when resumed from); a corrupt latest is
never promoted.
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

from .runfiles import atomic_write_bytes, fault_point, fsync_dir, remove_temporaries, temporary_name

MAGIC = b"SPOTLIGHT-CKPT01"
_HEADER = struct.Struct("<16s32sQ")
LATEST = "checkpoint_latest.pt"
LAST_GOOD = "checkpoint_last_good.pt"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used (missing, truncated, corrupted, incompatible); names the file."""


def encode(payload: dict) -> bytes:
    """The file's bytes for ``payload``: header (magic, SHA-256, length) + the ``torch.save`` archive."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    return _HEADER.pack(MAGIC, hashlib.sha256(data).digest(), len(data)) + data


def digest_of(encoded: bytes) -> str:
    """The payload's SHA-256 (hex) recorded in the header of :func:`encode`'s bytes."""
    return _HEADER.unpack_from(encoded)[1].hex()


def read_digest(path: Union[str, Path]) -> Optional[str]:
    """The payload SHA-256 (hex) in a checkpoint's header, or None when unreadable (no full check)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(_HEADER.size)
    except OSError:
        return None
    if len(head) < _HEADER.size or head[:16] != MAGIC:
        return None
    return _HEADER.unpack(head)[1].hex()


def save_atomic(path: Union[str, Path], payload: dict) -> Path:
    """Writes ``payload`` (torch-serializable) to ``path`` atomically and durably."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_bytes(path, encode(payload))


def load_checkpoint(path: Union[str, Path], map_location: Union[str, torch.device] = "cpu") -> dict:
    """Reads and verifies a checkpoint written by :func:`save_atomic`; :class:`CheckpointError` otherwise."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"{path}: cannot read checkpoint ({err})") from err
    if not raw.startswith(MAGIC[:len(raw)]):
        raise CheckpointError(f"{path}: not a spotlight checkpoint (bad magic bytes)")
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
        remove_temporaries(self.folder)

    def save(self, payload: dict) -> str:
        """Writes ``payload`` as the new latest (rotation in the module docstring); returns its SHA-256."""
        self.folder.mkdir(parents=True, exist_ok=True)
        encoded = encode(payload)
        if not (self._latest_is_good and self.latest.exists()):
            atomic_write_bytes(self.latest, encoded)  # nothing to promote: a plain atomic replace
        else:
            staged = self.folder / f".{LATEST}.new.tmp-{os.getpid()}"
            promoted = temporary_name(self.last_good)
            try:
                atomic_write_bytes(staged, encoded)  # the new checkpoint, complete and synced, beside latest
                promoted.unlink(missing_ok=True)
                try:
                    os.link(self.latest, promoted)  # last-good becomes the current latest; latest stays
                except OSError:  # a filesystem without hard links: a copy, written atomically too
                    atomic_write_bytes(promoted, self.latest.read_bytes())
                os.replace(promoted, self.last_good)
                fault_point(f"rotated:{self.last_good}")
                os.replace(staged, self.latest)
                fault_point(f"renamed:{self.latest}")
                fsync_dir(self.folder)
            except OSError as err:  # name the checkpoint, not the temporary (removed below)
                if err.errno is None:
                    raise
                raise type(err)(err.errno, err.strerror, str(self.latest)) from err
            finally:
                staged.unlink(missing_ok=True)
                promoted.unlink(missing_ok=True)
        self._latest_is_good = True
        return digest_of(encoded)

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
