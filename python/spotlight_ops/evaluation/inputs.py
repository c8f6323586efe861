"""Reading the volumes to evaluate: TIFF files, ``name=a.tif,b.tif`` specs, or a CSV.

- A TIFF holds one 3D ZYX volume, or a 4D stack of volumes (N, Z, Y, X) that counts as
  N volumes in file order.
- An OME-Zarr image (``x.ome.zarr``, a plate's field of view ``plate.zarr/B/03/0``) is one volume,
  an HCS plate (``plate.zarr``) one volume per field of view, in plate order; ``PATH#CHANNEL`` picks
  the channel of a multi-channel image or plate (``plate.zarr#Nuclei``), read by the data pipeline
  (:mod:`spotlight_ops.data.sources`).
- ``--pred`` specs: ``NAME=PATH[,PATH...]`` (a model and its volumes, in target order);
  a spec without ``NAME=`` is the model ``prediction`` (allowed once).
- CSV (long format, one row per prediction): columns ``model,path_prediction,path_target``
  and optionally ``path_mask``; relative paths resolve against the CSV's folder (as the
  training manifests do). Rows sharing a ``path_target`` are one volume; volumes are
  ordered by first appearance, and every model must have one prediction per volume.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

UNNAMED_MODEL = "prediction"


@dataclass
class EvaluationInputs:
    """Everything ``evaluate_models`` needs, read from disk."""

    predictions: dict[str, list[np.ndarray]]
    targets: list[np.ndarray]
    masks: list[np.ndarray] | None
    names: list[str]


def _zarr_volumes(path: Path, role: str) -> tuple[list[np.ndarray], list[str]] | None:
    """``(volumes, names)`` of an OME-Zarr image or plate (``PATH#CHANNEL`` allowed); None for other paths."""
    from ..data import DataError
    from ..data.sources import expand_plate, parse_source

    source = parse_source(str(path))
    if not source.is_zarr:
        return None
    try:
        found = expand_plate(source, role)
        volumes = [s.read(role) for _, s in found]
    except DataError as err:
        raise ValueError(f"{role}: {err}") from err
    stem = source.path.name.split(".")[0]
    names = [stem if field is None else f"{stem}/{field}" for field, _ in found]
    return volumes, names


def read_volumes(path: str | Path, role: str) -> list[np.ndarray]:
    """The 3D volumes stored in one TIFF (a 4D file gives several), OME-Zarr image (one) or HCS plate (one per
    field of view); errors name the file."""
    return _read_named(path, role)[0]


def _read_named(path: str | Path, role: str) -> tuple[list[np.ndarray], list[str]]:
    """``(volumes, names)`` of one path (see :func:`read_volumes`)."""
    path = Path(path).expanduser()
    zarr = _zarr_volumes(path, role)
    if zarr is not None:
        return zarr
    if not path.is_file():
        raise FileNotFoundError(f"{role}: no such file: {path}")
    try:
        data = tifffile.imread(path)
    except Exception as err:  # tifffile raises several types for unreadable files
        raise ValueError(f"{role}: cannot read {path} as TIFF ({type(err).__name__}: {err})") from err
    data = np.squeeze(data) if data.ndim > 4 else data
    if data.ndim == 3:
        volumes = [data]
    elif data.ndim == 4:
        volumes = list(data)
    else:
        raise ValueError(f"{role}: {path} must hold a 3D ZYX volume or a 4D stack of them, got shape {data.shape}")
    if np.issubdtype(data.dtype, np.floating) and not np.isfinite(data).all():
        raise ValueError(f"{role}: {path} contains NaN or Inf values")
    names = [path.stem] if len(volumes) == 1 else [f"{path.stem}[{k}]" for k in range(len(volumes))]
    return volumes, names


def split_paths(text: str) -> list[Path]:
    """``a.tif,b.tif`` -> paths (empty items are an error)."""
    items = [item.strip() for item in text.split(",")]
    if not items or any(not item for item in items):
        raise ValueError(f"empty path in {text!r}")
    return [Path(item) for item in items]


def parse_prediction_spec(spec: str) -> tuple[str, list[Path]]:
    """``NAME=PATHS`` -> (NAME, paths); plain ``PATHS`` -> (``prediction``, paths)."""
    name, sep, paths = spec.partition("=")
    if not sep:
        return UNNAMED_MODEL, split_paths(spec)
    name = name.strip()
    if not name:
        raise ValueError(f"--pred {spec!r}: empty model name before '='")
    return name, split_paths(paths)


def read_all(paths: list[Path], role: str) -> tuple[list[np.ndarray], list[str]]:
    volumes, names = [], []
    for path in paths:
        found, found_names = _read_named(path, role)
        volumes += found
        names += found_names
    return volumes, names


def from_specs(pred_specs: list[str], target_paths: list[Path], mask_paths: list[Path] | None) -> EvaluationInputs:
    """Inputs from ``--pred`` specs and ``--target``/``--masks`` path lists."""
    if not pred_specs:
        raise ValueError("give at least one --pred NAME=PATH[,PATH...] (or --csv)")
    predictions: dict[str, list[np.ndarray]] = {}
    for spec in pred_specs:
        name, paths = parse_prediction_spec(spec)
        if name in predictions:
            raise ValueError(f"--pred: model {name!r} given twice (name each model: --pred NAME=PATHS)")
        predictions[name] = read_all(paths, f"--pred {name}")[0]
    targets, names = read_all(target_paths, "--target")
    masks = read_all(mask_paths, "--masks")[0] if mask_paths else None
    for name, volumes in predictions.items():
        if len(volumes) != len(targets):
            raise ValueError(f"--pred {name}: {len(volumes)} volume(s) for {len(targets)} target volume(s)")
    if masks is not None and len(masks) != len(targets):
        raise ValueError(f"--masks: {len(masks)} volume(s) for {len(targets)} target volume(s)")
    return EvaluationInputs(predictions, targets, masks, names)


def from_csv(csv_path: str | Path) -> EvaluationInputs:
    """Inputs from a long-format CSV (see the module docstring)."""
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"--csv: no such file: {csv_path}")
    base = csv_path.resolve().parent
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:  # "CSV UTF-8" files start with a BOM
        reader = csv.DictReader(handle)
        header = [h.strip() for h in reader.fieldnames or []]
        lines = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    required = ("model", "path_prediction", "path_target")
    missing = [c for c in required if c not in header]
    if missing:
        raise ValueError(f"--csv {csv_path}: missing column(s) {missing}; header is {header}")
    if not lines:
        raise ValueError(f"--csv {csv_path}: no rows")

    def resolve(value: str, column: str, line: int) -> Path:
        if not value:
            raise ValueError(f"--csv {csv_path}: empty {column} on line {line}")
        path = Path(value).expanduser()
        return path if path.is_absolute() else base / path

    order: list[Path] = []
    mask_of: dict[Path, Path | None] = {}
    table: dict[str, dict[Path, Path]] = {}
    for line_number, row in enumerate(lines, start=2):
        target = resolve(row["path_target"], "path_target", line_number)
        if target not in mask_of:
            order.append(target)
            mask_of[target] = resolve(row["path_mask"], "path_mask", line_number) if row.get("path_mask") else None
        model = row["model"]
        if not model:
            raise ValueError(f"--csv {csv_path}: empty model on line {line_number}")
        if target in table.setdefault(model, {}):
            raise ValueError(f"--csv {csv_path}: model {model!r} has two predictions for {target} (line {line_number})")
        table[model][target] = resolve(row["path_prediction"], "path_prediction", line_number)
    for model, paths in table.items():
        absent = [str(t) for t in order if t not in paths]
        if absent:
            raise ValueError(f"--csv {csv_path}: model {model!r} has no prediction for target(s) {absent}")
    targets = [_one(t, "path_target") for t in order]
    predictions = {
        model: [_one(paths[t], f"path_prediction ({model})") for t in order] for model, paths in table.items()
    }
    have_masks = [mask_of[t] is not None for t in order]
    if any(have_masks) and not all(have_masks):
        raise ValueError(f"--csv {csv_path}: path_mask must be given for every target or for none")
    masks = [_one(mask_of[t], "path_mask") for t in order] if all(have_masks) else None
    return EvaluationInputs(predictions, targets, masks, [t.stem for t in order])


def _one(path: Path, role: str) -> np.ndarray:
    volumes = read_volumes(path, role)
    if len(volumes) != 1:
        raise ValueError(f"{role}: {path} holds {len(volumes)} volumes; a CSV row names exactly one")
    return volumes[0]
