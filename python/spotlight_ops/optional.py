"""Imports of the package's optional third-party dependencies, and nothing else.

The optional parts and what they need (every other part needs only the package's dependencies in
``pyproject.toml``, imported plainly so that a missing one fails loudly):

* TensorBoard logging (``training/log.py``): ``tensorboard`` (``torch.utils.tensorboard``);
* OME-Zarr input and output (``data/zarr_io.py``): ``zarr`` and ``ome-zarr`` (extra ``[zarr]``);
* Cellpose segmentation in the evaluation (``evaluation/cellpose_backend.py``): ``cellpose``;
* ``spotlight export`` (``export/``): ``onnx``, ``onnxruntime``, ``onnxscript`` (ONNX) and
  ``bioimageio.core`` (bioimage.io packages) (extra ``[export]``, :data:`EXPORT_INSTALL`).

:func:`optional_import` tells "not installed" from "broken": only a ``ModuleNotFoundError`` for the
module itself (or one of the named packages it needs) means not installed; any other ``ImportError``,
such as a bug inside the module or a dependency of the dependency that is missing, propagates.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Optional, Sequence


EXPORT_INSTALL = "pip install 'spotlight-ops[export]' (or pip install onnx onnxruntime onnxscript bioimageio.core)"


class MissingDependency(ImportError):
    """An optional dependency that a requested feature needs is not installed (says what to install)."""


def _is_missing(err: ModuleNotFoundError, names: Sequence[str]) -> bool:
    """Whether ``err`` says that one of ``names`` (or a package above it) is not installed."""
    missing = err.name
    if not missing:
        return False
    return any(name == missing or name.startswith(missing + ".") for name in names)


def optional_import(module: str, *, needs: Sequence[str] = (), install: Optional[str] = None,
                    purpose: Optional[str] = None) -> Optional[ModuleType]:
    """``module`` imported, or None when it (or a package of ``needs``) is not installed.

    Args:
        module: dotted module name, e.g. ``"cellpose.models"``.
        needs: top-level packages ``module`` imports whose absence also means "not installed"
            (``torch.utils.tensorboard`` is torch's, but needs ``tensorboard``).
        install: what to install, e.g. ``"pip install tensorboard"``: with it, a missing module
            raises ImportError saying so (and what needs it, ``purpose``) instead of returning None.
        purpose: what needs the module, for the message.

    Raises:
        MissingDependency: ``install`` given and the module missing, with the clear message.
        ImportError: any import error that is not "this module is not installed" (a real bug: never hidden).
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if not _is_missing(err, (module, *needs)):
            raise
        if install is None:
            return None
        what = purpose or module
        raise MissingDependency(f"{what} needs the {err.name} package, which is not installed: {install}") from err
