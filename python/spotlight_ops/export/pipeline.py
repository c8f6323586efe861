"""``export_model``: one trained model file to TorchScript, ONNX and a bioimage.io package, each checked.

Every export is checked against the PyTorch model before it is kept: the file written is loaded
back (``torch.jit.load``; ONNX Runtime) and run on the sample box (:mod:`.sample`) and on a second,
seeded input of another batch size and shape, and its :func:`~.check.relative_error` must stay within
:data:`~.check.TOLERANCE`. The bioimage.io package must pass ``bioimageio.core``'s test.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import torch

from ..files.checkpoint import read_digest
from ..files.runfiles import atomic_write_bytes
from ..models import model_file
from . import bioimageio, onnx, torchscript
from .check import TOLERANCE, ExportError, check_agreement
from .sample import choose_sample

FORMATS = ("torchscript", "onnx", "bioimageio")
FILE_NAMES = {"torchscript": "model.torchscript.pt", "onnx": "model.onnx", "bioimageio": "model.bioimageio.zip"}


@dataclass
class ExportResult:
    """The files written (by format), each export's measured error against PyTorch, the sample used."""

    files: dict = field(default_factory=dict)
    errors: dict = field(default_factory=dict)
    sample: str = ""
    bioimageio_summary: object = None


def export_model(model: Union[str, Path], out_dir: Union[str, Path], formats: Sequence[str] = FORMATS,
                 sample: Optional[Union[str, Path]] = None, name: Optional[str] = None,
                 authors: Sequence[str] = (), license: str = "CC-BY-4.0", log=None) -> ExportResult:
    """Exports the model file or run folder ``model`` to ``out_dir`` in ``formats`` (see the module docstring)."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"formats must be among {', '.join(FORMATS)}, got {list(formats)!r}")
    if "bioimageio" in formats:  # arguments first, before any work
        bioimageio.check_license(license)
        if name:
            bioimageio.check_name(name)
    log = log or (lambda text: print(text, file=sys.stderr))
    path = model_file.resolve(model)
    net, preprocess, payload = model_file.load(path, "cpu")
    multiple = int(net.size_multiple)
    metadata = {"kind": "spotlight-export", "model_config": payload["model_config"],
                "preprocess": dict(payload["preprocess"]), "size_multiple": multiple,
                "iteration": payload.get("iteration"), "source": {"file": str(path), "sha256": read_digest(path)},
                "name": name or bioimageio.default_name(path.resolve())}
    chosen = choose_sample(sample, payload.get("config") or {}, preprocess, multiple)
    example = torch.from_numpy(chosen.standardized())[None, None]
    other = torch.randn((2, 1, multiple, 2 * multiple, 3 * multiple), generator=torch.Generator().manual_seed(0))
    inputs = [example, other]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = ExportResult(sample=chosen.source)
    wanted = set(formats)
    with tempfile.TemporaryDirectory(prefix="spotlight-export-") as folder:
        staged = {f: Path(folder) / FILE_NAMES[f] for f in FORMATS}
        if wanted & {"torchscript", "bioimageio"}:
            torchscript.export_torchscript(net, staged["torchscript"], example, metadata)
            loaded, _ = torchscript.load_torchscript(staged["torchscript"])
            result.errors["torchscript"] = check_agreement(f"{out_dir / FILE_NAMES['torchscript']} (TorchScript)",
                                                           net, loaded, inputs)
        if wanted & {"onnx", "bioimageio"}:
            onnx.export_onnx(net, staged["onnx"], example, metadata)
            result.errors["onnx"] = check_agreement(f"{out_dir / FILE_NAMES['onnx']} (ONNX)", net,
                                                    onnx.OnnxModule(staged["onnx"]), inputs)
        for fmt in ("torchscript", "onnx"):
            if fmt in wanted:
                result.files[fmt] = atomic_write_bytes(out_dir / FILE_NAMES[fmt], staged[fmt].read_bytes())
                log(f"export: {result.files[fmt]} ({fmt}; differs from PyTorch by {result.errors[fmt]:.2g} of the "
                    f"output's range, tolerance {TOLERANCE:g})")
        if "bioimageio" in wanted:
            log("export: testing the bioimage.io package with bioimageio.core ...")
            result.files["bioimageio"], result.bioimageio_summary = bioimageio.export_bioimageio(
                net, metadata, chosen, out_dir / FILE_NAMES["bioimageio"], staged["torchscript"], staged["onnx"],
                name=metadata["name"], authors=list(authors), license=license)
            log(f"export: {result.files['bioimageio']} (bioimage.io package; bioimageio.core's test passed; test "
                f"input from {chosen.source})")
    return result


__all__ = ["FORMATS", "ExportError", "ExportResult", "export_model"]
