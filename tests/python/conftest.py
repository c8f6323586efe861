"""Shared fixtures: the real data beside the checkout, device selection."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


def shared_data_dir() -> Path | None:
    """$SPOTLIGHT_DATA, else ../shared/data beside the checkout; None when absent."""
    env = os.environ.get("SPOTLIGHT_DATA")
    path = Path(env) if env else REPO.parent / "shared" / "data"
    return path if path.is_dir() else None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if path is None:
        pytest.skip("real data not found (set SPOTLIGHT_DATA or put shared/data beside the checkout)")
    return path


CUDA = torch.cuda.is_available()
requires_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
DEVICES = ["cpu"] + (["cuda"] if CUDA else [])
