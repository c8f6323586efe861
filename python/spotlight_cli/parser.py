"""The argument parser of every ``spotlight`` command: argparse without its traps.

* No abbreviations: ``--iteration 5`` is refused, not read as ``--iterations 5``.
* A mistyped flag, command or choice gets a suggestion (``did you mean --iterations?``, difflib).
* Every error is one line, ``spotlight COMMAND: error: ...``, without the usage block.
* Input paths may stand anywhere among the flags (``predict --model m a.tif --out o b.tif``).

Used for the top parser and, through ``add_subparsers(parser_class=...)``, for every command's
parser, so the command modules build theirs with ``subparsers.add_parser`` as usual.
"""

from __future__ import annotations

import argparse
import difflib
from typing import Optional, Sequence

_SWITCH_WORDS = ("1", "0", "true", "false", "yes", "no", "on", "off")


class SpotlightParser(argparse.ArgumentParser):
    """:class:`argparse.ArgumentParser` with the behaviour of the module docstring."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)
        self._parsing = False

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see {self.prog} --help)\n")

    def parse_known_args(self, args: Optional[Sequence[str]] = None, namespace=None):
        """Parses intermixed positionals and flags, and refuses anything left over (with a suggestion)."""
        if self._parsing or self._subparsers is not None:  # the top parser, or intermixed parsing's inner passes
            return super().parse_known_args(args, namespace)
        self._parsing = True
        try:
            namespace, extras = self.parse_known_intermixed_args(args, namespace)
        finally:
            self._parsing = False
        if extras:
            self.error(self._unrecognized(extras, list(args) if args is not None else []))
        return namespace, extras

    def _check_value(self, action: argparse.Action, value) -> None:
        if action.choices is not None and value not in action.choices:
            choices = [str(c) for c in action.choices]
            close = difflib.get_close_matches(str(value), choices, n=1)
            raise argparse.ArgumentError(action, f"invalid choice: {value!r} (choose from {', '.join(choices)})"
                                                 + (f"; did you mean {close[0]}?" if close else ""))
        super()._check_value(action, value)

    def _unrecognized(self, extras: list, args: list) -> str:
        message = f"unrecognized argument{'s' if len(extras) > 1 else ''}: {' '.join(extras)}"
        flag = next((e.split("=", 1)[0] for e in extras if e.startswith("-") and len(e) > 1), None)
        if flag is None:
            # the word may also stand elsewhere as a flag's value (--tensorboard false): look after each switch
            befores = [args[at - 1] for at in range(1, len(args)) if args[at] == extras[0]]
            switch = next((a for a in self._actions if isinstance(a, argparse.BooleanOptionalAction)
                           and any(b in a.option_strings for b in befores)), None)
            if switch is not None and extras[0].lower() in _SWITCH_WORDS:
                on, off = switch.option_strings[:2]
                return message + f"; {on} takes no value: write {on} or {off}"
            return message
        options = [o for action in self._actions for o in action.option_strings]
        longer = [o for o in options if o.startswith(flag)]
        if longer:
            return message + f"; did you mean {' or '.join(longer[:3])}? (flags are never abbreviated)"
        close = difflib.get_close_matches(flag, options, n=1, cutoff=0.6)
        return message + (f"; did you mean {close[0]}?" if close else "")
