"""spotlight_ops: the Spotlight loss for 3D virtual staining, as fused PyTorch ops.

``import spotlight_ops`` loads the ``torch.ops.spotlight`` operator library; see
:mod:`spotlight_ops.functional` for the math and :class:`SpotlightLoss` for the criterion.
"""

from __future__ import annotations

from ._library import load as _load

_load()

from . import _fake  # noqa: E402,F401  (registers the fake kernels)
from . import reference  # noqa: E402
from .functional import (  # noqa: E402
    loss,
    masked_mse,
    otsu_standardize,
    otsu_threshold,
    soft_dice,
    tunable_sigmoid,
)
from .losses import SpotlightLoss  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "SpotlightLoss",
    "loss",
    "masked_mse",
    "otsu_standardize",
    "otsu_threshold",
    "reference",
    "soft_dice",
    "tunable_sigmoid",
]
