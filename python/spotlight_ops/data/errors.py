"""The error raised for bad input data: always names the file and the problem."""

from __future__ import annotations

from pathlib import Path
from typing import Union


class DataError(ValueError):
    """A data file (or manifest) that cannot be used; the message starts with its path."""

    def __init__(self, path: Union[str, Path, None], problem: str) -> None:
        self.path = None if path is None else Path(path)
        self.problem = problem
        super().__init__(problem if path is None else f"{path}: {problem}")
