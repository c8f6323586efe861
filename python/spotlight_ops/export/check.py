"""The agreement of an exported model with the PyTorch model it came from, measured at export time.

The error of an export is its largest absolute difference from PyTorch, relative to the largest
absolute value of PyTorch's output on the same input:

    error = max |exported(x) - torch(x)| / max |torch(x)|

An export whose error on the check inputs exceeds :data:`TOLERANCE` is refused (:class:`ExportError`).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

TOLERANCE = 1e-4


class ExportError(RuntimeError):
    """An export that could not be made or does not reproduce the model; names the format and file."""


def relative_error(reference: Tensor, got: Tensor) -> float:
    """``max |got - reference| / max |reference|`` (float64), as the module docstring defines it."""
    reference, got = reference.detach().double().cpu(), got.detach().double().cpu()
    if reference.shape != got.shape:
        return float("inf")
    scale = reference.abs().max().item()
    return (got - reference).abs().max().item() / (scale if scale > 0 else 1.0)


def check_agreement(name: str, reference: Callable[[Tensor], Tensor], exported: Callable[[Tensor], Tensor],
                    inputs: list, tolerance: float = TOLERANCE) -> float:
    """The largest :func:`relative_error` of ``exported`` against ``reference`` over ``inputs``; an
    :class:`ExportError` naming ``name`` when it exceeds ``tolerance``."""
    worst = 0.0
    with torch.inference_mode():
        for x in inputs:
            worst = max(worst, relative_error(reference(x), exported(x)))
    if not worst <= tolerance:
        raise ExportError(f"{name}: the export differs from the PyTorch model by {worst:.3g} of the output's "
                          f"range (tolerance {tolerance:g}); it was not kept")
    return worst
