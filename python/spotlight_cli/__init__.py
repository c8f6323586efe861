"""The ``spotlight`` command: ``train``, ``predict``, ``evaluate``, ``export`` and ``demo``.

A top-level package of its own, importing neither torch nor ``spotlight_ops`` (whose import loads
torch and the op library: seconds): ``spotlight --help`` lists the commands without them. Only the
named command's module is imported, on dispatch (``spotlight train --help`` imports the trainer's
parser), and every
failure is one line on stderr, ``spotlight COMMAND: error: ...``, naming the file or argument and
what to do (:mod:`spotlight_ops.errors`). ``--debug`` (anywhere on the line) or ``SPOTLIGHT_DEBUG=1``
shows the traceback instead. Exit codes: 0 done, 1 a failure of the run itself (non-finite loss, no
intact checkpoint, an unexpected error), 2 a problem with the arguments, the files or the machine
(bad config, missing data, disk full, read-only folder, no GPU, a run folder in use), 128 + N
stopped by signal N after saving a checkpoint (143 for SIGTERM, 129 for SIGHUP).

Every parser is a :class:`~spotlight_cli.parser.SpotlightParser`: no abbreviated flags, a suggestion
for a mistyped flag, command or choice, and one-line argument errors.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Optional, Sequence

from .parser import SpotlightParser

__version__ = "0.1.0"  # the same as pyproject.toml's and spotlight_ops.__version__ (a test checks)

# name: (module with add_parser, one-line help shown by `spotlight --help`)
COMMANDS = {
    "train": ("spotlight_ops.training.cli", "train an F-net with the MSE or Spotlight loss"),
    "predict": ("spotlight_ops.predict", "predict fluorescence for whole volumes with a trained model"),
    "demo": ("spotlight_ops.demo", "synthetic data -> MSE and Spotlight models -> predictions -> report"),
    "evaluate": ("spotlight_ops.evaluation.cli", "evaluate predicted volumes against targets"),
    "preprocess": ("spotlight_ops.data.preprocess_command", "store Otsu thresholds and foreground masks"),
    "export": ("spotlight_ops.export.cli", "export a trained model to TorchScript, ONNX or a bioimage.io package"),
}


def _add_command(subparsers, name: str, stub: bool) -> None:
    module_name, text = COMMANDS[name]
    if stub:
        subparsers.add_parser(name, help=text, add_help=False)
        return
    importlib.import_module(module_name).add_parser(subparsers)


def build_parser(only: Optional[str] = None) -> SpotlightParser:
    """The full parser, or (``only``) one with just that command's real options and stubs for the rest."""
    parser = SpotlightParser(
        prog="spotlight", description="Spotlight: foreground-aware virtual staining.",
        epilog="Errors are one line; --debug or SPOTLIGHT_DEBUG=1 shows the traceback. Exit codes: 0 done, "
               "1 run failed, 2 bad arguments/files/machine, 3 run folder removed or taken while training, 128+N "
               "stopped by signal N (checkpoint saved).")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    parser.add_argument("--version", action="version", version=f"spotlight {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=SpotlightParser)
    for name in COMMANDS:
        _add_command(subparsers, name, stub=only is not None and name != only)
    return parser


def _command_in(argv: Sequence[str]) -> Optional[str]:
    for token in argv:
        if not token.startswith("-"):
            return token if token in COMMANDS else None
    return None


def debug_wanted(argv: Sequence[str]) -> bool:
    return "--debug" in argv or os.environ.get("SPOTLIGHT_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_wanted(argv)
    argv = [a for a in argv if a != "--debug"]
    os.environ.setdefault("MPLBACKEND", "Agg")  # headless: reports are files (no matplotlib import here)
    command = _command_in(argv)
    parser = build_parser(only=command or "")
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"spotlight {command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001  every failure becomes one line; --debug shows the traceback
        if debug:
            raise
        from spotlight_ops.errors import describe, exit_code

        print(f"spotlight {command}: error: {describe(err)}", file=sys.stderr)
        return exit_code(err)

