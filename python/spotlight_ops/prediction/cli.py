"""``spotlight predict``: TIFF, OME-TIFF, OME-Zarr images and HCS plates in, the same kind out.

Every input gets an output of its own kind, named by :func:`spotlight_ops.data.outputs.output_names`
(distinct by construction, or a one-line refusal naming both inputs before anything is written):

* a TIFF / OME-TIFF (or a manifest row's signal files, ``--csv``): ``<name>_prediction.tif`` /
  ``.ome.tif``; a model of C_out > 1 output channels writes one file per channel,
  ``<name>_prediction_<k>.tif``, k = 1 .. C_out;
* an OME-Zarr image: a new image store ``<name>_prediction.ome.zarr`` with the input's layout;
* an HCS plate (all its fields, or ``--fields``) or a plate's field of view: a new plate
  ``<plate>_prediction.ome.zarr`` of the same layout holding the predicted fields;
* with ``--into-input``, OME-Zarr images and plates get the prediction as new channels of the input
  store instead.

Output channels are named ``<target channel>_prediction`` when the model file records its target
channel names, else ``prediction`` (one channel) or ``prediction_<k>``. The signal channels of an
OME-Zarr input are ``--channels`` (as many as the model takes), else the model's recorded signal
channel names when the image has them, else all of the image's channels when their count is the
model's. Existing outputs (files, stores, channels) are refused unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..data import DataError, read_manifest
from ..data import plates, zarr_io
from ..data.outputs import output_names
from ..data.sources import Source, parse_source
from .tiles import DEFAULT_OVERLAP, DEFAULT_TILE

TTA_MODES = ("none", "yx", "zyx")


@dataclass
class Job:
    """One input's prediction: ``sources`` are its signal channels; ``image`` the OME-Zarr image written into
    (None for TIFF outputs, then ``files``)."""

    label: str
    sources: list
    image: Optional[Path] = None
    files: list = field(default_factory=list)
    how: str = ""


@dataclass
class Store:
    """An output store to make before its jobs run: ``kind`` "plate", "image" or "append" (into the input)."""

    kind: str
    path: Path
    source: Path
    fields: list = field(default_factory=list)
    existing: bool = False


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "predict", help="predict fluorescence for whole volumes with a trained model",
        description="Predict whole volumes tile by tile with smooth blending, reading the signal lazily and writing "
                    "the prediction slab by slab (float32, in the target's standardized intensities), keeping the "
                    "input's voxel size and kind: .tif / .ome.tif for TIFF / OME-TIFF, a new .ome.zarr image for "
                    "an OME-Zarr image, a new plate of the same layout for an HCS plate (or, with --into-input, new "
                    "channels of the input store). Outputs never overwrite each other or existing data.")
    p.add_argument("--model", required=True, help="run folder, its model.pt, or a training checkpoint")
    p.add_argument("inputs", nargs="*", help="signal TIFF/OME-TIFF files, OME-Zarr images (PATH#CHANNEL), HCS plates "
                                             "or plate fields of view (plate.zarr/B/03/0)")
    p.add_argument("--csv", help="manifest CSV: predict every row's signal (its path_signal[_k] columns: one per "
                                 "signal channel of the model)")
    p.add_argument("--out", required=True, help="output folder")

    p.add_argument("--fields", nargs="+", metavar="ROW/COL/FIELD", type=plates.field_path_argument,
                   help="fields of view of the plate(s) to predict (default: all)")
    p.add_argument("--channels", nargs="+", metavar="NAME", help="signal channels of OME-Zarr inputs, by name or "
                                                                 "index, one per input channel of the model")
    p.add_argument("--into-input", dest="into_input", action="store_true",
                   help="write OME-Zarr and plate predictions as new channels of the input store (default: a new "
                        "store in --out)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files, stores or channels")
    p.add_argument("--tile", type=int, nargs=3, default=list(DEFAULT_TILE), metavar=("Z", "Y", "X"),
                   help="tile size (default %(default)s), rounded down to a multiple of 2**depth")
    p.add_argument("--overlap", type=int, nargs=3, default=list(DEFAULT_OVERLAP), metavar=("Z", "Y", "X"),
                   help="overlap of neighbouring tiles (default %(default)s)")
    p.add_argument("--tta", choices=list(TTA_MODES), default="none",
                   help="test-time augmentation: average the predictions of the 8 rotations and reflections of "
                        "the YX square (--tta yx: 8 times the compute), or of those with z flips (--tta zyx: 16); "
                        "default none")
    p.add_argument("--batch-tiles", dest="batch_tiles", type=int, default=1,
                   help="tiles per forward pass (each with its TTA copies; default %(default)s)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--no-amp", dest="amp", action="store_false", help="disable mixed precision on CUDA")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bars")
    p.set_defaults(handler=run)
    return p


def output_channels(payload: dict) -> list:
    """``<target>_prediction`` per recorded target channel name, else ``prediction`` / ``prediction_<k>``."""
    from ..models.model_file import channel_names

    count = int(payload["model_config"].get("out_channels", 1))
    targets = channel_names(payload, "target")
    if targets:
        return [f"{name}_prediction" for name in targets]
    return ["prediction"] if count == 1 else [f"prediction_{k}" for k in range(1, count + 1)]


def signal_channels(image: zarr_io.ZarrImage, asked: Optional[list], recorded: Optional[list], count: int) -> list:
    """The channels of ``image`` to predict from (see the module docstring); a DataError when they cannot be told."""
    if asked:
        if len(asked) != count:
            raise ValueError(f"--channels: the model takes {count} signal channel(s), {len(asked)} given "
                             f"({' '.join(asked)})")
        for name in asked:
            image.channel_index(name, "signal")
        return list(asked)
    if "c" not in image.axes:
        if count != 1:
            raise DataError(image.path, f"has one channel; the model takes {count}")
        return [None]
    if recorded and all(n in image.channel_names for n in recorded):
        return list(recorded)
    if len(image.channel_names) == count:
        return list(image.channel_names)
    raise DataError(image.path, f"has channels {', '.join(image.channel_names)}; the model takes {count}: name "
                                f"{'it' if count == 1 else 'them'} with --channels (or PATH#CHANNEL)")


def _inputs(args) -> list:
    """One list of signal :class:`Source` s per input (a manifest row gives its channels)."""
    items = [[parse_source(text)] for text in args.inputs]
    if args.csv:
        items += [list(row.signals) for row in read_manifest(args.csv)]
    if not items:
        raise ValueError("no inputs: give signal files, OME-Zarr images, plates or --csv")
    return items


def _expand(items: list, fields: Optional[list]) -> list:
    """Plates' roots become their fields of view (all, or ``fields``); fields not in a plate are refused."""
    out = []
    for sources in items:
        first = sources[0]
        if plates.is_plate(first.path):
            plate = plates.open_plate(first.path, "signal plate")
            for name in fields or plate.fields:
                plate.field_path(name)
            out += [[Source(plate.field_path(f), s.channel) for s in sources] for f in fields or plate.fields]
        else:
            out.append(sources)
    if fields and not any(plates.is_plate(s[0].path) for s in items):
        raise ValueError("--fields: no input is an HCS plate")
    return out


