"""The pytorch_fnet CSV manifest: one row per image pair, ``path_signal,path_target[,path_mask]``.

Relative paths resolve against the CSV's folder, so a dataset folder can be moved whole. A path may
name a TIFF/OME-TIFF file or an OME-Zarr image (a ``*.zarr`` folder, or a plate's field of view
``plate.zarr/B/03/0``); the kinds may be mixed.

Channels, one column each (pytorch_fnet's convention; its ``channel_signal``/``channel_target`` columns
name a channel inside a multi-channel image):

* channel 1: ``path_signal``, ``path_target``, ``path_mask``; channel k >= 2: the same names with
  ``_k`` (``path_signal_2``, ``path_target_2``, ``path_mask_2``), numbered without gaps;
* ``channel_signal[_k]``, ``channel_target[_k]``, ``channel_mask[_k]``: the channel (name or index) of a
  multi-channel OME-Zarr image; ``PATH#CHANNEL`` in the path cell says the same;
* ``otsu_threshold[_k]``, ``otsu_smooth``: the target channels' Otsu thresholds stored by
  ``spotlight preprocess`` (and whether they were chosen on the smoothed copy).

A row whose paths name a plate's root (``plate.zarr``) stands for every field of view of the plate:
it expands into one row per field, in plate order (every plate of the row must have the same fields).
:func:`plate_rows` builds the same rows from a plate and channel names, without a CSV.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

from . import zarr_io
from .errors import DataError
from .sources import Source, expand_plate, parse_source

REQUIRED_COLUMNS = ("path_signal", "path_target")
MASK_COLUMN = "path_mask"
THRESHOLD_COLUMN = "otsu_threshold"
SMOOTH_COLUMN = "otsu_smooth"
ROLES = ("signal", "target", "mask")


@dataclass(frozen=True)
class ManifestRow:
    """Resolved paths of one image pair (``mask`` is None when the manifest has none).

    ``signal``, ``target`` and ``mask`` are the first channel's files or images. Rows of several
    channels, or of channels inside multi-channel images, hold every channel's :class:`Source` in
    ``signal_sources``, ``target_sources`` and ``mask_sources`` (one per target channel, None where
    absent); build them with :meth:`of`. ``thresholds`` are stored Otsu thresholds per target channel
    (None where absent), ``threshold_smoothed`` whether they were chosen on the smoothed copy.
    Read every row through :attr:`signals`, :attr:`targets` and :attr:`masks`.
    """

    signal: Path
    target: Path
    mask: Optional[Path] = None
    signal_sources: tuple = ()
    target_sources: tuple = ()
    mask_sources: tuple = ()
    thresholds: tuple = ()
    threshold_smoothed: Optional[bool] = None

    @classmethod
    def of(cls, signals: Sequence[Source], targets: Sequence[Source], masks: Optional[Sequence] = None,
           thresholds: Optional[Sequence] = None, threshold_smoothed: Optional[bool] = None) -> "ManifestRow":
        """A row of any number of channels; a single-channel row of plain files equals ``ManifestRow(s, t, m)``."""
        signals, targets = tuple(signals), tuple(targets)
        masks = tuple(masks) if masks is not None else (None,) * len(targets)
        if not signals or not targets:
            raise ValueError("a row needs at least one signal and one target channel")
        if len(masks) != len(targets):
            raise ValueError(f"{len(masks)} masks for {len(targets)} target channels")
        thresholds = tuple(thresholds) if thresholds is not None else ()
        if thresholds and len(thresholds) != len(targets):
            raise ValueError(f"{len(thresholds)} thresholds for {len(targets)} target channels")

        def plain(sources) -> bool:
            return len(sources) == 1 and sources[0] is not None and sources[0].channel is None \
                and sources[0].array is None

        return cls(signal=signals[0].path, target=targets[0].path, mask=masks[0].path if masks[0] else None,
                   signal_sources=() if plain(signals) else signals,
                   target_sources=() if plain(targets) else targets,
                   mask_sources=() if all(m is None for m in masks) or plain(masks) else masks,
                   thresholds=thresholds if any(t is not None for t in thresholds) else (),
                   threshold_smoothed=threshold_smoothed)

    @property
    def signals(self) -> tuple:
        """Every signal channel, a :class:`Source` each."""
        return self.signal_sources or (Source(self.signal),)

    @property
    def targets(self) -> tuple:
        """Every target channel, a :class:`Source` each."""
        return self.target_sources or (Source(self.target),)

    @property
    def masks(self) -> tuple:
        """One entry per target channel: its mask's :class:`Source`, or None."""
        if self.mask_sources:
            return self.mask_sources
        first = Source(self.mask) if self.mask is not None else None
        return (first,) + (None,) * (len(self.targets) - 1)

    @property
    def stored_thresholds(self) -> tuple:
        """One entry per target channel: the stored Otsu threshold, or None."""
        return self.thresholds or (None,) * len(self.targets)


