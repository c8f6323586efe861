"""``spotlight preprocess``: per-field-of-view Otsu thresholds and foreground masks, stored with the data.

Examples::

    spotlight preprocess plate.zarr --channels Nuclei                  # every field of view of the plate
    spotlight preprocess plate.zarr --channels Nuclei --fields B/03/0 B/03/1 --smooth-threshold
    spotlight preprocess image.ome.zarr                                # an OME-Zarr image, every channel
    spotlight preprocess train.csv --out train_masks.csv [--mask-dir masks/]

What is computed and where it is stored: :mod:`spotlight_ops.data.masks` and docs/data.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .plates import field_path_argument

DESCRIPTION = (
    "Compute each target volume's Otsu threshold (optionally on the median(5) + Gaussian(5) smoothed copy, "
    "the authors' choice) and foreground mask (volume > T), and store them with the data: in an HCS plate's "
    "fields of view (or an OME-Zarr image) as the fg_mask array and the image's normalization metadata; for a "
    "manifest of TIFFs as mask files and a new manifest with path_mask and otsu_threshold columns."
)


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of ``preprocess`` on any parser (the subcommand or the standalone one)."""
    p.add_argument("input", type=Path, help="an HCS plate (plate.zarr), an OME-Zarr image, or a manifest CSV")
    p.add_argument("--channels", nargs="+", default=None, metavar="NAME",
                   help="target channels of the plate or image, by name or index (a plate needs them; an image: "
                        "default every channel)")
    p.add_argument("--fields", nargs="+", default=None, metavar="ROW/COL/FIELD", type=field_path_argument,
                   help="the plate's fields of view to preprocess (default: all)")
    p.add_argument("--out", type=Path, default=None,
                   help="manifest input: the manifest to write (the input's rows with path_mask and otsu_threshold)")
    p.add_argument("--mask-dir", type=Path, default=None,
                   help="manifest input: folder of the TIFF masks (default: masks/ beside --out)")
    p.add_argument("--smooth-threshold", action="store_true",
                   help="choose T on the median(5) + Gaussian(5) smoothed copy (SPEC 6; off by default)")
    p.add_argument("--overwrite", action="store_true", help="replace thresholds, masks and files stored before")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bar")
    return p


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Registers ``preprocess`` on the ``spotlight`` command's subparsers."""
    p = subparsers.add_parser("preprocess", help="store Otsu thresholds and foreground masks with the data",
                              description=DESCRIPTION)
    add_arguments(p)
    p.set_defaults(handler=run)
    return p


def _print_records(where: str, records: dict) -> None:
    for name, record in records.items():
        print(f"{where}: {name}: Otsu T {record['otsu_threshold']:.6g}, "
              f"foreground {100 * record['foreground_fraction']:.2f}%")


def preprocess(args: argparse.Namespace) -> str:
    """Runs the preprocessing the arguments name; returns the one-line summary."""
    from . import masks, plates, zarr_io
    from .errors import DataError

    source = args.input
    if source.suffix.lower() == ".csv":
        if args.out is None:
            raise ValueError("a manifest input needs --out, the manifest to write")
        if args.channels or args.fields:
            raise ValueError("--channels and --fields apply to plates and images; a manifest names its channels")
        written = masks.preprocess_manifest(source, args.out, args.mask_dir, args.smooth_threshold, args.overwrite,
                                            progress=args.progress)
        return f"wrote {written} (masks in {args.mask_dir or args.out.parent / 'masks'})"
    if args.out is not None or args.mask_dir is not None:
        raise ValueError("--out and --mask-dir apply to manifest inputs; a plate or image stores its masks inside")
    if plates.is_plate(source):
        if not args.channels:
            channels = plates.open_plate(source).channel_names()
            raise ValueError(f"--channels: name the plate's target channel(s); it has {', '.join(channels)}")
        done = masks.preprocess_plate(source, args.channels, args.fields, args.smooth_threshold, args.overwrite,
                                      progress=args.progress)
        for field, records in done.items():
            _print_records(f"{source}/{field}", records)
        return f"stored thresholds and {masks.MASK_ARRAY} masks in {len(done)} field(s) of view of {source}"
    if not zarr_io.is_zarr(source):
        raise DataError(source, "is neither an HCS plate, an OME-Zarr image nor a manifest CSV (*.csv)")
    if args.fields:
        raise ValueError("--fields applies to plates")
    records = masks.preprocess_image(source, args.channels, args.smooth_threshold, args.overwrite)
    _print_records(str(source), records)
    return f"stored thresholds and {masks.MASK_ARRAY} masks in {source}"


def run(args: argparse.Namespace) -> int:
    """Runs ``preprocess``; returns 0, or 2 with a one-line error for bad inputs."""
    from .errors import DataError

    try:
        print(preprocess(args))
    except (ValueError, DataError, FileNotFoundError) as err:
        print(f"spotlight preprocess: error: {err}", file=sys.stderr)
        return 2
    return 0


def main(argv=None) -> int:
    """Standalone entry point: ``python -m spotlight_ops.data.preprocess_command [options]``."""
    parser = argparse.ArgumentParser(prog="python -m spotlight_ops.data.preprocess_command", description=DESCRIPTION)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
