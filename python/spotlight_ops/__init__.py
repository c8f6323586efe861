"""spotlight_ops: the Spotlight loss for 3D virtual staining, as fused PyTorch ops.

``import spotlight_ops`` loads the ``torch.ops.spotlight`` operator library (SPEC 10); see
:mod:`spotlight_ops.functional` for the math and :class:`SpotlightLoss` for the criterion. Python runs
this file before any submodule, so every ``import spotlight_ops.<sub>`` loads torch and the library
too; the ``spotlight`` command's dispatcher (the top-level package ``spotlight_cli``) is the one entry
that does not. Optional third-party packages are imported by :mod:`spotlight_ops.optional`.
"""

from __future__ import annotations

from ._library import load as _load

_load()

from . import _fake  # noqa: E402,F401  (registers the fake kernels)
from . import defaults  # noqa: E402  (the loss's defaults and option names)
from . import reference  # noqa: E402
from . import presets  # noqa: E402
from .functional import (  # noqa: E402
    loss,
    loss_preset,
    masked_mse,
    otsu_standardize,
    otsu_threshold,
    soft_dice,
    tunable_sigmoid,
)
from .losses import SpotlightLoss  # noqa: E402

__version__ = "0.1.0"

# The training and evaluation stacks import scipy, scikit-image, matplotlib:
# loaded on first use, so `import spotlight_ops` stays as light as the loss.
_SUBPACKAGES = ("data", "evaluation", "models", "predict", "training")


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "SpotlightLoss",
    "data",
    "defaults",
    "evaluation",
    "loss",
    "loss_preset",
    "masked_mse",
    "models",
    "otsu_standardize",
    "otsu_threshold",
    "predict",
    "presets",
    "reference",
    "soft_dice",
    "training",
    "tunable_sigmoid",
]
