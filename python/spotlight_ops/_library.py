"""Finds and loads the compiled `spotlight` operator library."""

from __future__ import annotations

import os
from pathlib import Path

import torch

_REBUILD = (
    "Build it against the installed torch from the spotlight checkout with\n"
    "    pip install --no-build-isolation .\n"
    "or point SPOTLIGHT_OPS_LIBRARY at a libspotlight_ops.so built for this torch."
)


def library_path() -> Path:
    """Where the op library is looked for: $SPOTLIGHT_OPS_LIBRARY, else the package's lib/."""
    env = os.environ.get("SPOTLIGHT_OPS_LIBRARY")
    return Path(env) if env else Path(__file__).resolve().parent / "lib" / "libspotlight_ops.so"


def load() -> Path:
    """Loads the op library once; raises ImportError saying what is wrong and how to fix it."""
    path = library_path()
    if not path.is_file():
        raise ImportError(f"spotlight_ops: the compiled op library was not found at {path}.\n{_REBUILD}")
    built_for = path.parent / "build_info.txt"
    if built_for.is_file():
        expected = built_for.read_text().strip()
        if expected and expected != torch.__version__:
            raise ImportError(
                f"spotlight_ops: {path} was built for torch {expected}, but torch {torch.__version__} "
                f"is installed.\n{_REBUILD}"
            )
    try:
        torch.ops.load_library(str(path))
    except OSError as err:  # undefined symbols: another torch, another ABI
        raise ImportError(f"spotlight_ops: could not load {path}: {err}\n{_REBUILD}") from err
    return path
