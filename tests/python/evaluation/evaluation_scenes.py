"""Small synthetic nuclei volumes and the QCANet loader shared by the evaluation tests
(imported by name: pytest puts this folder on sys.path). Not a conftest.py: the
parent suite imports ``conftest`` by name, and a second one would shadow it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

QCANET_STAGES = ("8_cell_stage", "16_cell_stage")


def ball_labels(shape, centres, radii) -> np.ndarray:
    """Label image of balls (label k+1 for centre k); later balls win where they overlap."""
    grid = np.indices(shape)
    labels = np.zeros(shape, dtype=np.int32)
    for k, (centre, radius) in enumerate(zip(centres, radii)):
        distance = np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, centre)))
        labels[distance <= radius] = k + 1
    return labels


def nuclei_scene(shape=(20, 56, 56), seed=0):
    """(labels, fluorescence) of five separate nuclei of different brightness, with noise."""
    centres = [(10, 14, 14), (10, 14, 40), (10, 40, 14), (10, 40, 40), (10, 27, 27)]
    radii = [6, 5.5, 6, 5, 5]
    labels = ball_labels(shape, centres, radii)
    brightness = np.array([0.0, 1.0, 0.8, 0.9, 0.7, 1.1])
    rng = np.random.default_rng(seed)
    image = ndimage.gaussian_filter(brightness[labels], 1.0) * 1000 + 100
    image = image + rng.normal(0, 10, shape)
    return labels, image


@pytest.fixture(scope="session")
def scene():
    """(labels, fluorescence) of five separate synthetic nuclei (import it into a test module)."""
    return nuclei_scene()


def load_qcanet(shared_data: Path, stage: str):
    """(raw, nsn, ndn) of one QCANet embryo, or a skip when the files are absent."""
    import tifffile

    folder = shared_data / "qcanet"
    paths = [folder / f"{kind}_{stage}.tif" for kind in ("raw", "nsn", "ndn")]
    if not all(p.is_file() for p in paths):
        pytest.skip(f"QCANet volumes for {stage} not found under {folder}")
    return tuple(tifffile.imread(p) for p in paths)
