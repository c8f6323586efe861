"""One prediction: signal channels in (lazily), a destination out (slab by slab), the model's preprocessing.

:func:`predict_sources` streams (:mod:`.reading`, :mod:`.tiles`, :mod:`.writing`) when the model's
preprocessing keeps the input grid. A model trained with resampling to isotropic voxels predicts on
the resampled grid and the prediction is resampled back (linear, as training resampled); that needs
the whole signal and prediction in memory, so such a model's prediction is not bounded by the tile.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import scipy.ndimage as ndi
from torch import nn

from ..data import PreprocessConfig, prepare_signal
from ..data.sources import Source
from .reading import open_signals
from .tiles import ArrayReader, predict_tiled


def resamples(preprocess: PreprocessConfig) -> bool:
    """Whether the model's preprocessing changes the voxel grid."""
    return any(abs(f - 1.0) > 1e-9 for f in preprocess.factors())


def predict_sources(model: nn.Module, preprocess: PreprocessConfig, sources: Sequence[Source],
                    open_destination: Callable[[tuple], object], **kwargs) -> None:
    """Predicts the signal channels ``sources`` into ``open_destination(shape)`` (called once the signal is
    read and checked, so a bad input writes nothing); ``kwargs`` go to :func:`.tiles.predict_tiled`."""
    if not resamples(preprocess):
        reader = open_signals(sources)
        destination = open_destination(reader.shape)
        predict_tiled(model, reader, destination.write, **kwargs)
        destination.close()
        return
    raw = [source.read("signal") for source in sources]
    signal = np.stack([prepare_signal(r, preprocess) for r in raw])
    parts: list = []
    predict_tiled(model, ArrayReader(signal), lambda z0, planes: parts.append(planes), **kwargs)
    prediction = np.concatenate(parts, axis=1)
    shape = raw[0].shape
    back = np.stack([ndi.zoom(p, [r / q for r, q in zip(shape, p.shape)], order=1, mode="nearest",
                              grid_mode=False)[tuple(slice(0, s) for s in shape)] for p in prediction])
    destination = open_destination(shape)
    destination.write(0, back.astype(np.float32))
    destination.close()
