"""Shared by the prediction tests (imported by name: pytest puts this folder on sys.path)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Small convolutions run faster on one thread, above all on a busy machine (import it into a test module)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