def column(name: str, k: int) -> str:
    """The column of channel ``k`` (1-based): ``path_signal``, ``path_signal_2``, ..."""
    return name if k == 1 else f"{name}_{k}"


def _count(header: Sequence[str], name: str) -> int:
    """Channels of column family ``name`` in ``header`` (``name``, ``name_2``, ...), checked gap-free."""
    numbered = {1 if h == name else int(h[len(name) + 1:]) for h in header
                if h == name or (h.startswith(name + "_") and h[len(name) + 1:].isdigit())}
    count = len(numbered)
    if numbered and numbered != set(range(1, count + 1)):
        raise ValueError(f"columns {name}, {name}_2, ... must be numbered without gaps; found "
                         f"{', '.join(column(name, k) for k in sorted(numbered))}")
    return count


def _exists(path: Path) -> bool:
    return path.is_dir() if zarr_io.is_zarr(path) else path.is_file()


def _parse_bool(text: str, csv_path: Path, line_number: int) -> Optional[bool]:
    value = text.strip().lower()
    if not value:
        return None
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise DataError(csv_path, f"line {line_number}: {SMOOTH_COLUMN} must be true or false, got {text!r}")


def _row_sources(line: dict, counts: dict, base: Path, csv_path: Path, line_number: int, check_files: bool) -> dict:
    """``{role: [Source or None, ...]}`` of one CSV line."""
    sources = {}
    for role in ROLES:
        found = []
        for k in range(1, counts[role] + 1):
            path_column = column(f"path_{role}", k)
            value = line.get(path_column, "")
            if not value:
                if role == "mask":
                    found.append(None)
                    continue
                raise DataError(csv_path, f"line {line_number}: empty {path_column}")
            try:
                source = parse_source(value, base, line.get(column(f"channel_{role}", k)) or None)
            except ValueError as err:
                raise DataError(csv_path, f"line {line_number}: {path_column}: {err}") from err
            if check_files and not _exists(source.path):
                raise DataError(source.path, f"file not found ({path_column} on line {line_number} of {csv_path})")
            found.append(source)
        sources[role] = found
    return sources


def _thresholds(line: dict, count: int, csv_path: Path, line_number: int) -> list:
    values = []
    for k in range(1, count + 1):
        text = line.get(column(THRESHOLD_COLUMN, k), "")
        try:
            values.append(float(text) if text else None)
        except ValueError as err:
            raise DataError(csv_path, f"line {line_number}: {column(THRESHOLD_COLUMN, k)} must be a number, "
                                      f"got {text!r}") from err
    return values


def _expand(sources: dict, thresholds: list, smoothed: Optional[bool], csv_path: Path,
            line_number: int) -> list[ManifestRow]:
    """The row, or one row per field of view when its paths name plates' roots."""
    expanded = {role: [expand_plate(s, role) if s is not None else None for s in found]
                for role, found in sources.items()}
    layouts = {tuple(f for f, _ in e) for found in expanded.values() for e in found if e is not None}
    if layouts == {(None,)}:
        return [ManifestRow.of(sources["signal"], sources["target"], sources["mask"], thresholds, smoothed)]
    if len(layouts) != 1:
        raise DataError(csv_path, f"line {line_number}: a row naming a plate must name plates with the same fields "
                                  f"of view in every path column")
    if any(t is not None for t in thresholds):
        raise DataError(csv_path, f"line {line_number}: {THRESHOLD_COLUMN} cannot be given for a whole plate "
                                  f"(spotlight preprocess stores a plate's thresholds in its fields of view)")
    (fields,) = layouts
    return [ManifestRow.of(*([e[i][1] if e is not None else None for e in expanded[role]] for role in ROLES))
            for i in range(len(fields))]


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
    try:
        counts = {role: _count(header, f"path_{role}") for role in ROLES}
        thresholds = _count(header, THRESHOLD_COLUMN)
    except ValueError as err:
        raise DataError(csv_path, str(err)) from err
    if counts["mask"] > counts["target"] or thresholds > counts["target"]:
        raise DataError(csv_path, f"manifest has more mask or threshold columns than target channels "
                                  f"({counts['target']})")
    counts["mask"] = counts["mask"] and counts["target"]  # masks, when given, are one per target channel
    rows = []
    for line_number, raw in enumerate(lines, start=2):
        line = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        sources = _row_sources(line, counts, base, csv_path, line_number, check_files)
        if not sources["mask"]:
            sources["mask"] = [None] * counts["target"]
        values = _thresholds(line, thresholds, csv_path, line_number)
        values += [None] * (counts["target"] - len(values))
        smoothed = _parse_bool(line.get(SMOOTH_COLUMN, ""), csv_path, line_number)
        rows += _expand(sources, values, smoothed, csv_path, line_number)
    return rows


