r"""Whole-volume prediction with a trained F-net, tiled so that any volume fits in memory.

The (preprocessed) signal is cut into tiles of ``tile_size`` overlapping by ``overlap`` voxels and
the tile predictions are blended with a separable raised-cosine window (:mod:`.prediction.tiles`):

    P(v) = sum_t w_t(v) P_t(v) / sum_t w_t(v)

Every weight is positive, so the division is exact at the volume borders too; in the middle of the
volume the seams (where zero padding inside the network spoils a tile's edge) get small weight.
With one tile covering the volume the result is the untiled prediction.

Tiles go through the network ``batch_tiles`` at a time (one forward pass each), which changes
nothing but the speed: in eval mode every sample of a batch is computed on its own.

Test-time augmentation (``tta``, :mod:`spotlight_ops.tta`): each tile is also predicted under
every symmetry ``g`` of the YX square (``"yx"``: 8, quarter turns and reflections) or those with z
flips too (``"zyx"``: 16), each prediction mapped back, and the tile's prediction is their mean,
``P_t = (1 / |G|) sum_{g in G} g^{-1}(net(g(x_t)))``; the transformed copies of the tiles of a batch
share one forward pass (two when Y != X: the odd quarter turns give ``(Z, X, Y)`` tiles).

Any ``nn.Module`` mapping ``[N, C_in, Z, Y, X]`` to ``[N, C_out, Z, Y, X]`` predicts (a TorchScript
module too); tiles are rounded to its ``size_multiple`` (every spatial size of its input must be a
multiple of it), which F-net states itself and other modules are given.

:func:`predict_volume` predicts an in-memory array; :func:`predict_file` and ``spotlight predict``
(:mod:`.prediction.cli`) read the signal lazily and write the prediction slab by slab, so their
memory is bounded by the tile and one tile-deep slab of the output (docs/training.md#prediction).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from .data import PreprocessConfig, read_metadata, write_volume
from .data.sources import Source
from .data.zarr_io import is_zarr
from .prediction.cli import TTA_MODES, add_parser, run
from .prediction.tiles import (DEFAULT_OVERLAP, DEFAULT_TILE, ArrayReader, blend_window, predict_tiled,
                               size_multiple_of, tile_starts)

__all__ = ["DEFAULT_OVERLAP", "DEFAULT_TILE", "TTA_MODES", "add_parser", "blend_window", "load_model",
           "predict_file", "predict_volume", "run", "size_multiple_of", "tile_starts"]


def load_model(path: Union[str, Path], device: Union[str, torch.device] = "cpu") -> tuple:
    """``(model, preprocess_config)`` from a run folder, its ``model.pt`` or a training checkpoint.

    A run folder uses ``model.pt`` when training finished, else ``checkpoints/checkpoint_latest.pt``
    (:mod:`spotlight_ops.models.model_file`). The model is in eval mode on ``device``.
    """
    from .models import model_file

    model, preprocess, _ = model_file.load(path, device)
    return model, preprocess


def predict_volume(model: nn.Module, signal: np.ndarray, tile_size: Sequence[int] = DEFAULT_TILE,
                   overlap: Sequence[int] = DEFAULT_OVERLAP, device: Union[str, torch.device, None] = None,
                   amp: bool = False, progress: bool = False, tta: Optional[str] = None, batch_tiles: int = 1,
                   size_multiple: Optional[int] = None) -> np.ndarray:
    """Prediction float32 for a preprocessed in-memory ``signal`` of any size (see the module docstring).

    Args:
        model: any module mapping ``[N, C_in, Z, Y, X]`` to ``[N, C_out, Z, Y, X]``, in eval mode.
        signal: ``(Z, Y, X)`` (one channel) or ``(C_in, Z, Y, X)``. The result is ``(Z, Y, X)`` for a
            ``(Z, Y, X)`` signal and a model of one output channel, else ``(C_out, Z, Y, X)``.
        tta: None or ``"none"``, ``"yx"`` (the 8 symmetries of the YX square) or ``"zyx"`` (16, with
            z flips): :mod:`spotlight_ops.tta`.
        batch_tiles: tiles per forward pass (each with its TTA copies).
        size_multiple: every spatial size of the model's input must be a multiple of it; default the
            model's ``size_multiple`` (F-net: ``2**depth``), a ValueError for a model without one.
        device: where the model runs; default the device of its first parameter (CPU without any).
    """
    signal = np.asarray(signal, np.float32)
    if signal.ndim not in (3, 4):
        raise ValueError(f"signal must be 3D (Z, Y, X) or 4D (C, Z, Y, X), got shape {signal.shape}")
    stacked = signal[None] if signal.ndim == 3 else signal
    out: dict = {}

    def write(z0: int, planes: np.ndarray) -> None:
        if "volume" not in out:
            out["volume"] = np.empty((planes.shape[0],) + stacked.shape[1:], np.float32)
        out["volume"][:, z0:z0 + planes.shape[1]] = planes

    predict_tiled(model, ArrayReader(stacked), write, tile_size, overlap, device, amp, progress, tta, batch_tiles,
                  size_multiple)
    volume = out["volume"]
    return volume[0] if signal.ndim == 3 and volume.shape[0] == 1 else volume


def predict_file(model: nn.Module, preprocess: PreprocessConfig, signal_path: Union[str, Path],
                 out_path: Union[str, Path], **kwargs) -> Path:
    """Reads, preprocesses, predicts and writes one single-channel signal volume (TIFF, OME-TIFF or OME-Zarr),
    keeping its voxel size; ``out_path``'s name chooses the output's kind. A TIFF output and an OME-Zarr output
    of an OME-Zarr input (an image of one channel, ``prediction``) are written slab by slab from a lazily
    read signal; an OME-Zarr output of a TIFF input is written whole (:func:`~spotlight_ops.data.write_volume`)."""
    from .data import plates
    from .prediction.volumes import predict_sources
    from .prediction.writing import TiffDestination, ZarrDestination

    source, out_path = Source(Path(signal_path)), Path(out_path)
    if not is_zarr(out_path):
        metadata = read_metadata(source.path)
        predict_sources(model, preprocess, [source], lambda shape: TiffDestination([out_path], shape, metadata),
                        **kwargs)
    elif source.is_zarr:
        plates.create_image_like(source.path, out_path, ["prediction"])
        predict_sources(model, preprocess, [source], lambda shape: ZarrDestination(out_path, ["prediction"]), **kwargs)
    else:
        parts: list = []

        class Collect:
            write = staticmethod(lambda z0, planes: parts.append(planes))
            close = staticmethod(lambda: None)

        predict_sources(model, preprocess, [source], lambda shape: Collect, **kwargs)
        write_volume(out_path, np.concatenate(parts, axis=1)[0], metadata=read_metadata(source.path))
    return out_path
