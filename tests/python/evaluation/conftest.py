"""Fixtures of the evaluation tests."""

from __future__ import annotations

import pytest
from evaluation_scenes import nuclei_scene


@pytest.fixture(scope="session")
def scene():
    """(labels, fluorescence) of five separate synthetic nuclei."""
    return nuclei_scene()