def plate_rows(plate: Union[str, Path], signal_channels: Sequence[str], target_channels: Sequence[str],
               fields: Optional[Sequence[str]] = None) -> list[ManifestRow]:
    """One row per field of view of the HCS plate ``plate`` (``fields``, or all in plate order), its signal and
    target the named channels: the rows a manifest naming the plate would give (stored thresholds and
    masks are found in the fields as for those). Channels and fields the plate lacks are a DataError
    naming them and what the plate has."""
    from .plates import open_plate

    opened = open_plate(plate, "plate")
    chosen = list(opened.fields if fields is None else fields)
    for field in chosen:
        opened.field_path(field)  # a DataError naming the plate's fields
    names = opened.channel_names()
    for role, wanted in (("signal", signal_channels), ("target", target_channels)):
        if not wanted:
            raise ValueError(f"no {role} channels given for plate {opened.path}")
        unknown = [c for c in wanted if str(c) not in names]
        if unknown:
            raise DataError(opened.path, f"plate has no {role} channel(s) {', '.join(map(str, unknown))}; its "
                                         f"channels are {', '.join(names)}")
    return [ManifestRow.of([Source(opened.field_path(f), str(c)) for c in signal_channels],
                           [Source(opened.field_path(f), str(c)) for c in target_channels]) for f in chosen]


def _relative(path: Optional[Path], base: Path) -> str:
    if path is None:
        return ""
    path = Path(path).resolve()
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return str(path)


def write_manifest(csv_path: Union[str, Path], rows: list[ManifestRow]) -> Path:
    """Writes ``rows`` as a manifest, with paths relative to the CSV's folder where possible.

    Channel columns (``channel_signal`` ...) are written for sources inside multi-channel images, and
    ``otsu_threshold[_k]``/``otsu_smooth`` for rows with stored thresholds. A source reading another array
    of its image (stored foreground masks) is not written: the loader finds those in the image itself.
    """
    csv_path = Path(csv_path)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    base = csv_path.resolve().parent
    per_row = [{"signal": r.signals, "target": r.targets,
                "mask": tuple(m if m is not None and m.array is None else None for m in r.masks)} for r in rows]
    counts = {role: max(len(p[role]) for p in per_row) for role in ROLES}
    if not any(m is not None for p in per_row for m in p["mask"]):
        counts["mask"] = 0
    channels = {role: any(s is not None and s.channel is not None for p in per_row for s in p[role]) for role in ROLES}
    with_thresholds = any(r.thresholds for r in rows)
    header = []
    for role in ROLES:
        for k in range(1, counts[role] + 1):
            header.append(column(f"path_{role}", k))
            if channels[role]:
                header.append(column(f"channel_{role}", k))
    if with_thresholds:
        header += [column(THRESHOLD_COLUMN, k) for k in range(1, counts["target"] + 1)] + [SMOOTH_COLUMN]
    with open(csv_path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for row, sources in zip(rows, per_row):
            cells = []
            for role in ROLES:
                found = list(sources[role]) + [None] * (counts[role] - len(sources[role]))
                for source in found:
                    cells.append(_relative(source.path if source is not None else None, base))
                    if channels[role]:
                        cells.append("" if source is None or source.channel is None else str(source.channel))
            if with_thresholds:
                values = list(row.stored_thresholds) + [None] * (counts["target"] - len(row.stored_thresholds))
                cells += ["" if v is None else repr(float(v)) for v in values]
                cells.append("" if row.threshold_smoothed is None else str(bool(row.threshold_smoothed)).lower())
            writer.writerow(cells)
    return csv_path
