"""Nucleus features vs scikit-image regionprops and closed forms; profile cosine distances."""

from __future__ import annotations

import numpy as np
import pytest
from evaluation_scenes import ball_labels, scene  # noqa: F401 (scene is a fixture)
from skimage.measure import regionprops

from spotlight_ops.evaluation import FEATURES, matched_cosine_distances, nucleus_features


def test_features_match_regionprops(scene):
    labels, image = scene
    spacing = (2.0, 1.0, 1.0)
    features = nucleus_features(labels, image, spacing)
    props = regionprops(labels, intensity_image=image, spacing=spacing)
    assert list(features["label"]) == [p.label for p in props]
    for name, attribute in [
        ("volume", "area"),
        ("equivalent_diameter", "equivalent_diameter_area"),
        ("axis_major_length", "axis_major_length"),
        ("axis_minor_length", "axis_minor_length"),
        ("extent", "extent"),
        ("solidity", "solidity"),
        ("mean_intensity", "intensity_mean"),
    ]:
        assert np.allclose(features[name], [getattr(p, attribute) for p in props]), name
    assert np.allclose(features["std_intensity"], [image[labels == p.label].std() for p in props])
    assert np.allclose(features["elongation"], features["axis_major_length"] / features["axis_minor_length"])


def test_ball_closed_form():
    radius = 10
    labels = ball_labels((26, 26, 26), [(13, 13, 13)], [radius])
    features = nucleus_features(labels)
    assert features["volume"][0] == pytest.approx(4 / 3 * np.pi * radius**3, rel=0.02)
    # the marching-cubes mesh of a voxelised ball overestimates its area by under 10%
    assert 4 * np.pi * radius**2 <= features["surface_area"][0] <= 1.1 * 4 * np.pi * radius**2
    assert 0.9 <= features["sphericity"][0] <= 1.0
    assert features["elongation"][0] == pytest.approx(1.0, abs=0.01)
    assert np.isnan(features["mean_intensity"][0])  # no intensity image given


def test_spacing_scales_volume_and_area():
    labels = ball_labels((26, 26, 26), [(13, 13, 13)], [8])
    plain = nucleus_features(labels)
    stretched = nucleus_features(labels, spacing=(2.0, 1.0, 1.0))
    assert stretched["volume"][0] == pytest.approx(2 * plain["volume"][0])
    assert stretched["axis_major_length"][0] == pytest.approx(2 * plain["axis_major_length"][0], rel=0.02)
    assert stretched["surface_area"][0] > plain["surface_area"][0]


def test_cosine_distance_of_profiles(scene):
    labels, image = scene
    reference = nucleus_features(labels, image)
    same = matched_cosine_distances(reference, reference, reference["label"], reference["label"])
    assert np.allclose(same, 0.0)
    # A prediction whose nuclei swap identities: its profiles differ from the reference's.
    swapped = {name: values[::-1].copy() for name, values in reference.items()}
    swapped["label"] = reference["label"]
    distances = matched_cosine_distances(reference, swapped, reference["label"], reference["label"])
    assert distances.shape == (5,) and np.all(distances >= 0) and np.any(distances > 0.1)
    # By hand on the standardised features, z = (x - mean_ref) / std_ref, dropping the
    # features that do not vary over the reference nuclei.
    matrix = np.stack([reference[n] for n in FEATURES], axis=1)
    varying = matrix.std(0) > 0
    assert varying.sum() >= 8
    matrix = matrix[:, varying]
    z_ref = (matrix - matrix.mean(0)) / matrix.std(0)
    z_swap = z_ref[::-1]
    expected = 1 - np.sum(z_ref * z_swap, 1) / (np.linalg.norm(z_ref, axis=1) * np.linalg.norm(z_swap, axis=1))
    assert np.allclose(distances, expected)


def test_cosine_distance_edge_cases(scene):
    labels, image = scene
    reference = nucleus_features(labels, image)
    assert matched_cosine_distances(reference, reference, np.array([]), np.array([])).size == 0
    with pytest.raises(ValueError, match="no features"):
        matched_cosine_distances(reference, reference, np.array([99]), np.array([1]))
    with pytest.raises(ValueError, match="pair up"):
        matched_cosine_distances(reference, reference, np.array([1, 2]), np.array([1]))
    single = nucleus_features((labels == 1).astype(np.int32), image)
    assert np.isnan(matched_cosine_distances(single, single, np.array([1]), np.array([1]))).all()  # no spread
