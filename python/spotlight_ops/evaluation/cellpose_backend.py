"""Optional Cellpose segmentation from a local model file (never downloads).

Cellpose is not a dependency of this project. It runs only when the user passes a
model file that exists on disk *and* the ``cellpose`` package is importable; otherwise
:func:`cellpose_status` says, in one sentence, why it is skipped, and the evaluation
carries on with the Otsu + watershed segmentation alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..optional import optional_import
from ._validation import as_image


def cellpose_status(model_path: str | Path | None) -> tuple[bool, str]:
    """(runnable, message). A given path that does not exist is an error, not a skip."""
    if model_path is None:
        return False, "Cellpose skipped: no local model file given (pass cellpose_model=PATH / --cellpose-model PATH)."
    path = Path(model_path)
    if not path.is_file():
        raise FileNotFoundError(f"cellpose_model: no such model file: {path}")
    if optional_import("cellpose") is None:
        return False, f"Cellpose skipped: the cellpose package is not installed (model file {path} was given)."
    return True, f"Cellpose ran with the local model {path}."


def segment_cellpose(
    volume: np.ndarray,
    model_path: str | Path,
    diameter: float | None = None,
    anisotropy: float | None = None,
    gpu: bool = False,
) -> np.ndarray:
    """3D Cellpose instance labels of a ZYX ``volume`` with the model at ``model_path``."""
    volume = as_image("volume", volume, ndim=(3,))
    runnable, message = cellpose_status(model_path)
    if not runnable:
        raise RuntimeError(message)
    from cellpose import models

    model = models.CellposeModel(gpu=gpu, pretrained_model=str(model_path))
    kwargs = {"do_3D": True, "z_axis": 0}
    if diameter is not None:
        kwargs["diameter"] = float(diameter)
    if anisotropy is not None:
        kwargs["anisotropy"] = float(anisotropy)
    masks = model.eval(volume.astype(np.float32), **kwargs)[0]
    return np.asarray(masks, dtype=np.int32)
