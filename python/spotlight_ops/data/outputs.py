"""Names of the files a command writes for its inputs, distinct by construction (``predict``, ``preprocess``).

Every input gets ``<name><suffix><kind>`` in one output folder (``light.tif`` -> ``light_prediction.tif``):
``<name>`` is the input's name up to its first dot, ``<kind>`` follows the input's kind (``.ome.zarr``
for OME-Zarr images and plates, ``.ome.tif`` for OME-TIFF, ``.tif`` otherwise).

* Inputs whose names coincide but which are different files (``w1/light.tif``, ``w2/light.tif``) get
  their folders in front, as few as make them distinct: ``w1_light_prediction.tif``,
  ``w2_light_prediction.tif``. Inputs with unique names keep the plain name.
* A field of view of a plate (``plate.zarr/B/03/0``) goes into a plate of the same layout,
  ``plate_prediction.ome.zarr``, at the same field path (``B/03/0``): fields of one plate share the
  store and never collide, as plates' fields are distinct paths.
* What cannot be told apart (the same input twice; ``a.tif`` and ``a.tiff`` in one folder; a folder
  prefix that meets another input's plain name) is an :class:`OutputCollision` naming both inputs,
  before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

from . import zarr_io
from .io import is_ome_tiff
from .plates import field_of, is_plate
from .sources import Source

PathLike = Union[str, Path]


class OutputCollision(ValueError):
    """Two inputs would be written to the same output; the message names both."""


@dataclass(frozen=True)
class Output:
    """Where one input's output goes: ``name`` in the output folder, and for a plate's field of view
    the ``field`` inside that plate store."""

    name: str
    field: Optional[str] = None

    def path(self, out_dir: PathLike) -> Path:
        """The output file or store (for a field of view: the plate store; the field is :attr:`field`)."""
        return Path(out_dir) / self.name


def _owner(source: Source) -> tuple[Path, Optional[str]]:
    """``(the file, store or plate written for, field)`` of an input."""
    found = field_of(source.path)
    return (found[0], found[1]) if found else (source.path, None)


def _kind(path: Path) -> str:
    if zarr_io.is_zarr(path) or is_plate(path):
        return ".ome.zarr"
    return ".ome.tif" if is_ome_tiff(path) else ".tif"


def _stem(path: Path, depth: int) -> str:
    """The name with ``depth`` parent folders in front (``w1_light`` for ``w1/light.tif`` at depth 1)."""
    folders = [p for p in path.resolve().parent.parts[1:]][-depth:] if depth else []
    return "_".join(folders + [path.name.split(".")[0]])


def _as_source(item: Union[Source, PathLike]) -> Source:
    return item if isinstance(item, Source) else Source(Path(item))


def output_names(inputs: Sequence[Union[Source, PathLike]], suffix: str = "_prediction") -> list[Output]:
    """One :class:`Output` per input, all distinct (see the module docstring); :class:`OutputCollision`
    when two inputs cannot be told apart. ``inputs`` are paths or :class:`~spotlight_ops.data.sources.Source`
    s (a channel does not change the name)."""
    sources = [_as_source(i) for i in inputs]
    owners = [_owner(s) for s in sources]
    seen: dict = {}
    for source, (owner, field) in zip(sources, owners):
        key = (owner.resolve(), field)
        if key in seen:
            raise OutputCollision(f"{seen[key]} and {source} are the same input (given twice); give each once")
        seen[key] = source
    distinct = list(dict.fromkeys(owner.resolve() for owner, _ in owners))
    kinds = {owner: _kind(owner) for owner in distinct}
    plain = {owner: _stem(owner, 0) + suffix + kinds[owner] for owner in distinct}
    names = {}
    for owner in distinct:
        group = [o for o in distinct if plain[o].lower() == plain[owner].lower()]
        deepest = max(len(o.parent.parts) for o in group)
        depth = next((d for d in range(deepest) if len({(_stem(o, d) + kinds[o]).lower() for o in group}) == len(group)),
                     0)  # none tells them apart (a.tif, a.tiff in one folder): the plain name, refused below
        names[owner] = _stem(owner, depth) + suffix + kinds[owner]
    by_name: dict = {}
    for owner in distinct:
        other = by_name.setdefault(names[owner].lower(), owner)  # case-insensitive file systems too
        if other != owner:
            first = next(s for s, (o, _) in zip(sources, owners) if o.resolve() == other)
            second = next(s for s, (o, _) in zip(sources, owners) if o.resolve() == owner)
            raise OutputCollision(f"{first} and {second} would both be written as {names[owner]}; rename one of "
                                  f"them or write them into different folders")
    return [Output(names[owner.resolve()], field) for owner, field in owners]
