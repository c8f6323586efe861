"""bioimage.io model package (bioimageio.spec 0.5): what Fiji/deepImageJ, ilastik and napari run.

The package (a zip) holds ``rdf.yaml`` and:

* three weight formats of one model: ``weights.pt`` (the state dict, ``pytorch_state_dict``, with
  ``fnet.py``, spotlight's own F-net source, as its architecture), ``weights.torchscript.pt`` and
  ``weights.onnx`` (both marked as converted from the state dict);
* ``test_input.npy`` (a box of the sample volume, resampled, not standardized: axes batch, channel,
  z, y, x) and ``test_output.npy`` (the PyTorch model's prediction for it), and the same as TIFF
  (``sample_input.tif``, ``sample_output.tif``) for viewers;
* the preprocessing the model needs, as the spec states it: ``zero_mean_unit_variance`` over z, y
  and x of each sample, ``(x - mean) / (std + 1e-6)``, which is spotlight's signal standardization
  up to the ``eps > 0`` the spec requires (a relative ``1e-6 / std``). The spec's default eps, because
  bioimageio.core 0.11 applies 1e-6 whatever the package states, and the test output must be what
  the reference implementation computes;
* ``README.md`` (what the model does, what a consumer must do that the spec cannot state: resample to
  the training voxel size, standardize whole volumes rather than tiles), ``cover.png``.

Every spatial size of the input must be a multiple of ``2**depth`` (``ParameterizedSize(min=m,
step=m)``); the output has the input's size and holds the target's Otsu-standardized intensities
(foreground ``> 0``). The package is checked with ``bioimageio.core``'s own test (every weight
format reproduces the test output, at several input sizes) before it is kept.
"""

from __future__ import annotations

import inspect
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import tifffile
import torch
from torch import nn

from ..optional import EXPORT_INSTALL, optional_import
from .check import ExportError
from .sample import Sample

EPS = 1e-6  # the spec requires eps > 0 (spotlight divides by the std alone); bioimageio.core uses 1e-6 always
NAME_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+- ()")
CITATIONS = (
    ("Kalinin, A.A. et al. Foreground-aware Virtual Staining for Accurate 3D Cell Morphological Profiling. "
     "ICML GenBio Workshop (2025). arXiv:2507.05383", "10.48550/arXiv.2507.05383"),
    ("Ounkomol, C. et al. Label-free prediction of three-dimensional fluorescence images from "
     "transmitted-light microscopy. Nature Methods 15, 917-920 (2018)", "10.1038/s41592-018-0111-2"),
)


def check_name(name: str) -> str:
    """``name`` when the bioimage.io specification accepts it as a model name; a ValueError saying why otherwise."""
    bad = sorted(set(name) - NAME_CHARACTERS)
    if not 5 <= len(name) <= 128 or bad:
        raise ValueError(f"--name {name!r}: a bioimage.io model name has 5 to 128 characters among letters, digits, "
                         f"spaces and _+-()" + (f" (not {''.join(bad)!r})" if bad else ""))
    return name


def check_license(license: str) -> str:
    """``license`` when it is an SPDX identifier the specification accepts; a ValueError otherwise."""
    optional_import("bioimageio.spec", install=EXPORT_INSTALL, purpose="bioimage.io export")
    from bioimageio.spec.model import v0_5 as S

    try:
        S.LicenseId(license)
    except ValueError:  # pydantic's ValidationError lists every SPDX identifier: say it short
        raise ValueError(f"--license {license!r}: not an SPDX license identifier the bioimage.io specification "
                         f"accepts (e.g. CC-BY-4.0, MIT, Apache-2.0, BSD-3-Clause)") from None
    return license


def default_name(source: Path) -> str:
    """``spotlight F-net <run folder>``, with the characters a model name cannot hold replaced by ``-``."""
    folder = source.parent.name if source.suffix == ".pt" else source.name
    folder = "".join(c if c in NAME_CHARACTERS else "-" for c in folder)[:100]
    return f"spotlight F-net {folder}".strip()


def standardize_as_the_package(raw: np.ndarray) -> np.ndarray:
    """The package's preprocessing, ``(x - mean) / (std + EPS)`` over the whole sample (float64 math)."""
    x = raw.astype(np.float64)
    return ((x - x.mean()) / (x.std() + EPS)).astype(np.float32)


