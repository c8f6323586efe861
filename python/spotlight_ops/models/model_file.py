"""The model file (``model.pt``): one format, written by training and read by prediction.

A model file is a ``torch.save`` archive of the model's state dict, so plain PyTorch reads it::

    state_dict = torch.load("model.pt", weights_only=True)
    FNet(**metadata["model_config"]).load_state_dict(state_dict)

Its description is one more record of the archive, ``archive/spotlight/metadata.json`` (JSON;
:func:`read_metadata`), and a SHA-256 of every record is another (:mod:`spotlight_ops.files.archive`)::

    kind            "spotlight-model"
    format_version  MODEL_FORMAT_VERSION (3); files of versions 1 and 2 (the framed format, the state
                    dict inside the payload as "model") are read too
    architecture    "fnet"
    model_config    FNet constructor arguments
    preprocess      PreprocessConfig as a dict (prediction repeats training's preprocessing)
    config          the TrainConfig as a dict
    iteration       the training iteration of the weights
    source          {"checkpoint": file name, "iteration": i, "sha256": digest}: the checkpoint these
                    weights were copied from, so a resume can tell a stale model.pt
    validation      (checkpoint_best.pt) {"val_loss", "iteration"}
    channels        (optional) {"signal": [names or None], "target": [names or None]}: the channel
                    names the model was trained on (:func:`channel_names`)

Read as a payload (:func:`read_model_payload`, ``load_checkpoint``), a model file is its metadata with
the state dict under ``"model"``. A training checkpoint can be read as a model too (it holds
``model_config``, ``model`` and ``preprocess``, and ``inference_model``, the weights with recomputed
BatchNorm statistics that prediction uses when present: :mod:`spotlight_ops.training.batchnorm`).
Reading checks the version, the architecture and that every weight is finite, and raises
:class:`ModelFileError` naming the file and what to do.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional, Union

KIND = "spotlight-model"
MODEL_FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
ARCHITECTURE = "fnet"
MODEL_NAME = "model.pt"
LATEST_CHECKPOINT = Path("checkpoints") / "checkpoint_latest.pt"
LAST_GOOD_CHECKPOINT = Path("checkpoints") / "checkpoint_last_good.pt"


class ModelFileError(ValueError):
    """A model file that cannot be used (another format version or architecture, damaged); names the file."""


def model_payload(model, preprocess: dict, config: dict, iteration: int, source: Optional[dict] = None) -> dict:
    """The payload of a model file for an :class:`~spotlight_ops.models.FNet` ``model``."""
    return {"kind": KIND, "format_version": MODEL_FORMAT_VERSION, "architecture": ARCHITECTURE,
            "model_config": model.config(), "model": model.state_dict(), "preprocess": dict(preprocess),
            "config": dict(config), "iteration": int(iteration), "source": dict(source or {})}


def write_model_file(path: Union[str, Path], payload: dict) -> Path:
    """Writes a model file atomically (temporary, fsync, rename, folder fsync): the state dict
    ``payload["model"]`` as the archive's object, the rest of ``payload`` as its metadata."""
    from ..files.checkpoint import save_atomic

    metadata = {key: value for key, value in payload.items() if key != "model"}
    return save_atomic(path, payload["model"], metadata)


def read_metadata(path: Union[str, Path]) -> dict:
    """A model file's verified metadata (its payload without the state dict)."""
    return {key: value for key, value in read_model_payload(path).items() if key != "model"}


def read_model_payload(path: Union[str, Path]) -> dict:
    """The verified payload of a model file or training checkpoint; :class:`ModelFileError` otherwise."""
    from ..files.checkpoint import CheckpointError, load_checkpoint

    path = Path(path)
    try:
        payload = load_checkpoint(path)
    except CheckpointError as err:
        raise ModelFileError(f"{err}; give a model.pt or checkpoint written by spotlight train") from None
    version = payload.get("format_version")
    if version not in READABLE_VERSIONS:
        newer = isinstance(version, int) and version > max(READABLE_VERSIONS)
        raise ModelFileError(
            f"{path}: model format version {version!r}, this spotlight reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}; "
            + ("update spotlight to read it" if newer else "retrain the model with this version"))
    architecture = payload.get("architecture", ARCHITECTURE)
    if architecture != ARCHITECTURE:
        raise ModelFileError(f"{path}: a model of architecture {architecture!r}; spotlight predicts with "
                             f"{ARCHITECTURE!r} models only")
    for key in ("model_config", "model", "preprocess"):
        if key not in payload:
            raise ModelFileError(f"{path}: not a spotlight model (missing {key!r}); give a model.pt or checkpoint "
                                 f"written by spotlight train")
    return payload


