"""``python -m spotlight_ops.cli``: the ``spotlight`` command, as :mod:`spotlight_cli`.

The command itself lives in the top-level package :mod:`spotlight_cli` so that ``spotlight --help``
needs no ``import spotlight_ops`` (which loads torch and the op library); this module is the same
command for ``python -m spotlight_ops.cli`` and ``torchrun -m spotlight_ops.cli``.
"""

from __future__ import annotations

import sys

from spotlight_cli import COMMANDS, build_parser, debug_wanted, main

__all__ = ["COMMANDS", "build_parser", "debug_wanted", "main"]

if __name__ == "__main__":
    sys.exit(main())
