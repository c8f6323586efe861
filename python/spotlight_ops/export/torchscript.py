"""TorchScript export: the model traced, loadable by ``torch.jit.load`` in Python and by libtorch in C++.

F-net's forward pass has no data-dependent control flow, so a trace at one input size holds for every
size that is a multiple of ``2**depth`` (checked at export on a second size and batch). The file
carries the model's description as an extra file, ``spotlight.json`` (``torch.jit.load(path,
_extra_files={"spotlight.json": ""})``). PyTorch marks ``torch.jit`` deprecated in favour of
``torch.export``; TorchScript stays the format that libtorch, deepImageJ and bioimage.io consumers
load, so it is written here and the deprecation warnings of the trace are silenced.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Union

import torch
from torch import nn

from ..files.runfiles import atomic_write_bytes

EXTRA_FILE = "spotlight.json"


def trace(model: nn.Module, example: torch.Tensor) -> torch.jit.ScriptModule:
    """``torch.jit.trace`` of ``model`` (in eval mode) at ``example``, without the trace's warnings
    (its deprecation, and F-net's input checks seen as constants: they hold for every valid input)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.trace.* is deprecated", category=FutureWarning)
        return torch.jit.trace(model.eval(), example, check_trace=False)


def export_torchscript(model: nn.Module, path: Union[str, Path], example: torch.Tensor, metadata: dict) -> Path:
    """Writes the traced ``model`` to ``path`` (atomically), with ``metadata`` as ``spotlight.json``."""
    traced = trace(model, example)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.save.* is deprecated", category=FutureWarning)
        torch.jit.save(traced, buffer, _extra_files={EXTRA_FILE: json.dumps(metadata, sort_keys=True)})
    return atomic_write_bytes(Path(path), buffer.getvalue())


def load_torchscript(path: Union[str, Path], device: Union[str, torch.device] = "cpu") -> tuple:
    """``(module, metadata)`` of a file written by :func:`export_torchscript`."""
    extra = {EXTRA_FILE: ""}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.load.* is deprecated", category=FutureWarning)
        module = torch.jit.load(str(path), map_location=device, _extra_files=extra)
    return module.eval(), json.loads(extra[EXTRA_FILE] or "{}")