def plan(args, payload: dict) -> tuple[list, list]:
    """``(stores, jobs)``: every output named and checked (collisions, existing outputs, channels) before
    anything is written."""
    from ..models.model_file import channel_names

    config = payload["model_config"]
    c_in, c_out = int(config.get("in_channels", 1)), int(config.get("out_channels", 1))
    names = output_channels(payload)
    recorded = channel_names(payload, "signal")
    out_dir = Path(args.out)
    items = _expand(_inputs(args), args.fields)
    suffixes = ["_prediction"] if c_out == 1 else [f"_prediction_{k}" for k in range(1, c_out + 1)]
    firsts = [s[0] for s in items]
    stored = output_names(firsts)  # OME-Zarr outputs hold every output channel in one store
    named = [stored] if c_out == 1 else [output_names(firsts, suffix) for suffix in suffixes]
    stores: dict = {}
    jobs = []
    for i, sources in enumerate(items):
        first = sources[0]
        label = str(first)
        if not first.is_zarr:
            if args.into_input:
                raise ValueError(f"--into-input: {label} is a TIFF, which cannot hold a prediction channel; predict "
                                 f"TIFFs without --into-input (they get new files)")
            if len(sources) != c_in:
                raise ValueError(f"{label}: the model takes {c_in} signal channel(s); a TIFF input is one (give "
                                 f"several with --csv, one path_signal[_k] column each)")
            files = [o[i].path(out_dir) for o in named]
            for path in files:
                if path.exists() and not args.overwrite:
                    raise DataError(path, "exists; choose another --out or pass --overwrite")
            jobs.append(Job(label, sources, files=files))
            continue
        image = zarr_io.open_image(first.path, "signal")
        if len(sources) > 1 or first.channel is not None:  # named: PATH#CHANNEL, a manifest row's columns
            if len(sources) != c_in:
                raise ValueError(f"{label}: the model takes {c_in} signal channel(s), {len(sources)} named")
        else:
            sources = [Source(first.path, c) for c in signal_channels(image, args.channels, recorded, c_in)]
        found = plates.field_of(first.path)
        if args.into_input:
            target = found[0] if found else first.path
            store = stores.setdefault(("append", target), Store("append", target, target))
            clash = [n for n in names if n in image.channel_names]
            if clash and not args.overwrite:
                raise DataError(first.path, f"already has channel(s) {', '.join(clash)}; pass --overwrite to replace "
                                            f"them")
            if clash and len(clash) != len(names):
                raise DataError(first.path, f"has some of the output channels ({', '.join(clash)}) but not all")
            store.existing = bool(clash)
            if "c" not in image.axes:
                raise DataError(first.path, "has no channel axis, so predictions cannot be added to it; predict into "
                                            "a new store (without --into-input)")
            where = first.path
            how = f"channel(s) {', '.join(names)} {'replaced' if clash else 'added'} in the input " \
                  f"{'plate' if found else 'image'}"
        else:
            output = stored[i]
            store_path = output.path(out_dir)
            kind = "plate" if found else "image"
            store = stores.setdefault(("new", store_path), Store(kind, store_path, found[0] if found else first.path))
            if found:
                store.fields.append(found[1])
            where = store_path / output.field if output.field else store_path
            how = f"new {kind} store, channel(s) {', '.join(names)}"
        jobs.append(Job(label, sources, image=where, how=how))
    if args.channels and not stores:
        raise ValueError("--channels: no input is an OME-Zarr image or plate (the channels of TIFF data are files: give "
                         "them as a --csv manifest's path_signal[_k] columns)")
    for store in stores.values():
        if store.kind != "append" and store.path.exists():
            if not args.overwrite:
                raise DataError(store.path, "exists; choose another --out or pass --overwrite")
            if not zarr_io.is_zarr(store.path):
                raise DataError(store.path, "exists and is not a Zarr store; --overwrite replaces stores only")
    return list(stores.values()), jobs


