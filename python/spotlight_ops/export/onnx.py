"""ONNX export (``torch.onnx.export`` with the ``torch.export`` based exporter) and an ONNX Runtime module.

The batch and the three spatial sizes are dynamic; every spatial size must be a multiple of the
model's size multiple (``2**depth`` for F-net), as in PyTorch. The model's description is stored in
the ONNX model's ``metadata_props`` under ``spotlight`` (JSON). :class:`OnnxModule` runs a file with
ONNX Runtime behind the ``nn.Module`` interface, so ``predict_volume`` tiles volumes with it exactly as
with the PyTorch model; the export checks the file with it against PyTorch.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Optional, Union

import torch
from torch import nn

from ..files.runfiles import atomic_write_bytes
from ..optional import EXPORT_INSTALL, optional_import

METADATA_KEY = "spotlight"
INPUT_NAME, OUTPUT_NAME = "input", "output"


def export_onnx(model: nn.Module, path: Union[str, Path], example: torch.Tensor, metadata: dict,
                opset_version: Optional[int] = None) -> Path:
    """Writes ``model`` (eval mode) as ONNX to ``path`` (atomically; weights inside the file)."""
    onnx = optional_import("onnx", install=EXPORT_INSTALL, purpose="ONNX export")
    optional_import("onnxscript", install=EXPORT_INSTALL, purpose="ONNX export")
    dynamic = torch.export.Dim.DYNAMIC
    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)  # it logs each torchvision op it skips when torchvision is absent
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's FutureWarnings and deprecations, not ours to act on
            program = torch.onnx.export(model.eval(), (example,), dynamo=True, verbose=False,
                                        input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                        dynamic_shapes=({0: dynamic, 2: dynamic, 3: dynamic, 4: dynamic},),
                                        opset_version=opset_version, external_data=False)
    finally:
        exporter_log.setLevel(level)
    proto = program.model_proto
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata, sort_keys=True)
    onnx.checker.check_model(proto)
    return atomic_write_bytes(Path(path), proto.SerializeToString())


def opset_of(path: Union[str, Path]) -> int:
    """The default-domain opset version of an ONNX file."""
    onnx = optional_import("onnx", install=EXPORT_INSTALL, purpose="ONNX export")
    proto = onnx.load(str(path), load_external_data=False)
    return next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))


class OnnxModule(nn.Module):
    """An ONNX file run by ONNX Runtime (CPU) as a module: ``[N, 1, Z, Y, X]`` float32 in and out.

    ``size_multiple`` is read from the file's ``spotlight`` metadata, so ``predict_volume`` needs no
    argument for files written by :func:`export_onnx`.
    """

    def __init__(self, path: Union[str, Path], providers: Optional[list] = None) -> None:
        super().__init__()
        ort = optional_import("onnxruntime", install=EXPORT_INSTALL, purpose="running an ONNX model")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only
        self.session = ort.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.metadata = json.loads(self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY, "{}"))
        if "size_multiple" in self.metadata:
            self.size_multiple = int(self.metadata["size_multiple"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {self.input_name: x.detach().to("cpu", torch.float32).contiguous().numpy()})[0]
        return torch.from_numpy(out).to(x.device)
