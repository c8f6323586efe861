"""Trained models out of spotlight: TorchScript, ONNX and bioimage.io packages (``spotlight export``).

* :func:`export_model`: a model file or run folder to any of the three, each checked against PyTorch
  (:mod:`.pipeline`);
* :mod:`.torchscript`: the traced model (libtorch, deepImageJ);
* :mod:`.onnx`: the ONNX model, and :class:`OnnxModule` to run one with ONNX Runtime as an ``nn.Module``;
* :mod:`.bioimageio`: the bioimage.io model package (spec 0.5), checked with ``bioimageio.core``'s test.

onnx, onnxruntime, onnxscript and bioimageio.core are the optional extra ``[export]``.
"""

from .check import TOLERANCE, ExportError
from .onnx import OnnxModule
from .pipeline import FORMATS, ExportResult, export_model
from .torchscript import load_torchscript

__all__ = ["FORMATS", "TOLERANCE", "ExportError", "ExportResult", "OnnxModule", "export_model", "load_torchscript"]
