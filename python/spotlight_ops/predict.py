r"""Whole-volume prediction with a trained F-net, tiled so that any volume fits in memory.

The (preprocessed) signal is reflect-padded to at least one tile, cut into tiles of
``tile_size`` overlapping by ``overlap`` voxels, and the tile predictions are blended with a
separable window ``w(z, y, x) = w_z(z) w_y(y) w_x(x)``, where each ``w_a`` ramps up over the
overlap as ``(1 - cos(pi (i + 1/2) / o)) / 2`` at ends that meet a neighbouring tile and is 1
elsewhere:

    P(v) = sum_t w_t(v) P_t(v) / sum_t w_t(v)

Every weight is positive, so the division is exact at the volume borders too; in the middle
of the volume the seams (where zero padding inside the network spoils a tile's edge) get
small weight. With one tile covering the volume the result is the untiled prediction.

Tiles go through the network ``batch_tiles`` at a time (one forward pass each), which changes
nothing but the speed: in eval mode every sample of a batch is computed on its own.

Test-time augmentation (``tta``, :mod:`spotlight_ops.tta`): each tile is also predicted under
every symmetry ``g`` of the YX square (``"yx"``: 8, quarter turns and reflections) or those with z
flips too (``"zyx"``: 16), each prediction mapped back, and the tile's prediction is their mean,
``P_t = (1 / |G|) sum_{g in G} g^{-1}(net(g(x_t)))``; the transformed copies of the tiles of a batch
share one forward pass (two when Y != X: the odd quarter turns give ``(Z, X, Y)`` tiles).

Any ``nn.Module`` mapping ``[N, 1, Z, Y, X]`` to ``[N, 1, Z, Y, X]`` predicts (a TorchScript module
too); tiles are rounded to its ``size_multiple`` (every spatial size of its input must be a multiple
of it), which F-net states itself and other modules are given.

``spotlight predict`` writes ``<name>_prediction`` per input, float32, in the target's
standardized intensity space, with the input's voxel size and unit, in the input's kind: an
OME-Zarr store for an OME-Zarr input (``.ome.zarr``), an OME-TIFF for an OME-TIFF input
(``.ome.tif``), an ImageJ TIFF otherwise (``.tif``).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import scipy.ndimage as ndi
import torch
from torch import nn

from .data import DataError, PreprocessConfig, prepare_signal, read_manifest, read_metadata, read_volume, write_volume
from .data.io import is_ome_tiff
from .data.zarr_io import is_zarr
from . import tta as T

DEFAULT_TILE = (64, 128, 128)
DEFAULT_OVERLAP = (16, 32, 32)
TTA_MODES = ("none", *T.MODES)


def load_model(path: Union[str, Path], device: Union[str, torch.device] = "cpu") -> tuple:
    """``(model, preprocess_config)`` from a run folder, its ``model.pt`` or a training checkpoint.

    A run folder uses ``model.pt`` when training finished, else ``checkpoints/checkpoint_latest.pt``
    (:mod:`spotlight_ops.models.model_file`). The model is in eval mode on ``device``.
    """
    from .models import model_file

    model, preprocess, _ = model_file.load(path, device)
    return model, preprocess


def blend_window(length: int, overlap: int, ramp_start: bool = True, ramp_end: bool = True) -> np.ndarray:
    """1D weights: raised-cosine ramps of ``overlap`` voxels at the ends that meet a neighbour tile.

    ``(1 - cos(pi (i + 1/2) / o)) / 2`` for ``i < o``, 1 in between, mirrored at the end; all > 0.
    An end at the volume border (no neighbour) keeps weight 1, so a single tile is the plain prediction.
    """
    w = np.ones(length, np.float64)
    ramp = min(overlap, length // 2)
    if ramp > 0:
        up = 0.5 - 0.5 * np.cos(np.pi * (np.arange(ramp) + 0.5) / ramp)
        if ramp_start:
            w[:ramp] = up
        if ramp_end:
            w[length - ramp:] = up[::-1]
    return w


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Tile origins covering ``[0, size)`` with at least ``overlap`` voxels shared by neighbours."""
    if size <= tile:
        return [0]
    step = max(1, tile - overlap)
    starts = list(range(0, size - tile, step))
    starts.append(size - tile)
    return starts


def size_multiple_of(model: nn.Module, size_multiple: Optional[int] = None) -> int:
    """``size_multiple`` checked, or the model's own ``size_multiple`` (F-net's ``2**depth``)."""
    if size_multiple is None:
        size_multiple = getattr(model, "size_multiple", None)
        if size_multiple is None:
            raise ValueError(f"size_multiple: cannot infer it for a {type(model).__name__} (it has no size_multiple "
                             f"attribute); pass size_multiple=, the number every spatial size of the model's input "
                             f"must be a multiple of (2**depth for a U-Net with depth downsamplings, 1 for none)")
    if isinstance(size_multiple, bool) or int(size_multiple) != size_multiple or size_multiple < 1:
        raise ValueError(f"size_multiple must be a positive integer, got {size_multiple!r}")
    return int(size_multiple)


