"""The pytorch_fnet CSV manifest: one row per image pair, ``path_signal,path_target[,path_mask]``.

Relative paths resolve against the CSV's folder, so a dataset folder can be moved whole. A path may
name a TIFF/OME-TIFF file or an OME-Zarr store (a ``*.zarr`` folder); the kinds may be mixed.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from .errors import DataError

REQUIRED_COLUMNS = ("path_signal", "path_target")
MASK_COLUMN = "path_mask"


@dataclass(frozen=True)
class ManifestRow:
    """Resolved paths of one image pair (``mask`` is None when the manifest has none)."""

    signal: Path
    target: Path
    mask: Optional[Path] = None


def read_manifest(csv_path: Union[str, Path], check_files: bool = True) -> list[ManifestRow]:
    """Rows of the manifest ``csv_path``, paths resolved; raises :class:`DataError` on problems.

    Problems reported: missing CSV, empty CSV, missing columns, empty cells, and (with
    ``check_files``) files that do not exist, each naming the CSV line and the file.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DataError(csv_path, "manifest CSV not found")
    base = csv_path.resolve().parent
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as handle:  # "CSV UTF-8" files start with a BOM
            reader = csv.DictReader(handle)
            header = [h.strip() for h in (reader.fieldnames or [])]
            lines = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(csv_path, f"cannot read manifest CSV ({type(err).__name__}: {err})") from err
    if not header:
        raise DataError(csv_path, "manifest CSV is empty (expected a header path_signal,path_target[,path_mask])")
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise DataError(csv_path, f"manifest CSV lacks column(s) {', '.join(missing)}; header is {header}")
    if not lines:
        raise DataError(csv_path, "manifest CSV has a header but no rows")
    has_mask = MASK_COLUMN in header
    rows = []
    for line_number, raw in enumerate(lines, start=2):
        line = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        paths = {}
        for column in REQUIRED_COLUMNS + ((MASK_COLUMN,) if has_mask else ()):
            value = line.get(column, "")
            if not value:
                if column == MASK_COLUMN:
                    paths[column] = None
                    continue
                raise DataError(csv_path, f"line {line_number}: empty {column}")
            path = Path(value).expanduser()
            path = path if path.is_absolute() else base / path
            exists = path.is_dir() if path.suffix.lower() == ".zarr" else path.is_file()
            if check_files and not exists:
                raise DataError(path, f"file not found ({column} on line {line_number} of {csv_path})")
            paths[column] = path
        rows.append(ManifestRow(paths["path_signal"], paths["path_target"], paths.get(MASK_COLUMN)))
    return rows


def write_manifest(csv_path: Union[str, Path], rows: list[ManifestRow]) -> Path:
    """Writes ``rows`` as a manifest, with paths relative to the CSV's folder where possible."""
    csv_path = Path(csv_path)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    base = csv_path.resolve().parent
    with_mask = any(r.mask is not None for r in rows)

    def rel(p: Optional[Path]) -> str:
        if p is None:
            return ""
        p = Path(p).resolve()
        try:
            return p.relative_to(base).as_posix()
        except ValueError:
            return str(p)

    with open(csv_path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(list(REQUIRED_COLUMNS) + ([MASK_COLUMN] if with_mask else []))
        for r in rows:
            writer.writerow([rel(r.signal), rel(r.target)] + ([rel(r.mask)] if with_mask else []))
    return csv_path
