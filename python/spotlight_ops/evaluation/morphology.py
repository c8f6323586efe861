r"""Per-nucleus 3D shape and intensity features, and how far a prediction moves them.

Features of each nucleus (``skimage.measure.regionprops`` with the voxel ``spacing``):

- ``volume`` :math:`V` (``area`` in 3D, physical units),
- ``surface_area`` :math:`A`: area of the marching-cubes mesh (level 0.5) of the
  nucleus's binary mask, padded by one voxel so the mesh is closed,
- ``sphericity`` :math:`\pi^{1/3}(6V)^{2/3}/A` (1 for a ball),
- ``equivalent_diameter`` (of the ball of volume V), ``axis_major_length``,
  ``axis_minor_length``, ``elongation`` (major / minor), ``extent`` (V / bounding box),
  ``solidity`` (V / convex hull; NaN when the hull is degenerate, e.g. a flat nucleus),
- ``mean_intensity`` and ``std_intensity`` of the image the nucleus was found in.

Profile distance of matched nuclei: each feature is standardised with the mean and
(ddof 0) standard deviation over all nuclei of the *reference* (ground-truth) label
image, :math:`z = (x - \mu_{ref}) / \sigma_{ref}`, so every model is measured in the same
coordinates and no feature dominates by its units; features constant over the reference
or NaN for any nucleus involved are dropped. For each matched pair (reference nucleus,
predicted nucleus) the cosine distance is :math:`1 - z_r \cdot z_p / (|z_r||z_p|)`
(0 = same profile direction, 1 = orthogonal, 2 = opposite); NaN when a vector is zero.
"""

from __future__ import annotations

import warnings

import numpy as np
from skimage.measure import marching_cubes, mesh_surface_area, regionprops

from ._validation import as_image, as_labels, spacing_for

FEATURES = (
    "volume",
    "surface_area",
    "sphericity",
    "equivalent_diameter",
    "axis_major_length",
    "axis_minor_length",
    "elongation",
    "extent",
    "solidity",
    "mean_intensity",
    "std_intensity",
)


def _surface_area(region, spacing: tuple[float, ...]) -> float:
    padded = np.pad(region.image, 1).astype(np.float32)
    vertices, faces, _, _ = marching_cubes(padded, level=0.5, spacing=spacing)
    return float(mesh_surface_area(vertices, faces))


def _solidity(region) -> float:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(region.solidity)
    except Exception:  # scipy's Qhull raises for flat (coplanar) nuclei: no 3D hull
        return float("nan")


def nucleus_features(labels: np.ndarray, intensity: np.ndarray | None = None, spacing=None) -> dict[str, np.ndarray]:
    """Feature arrays of every nucleus of a 3D label image, plus their ``"label"`` ids."""
    labels = as_labels("labels", labels, ndim=(3,))
    if intensity is not None:
        intensity = as_image("intensity", intensity, ndim=(3,))
        if intensity.shape != labels.shape:
            raise ValueError(f"intensity must have the labels' shape {labels.shape}, got {intensity.shape}")
    spacing = spacing_for("spacing", spacing, 3)
    table: dict[str, list[float]] = {name: [] for name in ("label",) + FEATURES}
    for region in regionprops(labels, intensity_image=intensity, spacing=spacing):
        volume = float(region.area)
        area = _surface_area(region, spacing)
        major, minor = float(region.axis_major_length), float(region.axis_minor_length)
        values = {
            "label": region.label,
            "volume": volume,
            "surface_area": area,
            "sphericity": np.pi ** (1 / 3) * (6 * volume) ** (2 / 3) / area if area > 0 else np.nan,
            "equivalent_diameter": float(region.equivalent_diameter_area),
            "axis_major_length": major,
            "axis_minor_length": minor,
            "elongation": major / minor if minor > 0 else np.nan,
            "extent": float(region.extent),
            "solidity": _solidity(region),
            "mean_intensity": float(region.intensity_mean) if intensity is not None else np.nan,
            "std_intensity": float(region.intensity_std) if intensity is not None else np.nan,
        }
        for name, value in values.items():
            table[name].append(value)
    return {
        name: np.asarray(values, dtype=np.int64 if name == "label" else np.float64) for name, values in table.items()
    }


def _matrix(features: dict[str, np.ndarray], labels: np.ndarray) -> np.ndarray:
    index = {int(label): i for i, label in enumerate(features["label"])}
    missing = [int(label) for label in labels if int(label) not in index]
    if missing:
        raise ValueError(f"labels {missing[:5]} have no features")
    rows = [index[int(label)] for label in labels]
    return np.stack([features[name] for name in FEATURES], axis=1)[rows]


def matched_cosine_distances(
    reference: dict[str, np.ndarray],
    predicted: dict[str, np.ndarray],
    reference_labels: np.ndarray,
    predicted_labels: np.ndarray,
) -> np.ndarray:
    """Cosine distance of each matched pair's standardised feature profiles (module docstring)."""
    reference_labels = np.asarray(reference_labels)
    predicted_labels = np.asarray(predicted_labels)
    if reference_labels.shape != predicted_labels.shape:
        raise ValueError("reference_labels and predicted_labels must pair up (same length)")
    if reference_labels.size == 0:
        return np.zeros(0)
    all_reference = np.stack([reference[name] for name in FEATURES], axis=1)
    ref = _matrix(reference, reference_labels)
    pred = _matrix(predicted, predicted_labels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NaN features are dropped just below
        mean = np.nanmean(all_reference, axis=0)
        std = np.nanstd(all_reference, axis=0)
    usable = (std > 0) & np.isfinite(std) & np.isfinite(ref).all(axis=0) & np.isfinite(pred).all(axis=0)
    if not usable.any():
        return np.full(reference_labels.size, np.nan)
    z_ref = (ref[:, usable] - mean[usable]) / std[usable]
    z_pred = (pred[:, usable] - mean[usable]) / std[usable]
    norms = np.linalg.norm(z_ref, axis=1) * np.linalg.norm(z_pred, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cosine = np.einsum("ij,ij->i", z_ref, z_pred) / norms
    return np.where(norms > 0, 1.0 - cosine, np.nan)