def export_bioimageio(model: nn.Module, metadata: dict, sample: Sample, path: Union[str, Path],
                      torchscript_file: Path, onnx_file: Path, *, name: str, authors: Sequence[str],
                      license: str = "CC-BY-4.0", test: bool = True) -> tuple:
    """Writes the package zip to ``path``; returns ``(path, summary)`` with bioimageio.core's test summary
    (None when ``test`` is false). The package is removed and :class:`ExportError` raised when the test fails."""
    optional_import("bioimageio.core", install=EXPORT_INSTALL, purpose="bioimage.io export")
    from bioimageio.spec import save_bioimageio_package

    path = Path(path)
    multiple = int(metadata["size_multiple"])
    with tempfile.TemporaryDirectory(prefix="spotlight-bioimageio-") as folder:
        folder = Path(folder)
        test_input = sample.raw[None, None].astype(np.float32)
        with torch.inference_mode():
            test_output = model.eval()(torch.from_numpy(standardize_as_the_package(sample.raw))[None, None]).numpy()
        np.save(folder / "test_input.npy", test_input)
        np.save(folder / "test_output.npy", test_output.astype(np.float32))
        tifffile.imwrite(folder / "sample_input.tif", test_input)  # for people and viewers (.npy is for tests)
        tifffile.imwrite(folder / "sample_output.tif", test_output.astype(np.float32))
        torch.save(model.state_dict(), folder / "weights.pt")
        shutil.copyfile(inspect.getsourcefile(type(model)), folder / "fnet.py")
        shutil.copyfile(torchscript_file, folder / "weights.torchscript.pt")
        shutil.copyfile(onnx_file, folder / "weights.onnx")
        (folder / "README.md").write_text(_readme(metadata, sample, test_input.shape))
        _cover(sample.raw, test_output[0, 0], folder / "cover.png")
        descr = _description(metadata, folder, multiple, name, authors, license, onnx_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.tmp")
        save_bioimageio_package(descr, output_path=partial)
    summary = None
    if test:
        summary = test_package(partial)
        if summary.status != "passed":
            partial.unlink(missing_ok=True)
            raise ExportError(f"{path}: bioimage.io package failed bioimageio.core's test: {_failures(summary)}")
    partial.replace(path)
    return path, summary


def test_package(path: Union[str, Path]):
    """bioimageio.core's test of a package (every weight format, test tensors, parametrized sizes), offline."""
    optional_import("bioimageio.core", install=EXPORT_INSTALL, purpose="testing a bioimage.io package")
    from bioimageio.core import test_model

    with warnings.catch_warnings():  # bioimageio.core's torch.jit.load: PyTorch's deprecation, not ours to act on
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.load.* is deprecated", category=FutureWarning)
        return test_model(str(path), devices=["cpu"])


def _description(metadata: dict, folder: Path, multiple: int, name: str, authors: Sequence[str], license: str,
                 onnx_file: Path):
    from bioimageio.spec.model import v0_5 as S

    from .onnx import opset_of

    torch_version = S.Version(torch.__version__.split("+")[0])
    size = S.ParameterizedSize(min=multiple, step=multiple)
    space = [S.SpaceInputAxis(id=S.AxisId(a), size=size) for a in "zyx"]
    inputs = S.InputTensorDescr(
        id=S.TensorId("brightfield"), description="label-free z-stack (transmitted light), one channel",
        axes=[S.BatchAxis(), S.ChannelAxis(channel_names=[S.Identifier("brightfield")]), *space],
        test_tensor=S.FileDescr(source=folder / "test_input.npy"),
        sample_tensor=S.FileDescr(source=folder / "sample_input.tif"),
        data=S.IntervalOrRatioDataDescr(type="float32"),
        preprocessing=[S.ZeroMeanUnitVarianceDescr(kwargs=S.ZeroMeanUnitVarianceKwargs(
            axes=[S.AxisId(a) for a in "zyx"], eps=EPS))])
    outputs = S.OutputTensorDescr(
        id=S.TensorId("fluorescence"),
        description="predicted fluorescence, Otsu-standardized: (y - T) / std, foreground > 0",
        axes=[S.BatchAxis(), S.ChannelAxis(channel_names=[S.Identifier("fluorescence")]),
              *[S.SpaceOutputAxis(id=S.AxisId(a), size=S.SizeReference(tensor_id=S.TensorId("brightfield"),
                                                                         axis_id=S.AxisId(a))) for a in "zyx"]],
        test_tensor=S.FileDescr(source=folder / "test_output.npy"),
        sample_tensor=S.FileDescr(source=folder / "sample_output.tif"),
        data=S.IntervalOrRatioDataDescr(type="float32"))
    weights = S.WeightsDescr(
        pytorch_state_dict=S.PytorchStateDictWeightsDescr(
            source=folder / "weights.pt", pytorch_version=torch_version,
            architecture=S.ArchitectureFromFileDescr(source=folder / "fnet.py", callable=S.Identifier("FNet"),
                                                     kwargs=dict(metadata["model_config"]))),
        torchscript=S.TorchscriptWeightsDescr(source=folder / "weights.torchscript.pt",
                                              pytorch_version=torch_version, parent="pytorch_state_dict"),
        onnx=S.OnnxWeightsDescr(source=folder / "weights.onnx", opset_version=opset_of(onnx_file),
                                parent="pytorch_state_dict"))
    return S.ModelDescr(
        name=name,
        description="Virtual staining: predicts nuclear fluorescence from a label-free 3D z-stack (F-net 3D U-Net, "
                    "trained with spotlight)",
        authors=[S.Author(name=a) for a in authors],
        cite=[S.CiteEntry(text=text, doi=S.Doi(doi)) for text, doi in CITATIONS],
        license=S.LicenseId(license),
        documentation=S.FileDescr(source=folder / "README.md"),
        covers=[S.FileDescr(source=folder / "cover.png")],
        tags=["virtual-staining", "label-free", "3d", "fluorescence", "nuclei", "unet", "spotlight"],
        inputs=[inputs], outputs=[outputs], weights=weights)


def _readme(metadata: dict, sample: Sample, shape: tuple) -> str:
    pre, config = metadata.get("preprocess", {}), metadata.get("config", {})
    voxel = pre.get("voxel_size")
    resample = (f"Resample the input to isotropic voxels of {pre.get('isotropic_voxel_size') or min(voxel)} "
                f"(training resampled from voxel size {voxel}, z, y, x, linearly) before passing it: the "
                f"bioimage.io specification has no resampling step." if voxel else
                "The model was trained on volumes as they were read (no resampling): pass inputs of the same "
                "voxel size as the training data.")
    return f"""# {metadata.get('name', 'spotlight F-net')}

Virtual staining: predicts nuclear fluorescence (e.g. Hoechst) from a label-free 3D z-stack. F-net
(the 3D U-Net of Ounkomol et al. 2018) with depth {metadata['model_config'].get('depth')} and
{metadata['model_config'].get('base_channels')} base channels, trained by spotlight with the
`{config.get('loss', '?')}` loss for {metadata.get('iteration', '?')} iterations.

## Input and preprocessing

One channel, axes (batch, channel, z, y, x), float32; every spatial size a multiple of
{metadata['size_multiple']}. The package standardizes each sample, `(x - mean) / (std + 1e-6)` over
z, y and x. Spotlight standardizes whole volumes before tiling them: give the whole volume (or
standardize it yourself and tile the result), not tiles standardized one by one.

{resample}

## Output

Predicted fluorescence in the units the training targets were standardized to: `(y - T) / std`
with `T` the target's Otsu threshold, so the foreground is `> 0`. To segment nuclei, threshold at 0.

## Validation

`test_input.npy` is a {shape[2]} x {shape[3]} x {shape[4]} box of {sample.source}, and `test_output.npy`
the PyTorch model's prediction for it; `bioimageio test` reproduces it with every weight format.
Spotlight's own evaluation (`spotlight evaluate`) measures PSNR, SSIM and segmentation AP against
real fluorescence on held-out volumes.
"""


def _cover(raw: np.ndarray, prediction: np.ndarray, path: Path) -> None:
    """The middle z-plane of the test input and of its prediction, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    z = raw.shape[0] // 2
    figure, axes = plt.subplots(1, 2, figsize=(6, 3), dpi=100)
    for ax, image, title in zip(axes, (raw[z], prediction[z]), ("label-free input", "predicted fluorescence")):
        ax.imshow(image, cmap="gray")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _failures(summary) -> str:
    lines = [f"{d.name}: {e.msg}" for d in summary.details if d.status == "failed" for e in d.errors]
    return " | ".join(" ".join(line.split()) for line in lines)[:600] or f"status {summary.status}"
