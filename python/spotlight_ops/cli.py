"""The ``spotlight`` command: ``train``, ``predict``, ``demo`` (and ``evaluate`` when installed)."""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence


def build_parser() -> argparse.ArgumentParser:
    from . import demo, predict
    from .training import cli as train_cli

    parser = argparse.ArgumentParser(prog="spotlight", description="Spotlight: foreground-aware virtual staining.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    train_cli.add_parser(subparsers)
    predict.add_parser(subparsers)
    demo.add_parser(subparsers)
    try:
        from .evaluation import cli as evaluation_cli
    except ImportError:  # the evaluation package is optional
        pass
    else:
        evaluation_cli.add_parser(subparsers)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    import matplotlib

    matplotlib.use("Agg")  # headless: reports are files
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
