"""Crash-safe checkpoints: atomic writes, integrity checks, and a last-good copy.

File format (:mod:`.archive`): the zip archive of ``torch.save``, so ``torch.load(path,
weights_only=True)`` reads it, with a SHA-256 of its records stored inside as one more record (and,
for model files, their metadata as JSON). Loading checks the archive, every record and the digest,
so a truncated or corrupted file raises :class:`CheckpointError` instead of loading garbage. Files
of the earlier framed format (magic bytes, SHA-256, length, payload) are read too.

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

import os
import sys
from pathlib import Path
from typing import Any, Optional, Union

import torch

from . import archive
from .archive import CheckpointError, digest_of, encode, read_digest
from .runfiles import atomic_write_bytes, fault_point, fsync_dir, remove_temporaries, temporary_name

LATEST = "checkpoint_latest.pt"
LAST_GOOD = "checkpoint_last_good.pt"

__all__ = ["CheckpointError", "CheckpointManager", "digest_of", "encode", "load_checkpoint", "read_digest",
           "save_atomic"]


def save_atomic(path: Union[str, Path], payload: Any, metadata: Optional[dict] = None) -> Path:
    """Writes ``payload`` (torch-serializable; ``metadata``: JSON-able, model files) atomically and durably."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_bytes(path, encode(payload, metadata))


def load_checkpoint(path: Union[str, Path], map_location: Union[str, torch.device] = "cpu") -> dict:
    """Reads and verifies a checkpoint or model file; :class:`CheckpointError` otherwise.

    A checkpoint's payload is the dict it holds; a model file's is its metadata with the state dict
    under ``"model"`` (:mod:`spotlight_ops.models.model_file`).
    """
    found = archive.read(path, map_location)
    if found.metadata is not None:
        return {**found.metadata, "model": found.obj}
    if not isinstance(found.obj, dict):
        raise CheckpointError(f"{path}: checkpoint payload is a {type(found.obj).__name__}, expected a dict")
    return found.obj


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
