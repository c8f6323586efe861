r"""Tiled prediction with exact blending, streamed: input read per tile row, output written per finished slab.

The (standardized) signal is reflect-padded to at least one tile, cut into tiles of ``tile`` overlapping
by ``overlap`` voxels, and the tile predictions are blended with a separable window
``w_t(z, y, x) = w_z(z) w_y(y) w_x(x)``, where each ``w_a`` ramps up over the overlap as
``(1 - cos(pi (i + 1/2) / o)) / 2`` at ends that meet a neighbouring tile and is 1 elsewhere:

    P(v) = sum_t w_t(v) P_t(v) / sum_t w_t(v)

The tiles form a grid (the product of the tile starts of each axis), so the denominator is separable
too: ``sum_t w_t(v) = W_z(z) W_y(y) W_x(x)`` with ``W_a`` the sum of the 1D windows placed at the
starts of axis ``a``. No weight volume is held.

Streaming: tiles run in z-major order (z, then y, then x starts). The numerator is accumulated in a
buffer one tile deep in z and as wide as the volume in y and x; when the tiles of one z start are done,
the planes no later tile touches (up to the next z start) are final: they are divided by the weight
and handed to ``write`` in increasing z, a few planes at a time (:data:`WRITE_BYTES`), and the buffer
moves on. The input is read one tile row at
a time (``tile_z x tile_y x X``, the two newest rows kept). Peak memory is therefore the buffer
(``4 C_out tile_z Y X`` bytes), two input rows and the network's activations, whatever the depth of
the volume; the numbers are those of blending the whole volume at once (same tiles, same order of
additions; the weight differs only by float32 rounding).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from .. import tta as T

DEFAULT_TILE = (64, 128, 128)
DEFAULT_OVERLAP = (16, 32, 32)
WRITE_BYTES = 16 << 20  # finished planes are handed to ``write`` in groups of about this size


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


def round_tile(tile: Sequence[int], shape: Sequence[int], multiple: int) -> tuple:
    """Tile sizes: multiples of ``multiple``, no larger than needed to hold the volume."""
    out = []
    for t, s in zip(tile, shape):
        if t < multiple:
            raise ValueError(f"tile size {tuple(tile)} must be at least {multiple} (the model's size multiple) per axis")
        needed = math.ceil(s / multiple) * multiple
        out.append(min((t // multiple) * multiple, needed))
    return tuple(out)


def check_options(tile_size: Sequence[int], overlap: Sequence[int], batch_tiles: int) -> None:
    """The tiling arguments, checked before any work."""
    if len(tile_size) != 3 or len(overlap) != 3:
        raise ValueError(f"tile_size and overlap must have three entries (z, y, x), got {tile_size!r}, {overlap!r}")
    if any(o < 0 for o in overlap):
        raise ValueError(f"overlap must be >= 0, got {tuple(overlap)}")
    if isinstance(batch_tiles, bool) or int(batch_tiles) != batch_tiles or batch_tiles < 1:
        raise ValueError(f"batch_tiles must be a positive integer, got {batch_tiles!r}")


class Reader:
    """What tiled prediction reads: ``shape`` ``(Z, Y, X)``, ``channels``, and :meth:`box`, the standardized
    signal ``(C, z, y, x)`` float32 inside a box of slices."""

    shape: tuple
    channels: int

    def box(self, box: tuple) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError


class ArrayReader(Reader):
    """An in-memory ``(C, Z, Y, X)`` float32 signal."""

    def __init__(self, signal: np.ndarray) -> None:
        self.signal = signal
        self.channels, self.shape = signal.shape[0], tuple(signal.shape[1:])

    def box(self, box: tuple) -> np.ndarray:
        return self.signal[(slice(None),) + tuple(box)]


def _axis_weight(padded: int, tile: int, overlap: int, starts: list) -> np.ndarray:
    """``W_a``: the sum of the 1D windows of axis ``a`` placed at its tile starts (float64)."""
    total = np.zeros(padded, np.float64)
    for s in starts:
        total[s:s + tile] += blend_window(tile, overlap, s > 0, s + tile < padded)
    return total


@torch.inference_mode()
def predict_tiled(model: nn.Module, reader: Reader, write: Callable[[int, np.ndarray], None],
                  tile_size: Sequence[int] = DEFAULT_TILE, overlap: Sequence[int] = DEFAULT_OVERLAP,
                  device: Union[str, torch.device, None] = None, amp: bool = False, progress: bool = False,
                  tta: Optional[str] = None, batch_tiles: int = 1, size_multiple: Optional[int] = None) -> None:
    """Predicts ``reader``'s signal tile by tile (see the module docstring) and calls ``write(z0, planes)``
    with the finished planes ``(C_out, n, Y, X)`` float32 in increasing ``z0``, each plane once."""
    check_options(tile_size, overlap, batch_tiles)
    group = T.symmetries(tta)
    multiple = size_multiple_of(model, size_multiple)
    if device is None:
        first = next(iter(model.parameters()), None)
        device = first.device if first is not None else torch.device("cpu")
    device = torch.device(device)
    shape = tuple(reader.shape)
    tile = round_tile(tile_size, shape, multiple)
    if any(o >= t for o, t in zip(overlap, tile)):
        overlap = tuple(min(o, t // 2) for o, t in zip(overlap, tile))
    padded = tuple(max(s, t) for s, t in zip(shape, tile))
    starts = [tile_starts(s, t, o) for s, t, o in zip(padded, tile, overlap)]
    weights = [_axis_weight(p, t, o, s) for p, t, o, s in zip(padded, tile, overlap, starts)]
    weight_yx = np.multiply.outer(weights[1][:shape[1]], weights[2][:shape[2]])
    corners = [(z, y, x) for z in starts[0] for y in starts[1] for x in starts[2]]
    rows: OrderedDict = OrderedDict()

    def row(z0: int, y0: int) -> np.ndarray:
        """The padded input ``[z0, z0 + tz) x [y0, y0 + ty) x [0, X_padded)``; a padded axis is read whole."""
        key = (z0, y0)
        if key not in rows:
            box = (slice(z0, min(z0 + tile[0], shape[0])), slice(y0, min(y0 + tile[1], shape[1])), slice(0, shape[2]))
            block = np.asarray(reader.box(box), np.float32)
            pad = [(0, 0)] + [(0, t - (b.stop - b.start)) for t, b in zip((tile[0], tile[1], padded[2]), box)]
            rows[key] = np.pad(block, pad, mode="reflect") if any(p[1] for p in pad) else block
            while len(rows) > 2:
                rows.popitem(last=False)
        return rows[key]

    buffer = None
    base = starts[0][0]

    def finish(z_end: int) -> None:
        """Writes the planes ``[base, z_end)`` of the volume (divided by the weight) and moves the buffer on."""
        nonlocal base
        done = min(z_end, shape[0]) - base
        group = max(1, WRITE_BYTES // (4 * buffer.shape[0] * shape[1] * shape[2]))
        for first in range(0, done, group):
            count = min(group, done - first)
            planes = np.empty((buffer.shape[0], count, shape[1], shape[2]), np.float32)
            for i in range(count):
                planes[:, i] = buffer[:, first + i, :shape[1], :shape[2]] / (weights[0][base + first + i] * weight_yx)
            write(base + first, planes)
        step = z_end - base
        if step >= tile[0]:
            buffer[:] = 0
        else:
            buffer[:, :tile[0] - step] = buffer[:, step:]
            buffer[:, tile[0] - step:] = 0
        base = z_end

    use_amp = amp and device.type == "cuda"
    from tqdm import tqdm

    bar = tqdm(total=len(corners), desc="tiles", unit="tile", disable=not progress, leave=False)
    for first in range(0, len(corners), int(batch_tiles)):
        chunk = corners[first:first + int(batch_tiles)]
        x = torch.from_numpy(np.stack([row(z, y)[..., c:c + tile[2]] for z, y, c in chunk])).to(device)
        predictions = _symmetric_mean(model, x, group, use_amp).cpu().numpy()
        for corner, prediction in zip(chunk, predictions):
            if corner[0] != base:
                finish(corner[0])
            if buffer is None:
                buffer = np.zeros((prediction.shape[0], tile[0], padded[1], padded[2]), np.float32)
            window = np.einsum("i,j,k->ijk", *[blend_window(t, o, c > 0, c + t < p) for c, t, o, p
                                               in zip(corner, tile, overlap, padded)]).astype(np.float32)
            _, y, x0 = corner
            buffer[:, :, y:y + tile[1], x0:x0 + tile[2]] += window * prediction
        bar.update(len(chunk))
    bar.close()
    finish(padded[0])


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
