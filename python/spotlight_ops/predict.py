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

``spotlight predict`` writes ``<name>_prediction.tif`` per input, float32, in the target's
standardized intensity space, with the input's voxel size and unit.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import scipy.ndimage as ndi
import torch

from .data import DataError, PreprocessConfig, prepare_signal, read_manifest, read_metadata, read_volume, write_volume
from .models import FNet

DEFAULT_TILE = (64, 128, 128)
DEFAULT_OVERLAP = (16, 32, 32)


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


def _round_tile(tile: Sequence[int], shape: Sequence[int], multiple: int) -> tuple:
    """Tile sizes: multiples of ``multiple``, no larger than needed to hold the volume."""
    out = []
    for t, s in zip(tile, shape):
        if t < multiple:
            raise ValueError(f"tile size {tuple(tile)} must be at least {multiple} (2**depth) per axis")
        needed = math.ceil(s / multiple) * multiple
        out.append(min((t // multiple) * multiple, needed))
    return tuple(out)


@torch.inference_mode()
def predict_volume(model: FNet, signal: np.ndarray, tile_size: Sequence[int] = DEFAULT_TILE,
                   overlap: Sequence[int] = DEFAULT_OVERLAP, device: Union[str, torch.device, None] = None,
                   amp: bool = False, progress: bool = False) -> np.ndarray:
    """Prediction ``(Z, Y, X)`` float32 for a preprocessed ``signal`` of any size (see the module docstring)."""
    signal = np.asarray(signal, np.float32)
    if signal.ndim != 3:
        raise ValueError(f"signal must be 3D (Z, Y, X), got shape {signal.shape}")
    if len(tile_size) != 3 or len(overlap) != 3:
        raise ValueError(f"tile_size and overlap must have three entries (z, y, x), got {tile_size!r}, {overlap!r}")
    if any(o < 0 for o in overlap):
        raise ValueError(f"overlap must be >= 0, got {tuple(overlap)}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    tile = _round_tile(tile_size, signal.shape, model.size_multiple)
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

    for corner in tqdm(corners, desc="tiles", unit="tile", disable=not progress, leave=False):
        box = tuple(slice(c, c + t) for c, t in zip(corner, tile))
        window = np.einsum("i,j,k->ijk", *[blend_window(t, o, c > 0, c + t < p) for c, t, o, p
                                           in zip(corner, tile, overlap, padded_shape)]).astype(np.float32)
        x = torch.from_numpy(np.ascontiguousarray(padded[box]))[None, None].to(device)
        with torch.autocast("cuda", enabled=use_amp):
            y = model(x)
        total[box] += window * y[0, 0].float().cpu().numpy()
        weight[box] += window
    result = total / weight
    return np.ascontiguousarray(result[tuple(slice(0, s) for s in shape)])


def predict_file(model: FNet, preprocess: PreprocessConfig, signal_path: Union[str, Path],
                 out_path: Union[str, Path], **kwargs) -> Path:
    """Reads, preprocesses, predicts and writes one signal TIFF, keeping its voxel size."""
    raw = read_volume(signal_path, "signal")
    signal = prepare_signal(raw, preprocess)
    prediction = predict_volume(model, signal, **kwargs)
    if prediction.shape != raw.shape:  # resampled to isotropic voxels: back to the input grid
        prediction = ndi.zoom(prediction, [r / p for r, p in zip(raw.shape, prediction.shape)], order=1,
                              mode="nearest", grid_mode=False)
        prediction = prediction[tuple(slice(0, s) for s in raw.shape)]
    return write_volume(out_path, prediction.astype(np.float32), metadata=read_metadata(signal_path))


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "predict", help="predict fluorescence for whole volumes with a trained model",
        description="Predict whole volumes tile by tile with smooth blending; writes <name>_prediction.tif "
                    "(float32, in the target's standardized intensities) keeping the input's voxel size.")
    p.add_argument("--model", required=True, help="run folder, its model.pt, or a training checkpoint")
    p.add_argument("inputs", nargs="*", help="signal TIFF files")
    p.add_argument("--csv", help="manifest CSV: predict every path_signal in it")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--tile", type=int, nargs=3, default=list(DEFAULT_TILE), metavar=("Z", "Y", "X"),
                   help="tile size (default %(default)s), rounded down to a multiple of 2**depth")
    p.add_argument("--overlap", type=int, nargs=3, default=list(DEFAULT_OVERLAP), metavar=("Z", "Y", "X"),
                   help="overlap of neighbouring tiles (default %(default)s)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--no-amp", dest="amp", action="store_false", help="disable mixed precision on CUDA")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bars")
    p.set_defaults(handler=run)
    return p


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .training.checkpoint import CheckpointError
    from .training.distributed import resolve_device

    try:
        inputs = [Path(p) for p in args.inputs]
        if args.csv:
            inputs += [row.signal for row in read_manifest(args.csv)]
        if not inputs:
            raise ValueError("no inputs: give signal TIFF files or --csv")
        device = resolve_device(args.device)
        model, preprocess = load_model(args.model, device)
        out_dir = Path(args.out)
        for path in tqdm(inputs, desc="predict", unit="volume", disable=not args.progress):
            name = path.name.split(".")[0]
            written = predict_file(model, preprocess, path, out_dir / f"{name}_prediction.tif",
                                   tile_size=args.tile, overlap=args.overlap, device=device, amp=args.amp)
            tqdm.write(f"{path} -> {written}")
    except (ValueError, DataError, FileNotFoundError, CheckpointError) as err:
        print(f"spotlight predict: error: {err}", file=sys.stderr)
        return 2
    return 0