def channel_names(payload: dict, role: str) -> Optional[list]:
    """The ``role`` (``"signal"`` or ``"target"``) channel names a model file records, one per channel of the
    model, or None where it records none (or not every one, or not as many as the model has)."""
    config = payload.get("model_config") or {}
    count = int(config.get("in_channels" if role == "signal" else "out_channels", 1))
    recorded = payload.get("channels")
    names = recorded.get(role) if isinstance(recorded, dict) else None
    if not isinstance(names, (list, tuple)) or len(names) != count:
        return None
    if not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
        return None
    return list(names)


def build_model(payload: dict, path: Union[str, Path]):
    """The FNet of a verified payload, weights loaded; architecture mismatches name the file."""
    import torch

    from .fnet import FNet

    try:
        model = FNet(**payload["model_config"])
    except (TypeError, ValueError) as err:
        raise ModelFileError(f"{path}: model config {payload['model_config']!r} is not an F-net's ({err}); "
                             f"a model of another architecture") from None
    state = payload.get("inference_model", payload["model"])
    if not isinstance(state, dict):
        raise ModelFileError(f"{path}: its weights are a {type(state).__name__}, not a state dict; a damaged file")
    broken = [name for name, value in state.items()
              if isinstance(value, torch.Tensor) and value.is_floating_point() and not torch.isfinite(value).all()]
    if broken:
        raise ModelFileError(f"{path}: non-finite weights (NaN or Inf) in {', '.join(broken[:3])}"
                             f"{f' and {len(broken) - 3} more' if len(broken) > 3 else ''}; this model predicts "
                             f"NaN: use an earlier checkpoint or retrain (a diverged training, or a damaged file)")
    try:
        model.load_state_dict(state)
    except (RuntimeError, KeyError) as err:
        first = str(err).strip().splitlines()
        detail = " ".join(line.strip() for line in first[:2])[:300]
        raise ModelFileError(f"{path}: the weights do not fit FNet({payload['model_config']}) ({detail}); "
                             f"a model of another architecture or a damaged file") from None
    return model


def resolve(path: Union[str, Path]) -> Path:
    """A model file for ``path``: itself, or for a run folder its model.pt, else its newest checkpoint.

    A run folder's model.pt that was not copied from the run's latest checkpoint (the run was
    resumed to train further after it was written) is used with a warning.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such model file or run folder")
    if not path.is_dir():
        return path
    model, latest, last_good = path / MODEL_NAME, path / LATEST_CHECKPOINT, path / LAST_GOOD_CHECKPOINT
    if model.is_file():
        if latest.is_file() and _recorded_source(model) not in (None, _digest(latest)):
            print(f"WARNING: {model} was not written from the run's latest checkpoint {latest} (the run was "
                  f"resumed to train further and has not finished); using {model}. Pass {latest} as --model "
                  f"to predict with the newest weights.", file=sys.stderr)
        return model
    for candidate in (latest, last_good):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{path}: no {MODEL_NAME} or checkpoint in this run folder; train first "
                            f"(spotlight train --out {path} ...)")


def is_current(model_path: Union[str, Path], checkpoint_path: Union[str, Path]) -> bool:
    """True when ``model_path`` is an intact model file copied from ``checkpoint_path`` as it is now."""
    from ..files.checkpoint import read_digest

    digest = read_digest(checkpoint_path)
    if digest is None:
        return False
    try:
        payload = read_model_payload(model_path)
    except (ModelFileError, FileNotFoundError):
        return False
    return payload.get("kind") == KIND and payload.get("source", {}).get("sha256") == digest


def _digest(checkpoint: Path) -> Optional[str]:
    from ..files.checkpoint import read_digest

    return read_digest(checkpoint)


def _recorded_source(model_path: Path) -> Optional[str]:
    """The checkpoint digest a model file records (None for version-1 files and unreadable ones)."""
    try:
        return read_model_payload(model_path).get("source", {}).get("sha256")
    except ModelFileError:
        return None


def load(path: Union[str, Path], device="cpu") -> tuple:
    """``(model in eval mode on device, PreprocessConfig, payload)`` from a model file, checkpoint or run."""
    from ..data import PreprocessConfig

    path = resolve(path)
    payload = read_model_payload(path)
    model = build_model(payload, path).eval().to(device)
    pre = dict(payload["preprocess"])
    if pre.get("voxel_size") is not None:
        pre["voxel_size"] = tuple(pre["voxel_size"])
    try:
        preprocess = PreprocessConfig(**pre)
    except (TypeError, ValueError) as err:
        raise ModelFileError(f"{path}: its preprocessing settings cannot be used ({err})") from None
    return model, preprocess, payload