def _round_tile(tile: Sequence[int], shape: Sequence[int], multiple: int) -> tuple:
    """Tile sizes: multiples of ``multiple``, no larger than needed to hold the volume."""
    out = []
    for t, s in zip(tile, shape):
        if t < multiple:
            raise ValueError(f"tile size {tuple(tile)} must be at least {multiple} (the model's size multiple) per axis")
        needed = math.ceil(s / multiple) * multiple
        out.append(min((t // multiple) * multiple, needed))
    return tuple(out)


@torch.inference_mode()
def predict_volume(model: nn.Module, signal: np.ndarray, tile_size: Sequence[int] = DEFAULT_TILE,
                   overlap: Sequence[int] = DEFAULT_OVERLAP, device: Union[str, torch.device, None] = None,
                   amp: bool = False, progress: bool = False, tta: Optional[str] = None, batch_tiles: int = 1,
                   size_multiple: Optional[int] = None) -> np.ndarray:
    """Prediction ``(Z, Y, X)`` float32 for a preprocessed ``signal`` of any size (see the module docstring).

    Args:
        model: any module mapping ``[N, 1, Z, Y, X]`` to ``[N, 1, Z, Y, X]``, in eval mode.
        tta: None or ``"none"``, ``"yx"`` (the 8 symmetries of the YX square) or ``"zyx"`` (16, with
            z flips): :mod:`spotlight_ops.tta`.
        batch_tiles: tiles per forward pass (each with its TTA copies).
        size_multiple: every spatial size of the model's input must be a multiple of it; default the
            model's ``size_multiple`` (F-net: ``2**depth``), a ValueError for a model without one.
        device: where the model runs; default the device of its first parameter (CPU without any).
    """
    signal = np.asarray(signal, np.float32)
    if signal.ndim != 3:
        raise ValueError(f"signal must be 3D (Z, Y, X), got shape {signal.shape}")
    if len(tile_size) != 3 or len(overlap) != 3:
        raise ValueError(f"tile_size and overlap must have three entries (z, y, x), got {tile_size!r}, {overlap!r}")
    if any(o < 0 for o in overlap):
        raise ValueError(f"overlap must be >= 0, got {tuple(overlap)}")
    if isinstance(batch_tiles, bool) or int(batch_tiles) != batch_tiles or batch_tiles < 1:
        raise ValueError(f"batch_tiles must be a positive integer, got {batch_tiles!r}")
    group = T.symmetries(tta)
    multiple = size_multiple_of(model, size_multiple)
    if device is None:
        first = next(iter(model.parameters()), None)
        device = first.device if first is not None else torch.device("cpu")
    device = torch.device(device)
    tile = _round_tile(tile_size, signal.shape, multiple)
    if any(o >= t for o, t in zip(overlap, tile)):
        overlap = tuple(min(o, t // 2) for o, t in zip(overlap, tile))
    shape = signal.shape
    padded_shape = tuple(max(s, t) for s, t in zip(shape, tile))
    padded = np.pad(signal, [(0, p - s) for p, s in zip(padded_shape, shape)], mode="reflect") \
        if padded_shape != shape else signal
    total = np.zeros(padded_shape, np.float32)
    weight = np.zeros(padded_shape, np.float32)
    starts = [tile_starts(s, t, o) for s, t, o in zip(padded_shape, tile, overlap)]
    corners = [(z, y, x) for z in starts[0] for y in starts[1] for x in starts[2]]
    use_amp = amp and device.type == "cuda"
    from tqdm import tqdm

    bar = tqdm(total=len(corners), desc="tiles", unit="tile", disable=not progress, leave=False)
    for first in range(0, len(corners), int(batch_tiles)):
        chunk = corners[first:first + int(batch_tiles)]
        boxes = [tuple(slice(c, c + t) for c, t in zip(corner, tile)) for corner in chunk]
        x = torch.from_numpy(np.stack([padded[box] for box in boxes]))[:, None].to(device)
        mean = _symmetric_mean(model, x, group, use_amp)
        predictions = mean[:, 0].cpu().numpy()
        for corner, box, prediction in zip(chunk, boxes, predictions):
            window = np.einsum("i,j,k->ijk", *[blend_window(t, o, c > 0, c + t < p) for c, t, o, p
                                               in zip(corner, tile, overlap, padded_shape)]).astype(np.float32)
            total[box] += window * prediction
            weight[box] += window
        bar.update(len(chunk))
    bar.close()
    result = total / weight
    return np.ascontiguousarray(result[tuple(slice(0, s) for s in shape)])


def _symmetric_mean(model: nn.Module, x: torch.Tensor, group: list, use_amp: bool) -> torch.Tensor:
    """``(1/|G|) sum_g g^-1(model(g(x)))`` in float32; one forward pass per shape of the transformed tiles."""
    swaps = x.shape[-2] != x.shape[-1]  # then the odd quarter turns give (Z, X, Y) tiles: a pass of their own
    by_shape: dict = {}
    for t in group:
        by_shape.setdefault(swaps and t.rotations % 2 == 1, []).append(t)
    mean = None
    n = x.shape[0]
    for members in by_shape.values():
        batch = torch.cat([T.apply(x, t) for t in members], dim=0)  # transform-major: rows i*n ... of g_i
        with torch.autocast("cuda", enabled=use_amp):
            y = model(batch)
        y = y.float()
        for i, t in enumerate(members):
            back = T.invert(y[i * n:(i + 1) * n], t)
            mean = back.clone() if mean is None else mean.add_(back)
    if len(group) > 1:
        mean /= len(group)
    return mean


def predict_file(model: nn.Module, preprocess: PreprocessConfig, signal_path: Union[str, Path],
                 out_path: Union[str, Path], **kwargs) -> Path:
    """Reads, preprocesses, predicts and writes one signal volume (TIFF, OME-TIFF or OME-Zarr), keeping its
    voxel size; ``out_path``'s name chooses the output's kind (:func:`spotlight_ops.data.write_volume`)."""
    raw = read_volume(signal_path, "signal")
    signal = prepare_signal(raw, preprocess)
    prediction = predict_volume(model, signal, **kwargs)
    if prediction.shape != raw.shape:  # resampled to isotropic voxels: back to the input grid
        prediction = ndi.zoom(prediction, [r / p for r, p in zip(raw.shape, prediction.shape)], order=1,
                              mode="nearest", grid_mode=False)
        prediction = prediction[tuple(slice(0, s) for s in raw.shape)]
    return write_volume(out_path, prediction.astype(np.float32), metadata=read_metadata(signal_path))


def output_name(path: Union[str, Path]) -> str:
    """``<name>_prediction`` + the input's kind: ``.ome.zarr``, ``.ome.tif`` or ``.tif``."""
    path = Path(path)
    name = path.name.split(".")[0]
    if is_zarr(path):
        return f"{name}_prediction.ome.zarr"
    return f"{name}_prediction.ome.tif" if is_ome_tiff(path) else f"{name}_prediction.tif"


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "predict", help="predict fluorescence for whole volumes with a trained model",
        description="Predict whole volumes tile by tile with smooth blending; writes <name>_prediction (float32, "
                    "in the target's standardized intensities) keeping the input's voxel size and kind: .ome.zarr "
                    "for OME-Zarr, .ome.tif for OME-TIFF, .tif otherwise.")
    p.add_argument("--model", required=True, help="run folder, its model.pt, or a training checkpoint")
    p.add_argument("inputs", nargs="*", help="signal TIFF/OME-TIFF files or OME-Zarr stores")
    p.add_argument("--csv", help="manifest CSV: predict every path_signal in it")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--tile", type=int, nargs=3, default=list(DEFAULT_TILE), metavar=("Z", "Y", "X"),
                   help="tile size (default %(default)s), rounded down to a multiple of 2**depth")
    p.add_argument("--overlap", type=int, nargs=3, default=list(DEFAULT_OVERLAP), metavar=("Z", "Y", "X"),
                   help="overlap of neighbouring tiles (default %(default)s)")
    p.add_argument("--tta", choices=list(TTA_MODES), default="none",
                   help="test-time augmentation: average the predictions of the 8 rotations and reflections of "
                        "the YX square (--tta yx: 8 times the compute), or of those with z flips (--tta zyx: 16); "
                        "default none")
    p.add_argument("--batch-tiles", dest="batch_tiles", type=int, default=1,
                   help="tiles per forward pass (each with its TTA copies; default %(default)s)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--no-amp", dest="amp", action="store_false", help="disable mixed precision on CUDA")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bars")
    p.set_defaults(handler=run)
    return p


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .files.checkpoint import CheckpointError
    from .devices import resolve_device

    try:
        inputs = [Path(p) for p in args.inputs]
        if args.csv:
            inputs += [row.signal for row in read_manifest(args.csv)]
        if not inputs:
            raise ValueError("no inputs: give signal TIFF files or --csv")
        device = resolve_device(args.device)
        model, preprocess = load_model(args.model, device)
        out_dir = Path(args.out)
        if args.batch_tiles < 1:
            raise ValueError(f"--batch-tiles must be a positive integer, got {args.batch_tiles}")
        for path in tqdm(inputs, desc="predict", unit="volume", disable=not args.progress):
            written = predict_file(model, preprocess, path, out_dir / output_name(path),
                                   tile_size=args.tile, overlap=args.overlap, device=device, amp=args.amp,
                                   tta=args.tta, batch_tiles=args.batch_tiles)
            tqdm.write(f"{path} -> {written}")
    except (ValueError, DataError, FileNotFoundError, CheckpointError) as err:
        print(f"spotlight predict: error: {err}", file=sys.stderr)
        return 2
    return 0