def make_stores(stores: list, names: list, overwrite: bool) -> None:
    """Creates the new stores and adds the channels to the input stores (``--into-input``)."""
    for store in stores:
        if store.kind == "append":
            if store.existing:
                continue
            if plates.is_plate(store.path):
                plates.append_channels(store.path, names)
            else:
                plates.append_image_channels(store.path, names)
            continue
        if store.path.exists() and overwrite:
            shutil.rmtree(store.path)
        if store.kind == "plate":
            plates.create_plate_like(store.source, store.path, names, fields=store.fields)
        else:
            plates.create_image_like(store.source, store.path, names)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..devices import resolve_device
    from ..files.checkpoint import CheckpointError
    from ..models import model_file
    from .tiles import check_options
    from .volumes import predict_sources
    from .writing import TiffDestination, ZarrDestination

    try:
        check_options(args.tile, args.overlap, args.batch_tiles)
        device = resolve_device(args.device)
        model, preprocess, payload = model_file.load(args.model, device)
        names = output_channels(payload)
        stores, jobs = plan(args, payload)
        make_stores(stores, names, args.overwrite)
        options = dict(tile_size=args.tile, overlap=args.overlap, device=device, amp=args.amp, tta=args.tta,
                       batch_tiles=args.batch_tiles)
        for job in tqdm(jobs, desc="predict", unit="volume", disable=not args.progress):
            if job.image is None:
                from ..data.io import read_metadata

                metadata = read_metadata(job.sources[0].path)
                predict_sources(model, preprocess, job.sources,
                                lambda shape: TiffDestination(job.files, shape, metadata), **options)
                tqdm.write(f"{job.label} -> {', '.join(map(str, job.files))} (new file{'s' if len(job.files) > 1 else ''})")
                continue
            predict_sources(model, preprocess, job.sources, lambda shape: ZarrDestination(job.image, names), **options)
            tqdm.write(f"{job.label} -> {job.image} ({job.how})")
    except (ValueError, DataError, FileNotFoundError, CheckpointError) as err:
        print(f"spotlight predict: error: {err}", file=sys.stderr)
        return 2
    return 0
