"""``spotlight export``: a trained model to TorchScript, ONNX and a bioimage.io package (docs/export.md)."""

from __future__ import annotations

import argparse

from .pipeline import FILE_NAMES, FORMATS


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "export", help="export a trained model to TorchScript, ONNX or a bioimage.io package",
        description="Export a trained model (run folder, model.pt or checkpoint) to TorchScript "
                    f"({FILE_NAMES['torchscript']}), ONNX ({FILE_NAMES['onnx']}) and a bioimage.io model package "
                    f"({FILE_NAMES['bioimageio']}). Each export is checked against the PyTorch model before it is "
                    "kept; the package must pass bioimageio.core's test. Needs pip install 'spotlight-ops[export]' "
                    "for ONNX and bioimage.io.")
    p.add_argument("--model", required=True, help="run folder, its model.pt, or a training checkpoint")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--format", dest="formats", nargs="+", choices=list(FORMATS), default=list(FORMATS),
                   metavar="FORMAT",
                   help=f"formats to write: {', '.join(FORMATS)} (default: all three)")
    p.add_argument("--sample", metavar="VOLUME", help="a signal volume for the checks and the package's test input (default: the first "
                                    "signal of the run's training manifest, else seeded noise)")
    p.add_argument("--name", help="the bioimage.io model's name (default: spotlight F-net RUN)")
    p.add_argument("--author", dest="authors", action="append", default=[], metavar="NAME",
                   help="an author of the bioimage.io package (repeat for several)")
    p.add_argument("--license", default="CC-BY-4.0", help="SPDX license of the weights (default %(default)s)")
    p.set_defaults(handler=run)
    return p


def run(args: argparse.Namespace) -> int:
    import sys

    from .pipeline import ExportError, export_model

    try:
        export_model(args.model, args.out, formats=args.formats, sample=args.sample, name=args.name,
                     authors=args.authors, license=args.license)
    except ExportError as err:  # the export itself failed its check: exit 1, as a failed run
        print(f"spotlight export: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 1
    return 0
