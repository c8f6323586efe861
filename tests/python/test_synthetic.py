"""Synthetic nuclei scenes: seeded, labelled, with the artifacts of real Hoechst stacks (axially
elongated PSF, density-dependent haze, Poisson-Gaussian camera noise, uneven nuclear brightness)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import scipy.ndimage as ndi

from spotlight_ops.data import load_pairs, read_manifest, read_volume
from spotlight_ops.data import synthetic

SMALL = synthetic.SceneConfig(shape=(32, 64, 64))


def test_same_seed_same_scene_other_seed_other_scene():
    a, b, c = synthetic.make_scene(3, SMALL), synthetic.make_scene(3, SMALL), synthetic.make_scene(4, SMALL)
    for name in ("signal", "target", "labels"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.labels, c.labels)


def test_types_shapes_and_instances():
    scene = synthetic.make_scene(0, SMALL)
    assert scene.signal.dtype == np.float32 and scene.target.dtype == np.float32
    assert scene.labels.dtype == np.uint16
    assert scene.signal.shape == scene.target.shape == scene.labels.shape == SMALL.shape
    ids = np.unique(scene.labels)
    assert ids[0] == 0 and len(ids) >= 5
    np.testing.assert_array_equal(ids, np.arange(len(ids)))  # 1..n, no gaps
    # instances are separate objects: no two labels touch (one voxel of clearance)
    for label in ids[1:4]:
        ring = ndi.binary_dilation(scene.labels == label) & (scene.labels != label)
        assert not np.any(scene.labels[ring] > 0)
    assert 0.03 < np.mean(scene.labels > 0) < 0.4
    assert np.isfinite(scene.signal).all() and np.isfinite(scene.target).all()


def test_target_has_background_noise_and_an_axial_halo():
    # without the cytoplasm's glow, so that the halo and the haze are tested on their own
    config = synthetic.SceneConfig(shape=(48, 96, 96), cytoplasm_glow=0.0)
    scene = synthetic.make_scene(1, config)
    nuclei = scene.labels > 0
    far = ndi.distance_transform_edt(~nuclei) > 12
    assert far.any()
    # the far background is noisy around the offset, not flat: at least the camera's read noise
    assert scene.target[far].std() > config.read_noise
    # the halo: just above/below nuclei (z) is brighter than beside them (x) at the same distance
    def shell(axis: int, offset: int) -> np.ndarray:
        shifted = np.zeros_like(nuclei)
        for sign in (1, -1):
            shifted |= np.roll(nuclei, sign * offset, axis=axis)
        return shifted & ~ndi.binary_dilation(nuclei, iterations=offset - 1)
    above_below = scene.target[shell(0, 3)].mean()
    beside = scene.target[shell(2, 3)].mean()
    assert above_below > beside
    # and a dim out-of-focus glow: the background near nuclei is brighter than the far background
    near = ~nuclei & (ndi.distance_transform_edt(~nuclei) < 4)
    assert scene.target[near].mean() > scene.target[far].mean() + 2 * scene.target[far].std() / np.sqrt(far.sum())


def test_noise_is_poisson_gaussian():
    """Shot noise: the variance grows with the mean, as photons + read noise^2 (in counts)."""
    config = synthetic.SceneConfig(shape=(16, 64, 64), texture_strength=0.0, haze=0.0, cytoplasm_glow=0.0,
                                   nuclei_density=0.0, psf_sigma=(0.1, 0.1, 0.1))
    dark = synthetic.make_scene(0, config)  # one nucleus at least (nuclei_density 0 places one)
    background = dark.target[ndi.distance_transform_edt(dark.labels == 0) > 8]
    photons = config.photons * config.background
    assert background.mean() == pytest.approx(config.camera_offset + photons, rel=0.01)
    assert background.var() == pytest.approx(photons + config.read_noise ** 2, rel=0.05)
    bright = synthetic.make_scene(0, synthetic.SceneConfig(shape=(16, 64, 64), texture_strength=0.0, haze=0.0,
                                                           cytoplasm_glow=0.0, nuclei_density=0.0,
                                                           psf_sigma=(0.1, 0.1, 0.1), background=2.0))
    flat = bright.target[ndi.distance_transform_edt(bright.labels == 0) > 8]
    assert flat.var() == pytest.approx(config.photons * 2.0 + config.read_noise ** 2, rel=0.05)


def test_haze_grows_with_nuclear_density_and_brightness_is_uneven():
    config = synthetic.SceneConfig(shape=(32, 96, 96), cytoplasm_glow=0.0)
    scene = synthetic.make_scene(3, config)
    nuclei = scene.labels > 0
    far = ndi.distance_transform_edt(~nuclei) > 6
    crowd = ndi.gaussian_filter(nuclei.astype(float), config.haze_sigma)
    smooth = ndi.uniform_filter(scene.target.astype(float), 5)  # average the shot noise away
    assert np.corrcoef(crowd[far], smooth[far])[0, 1] > 0.5
    means = [scene.target[scene.labels == k].mean() for k in range(1, scene.labels.max() + 1)]
    assert max(means) > 1.3 * min(means)  # uneven nuclear brightness


def test_the_point_spread_function_is_axially_elongated():
    config = synthetic.SceneConfig()
    assert config.psf_sigma[0] >= 2.5 * config.psf_sigma[1] and config.haze_sigma[0] > config.haze_sigma[1]


def test_nuclei_are_bright_and_the_glow_sits_just_under_the_otsu_threshold():
    """The premise of the demo, on the Otsu-standardized scale: nuclei above T; the cytoplasm's
    glow in the band (T - std, T) where Spotlight's soft mask acts and MSE copies it; the far
    background about T - std or lower, where the soft mask is 0."""
    from skimage.filters import threshold_otsu

    for seed in (1, 2):
        scene = synthetic.make_scene(seed, synthetic.SceneConfig(shape=(32, 96, 96)))
        nuclei = scene.labels > 0
        standardized = (scene.target - threshold_otsu(scene.target)) / scene.target.std()
        distance = ndi.distance_transform_edt(~nuclei)
        near, far = (distance > 2) & (distance <= 4), distance > 6
        assert (standardized[nuclei] > 0).mean() > 0.9
        assert -1.0 < np.median(standardized[near]) < -0.2
        assert (standardized[near] > 0).mean() < 0.2  # (the axial PSF smears nuclei into the zone above them)
        assert np.median(standardized[far]) < -1.0 and (standardized[far] > 0).mean() == 0.0
    # without the glow the same zone is as dark as the far background
    dark = synthetic.make_scene(1, synthetic.SceneConfig(shape=(32, 96, 96), cytoplasm_glow=0.0))
    standardized = (dark.target - threshold_otsu(dark.target)) / dark.target.std()
    distance = ndi.distance_transform_edt(dark.labels == 0)
    assert np.median(standardized[(distance > 2) & (distance <= 4)]) < -1.0


def test_signal_is_transmitted_light_like_not_the_target():
    scene = synthetic.make_scene(2, SMALL)
    nuclei = scene.labels > 0
    correlation = np.corrcoef(scene.signal.ravel(), scene.target.ravel())[0, 1]
    assert abs(correlation) < 0.9  # not a copy of the fluorescence
    edges = ndi.binary_dilation(nuclei) & ~ndi.binary_erosion(nuclei)
    # refractive edges carry contrast: the signal varies more at nuclear borders than far away
    far = ndi.distance_transform_edt(~nuclei) > 10
    assert np.abs(scene.signal[edges] - scene.signal.mean()).mean() > np.abs(scene.signal[far] - scene.signal.mean()).mean()


def test_fast_enough_for_a_demo():
    start = time.perf_counter()
    synthetic.make_scene(0, synthetic.SceneConfig(shape=(32, 96, 96)))
    assert time.perf_counter() - start < 5.0


def test_write_dataset_layout(tmp_path):
    result = synthetic.write_dataset(tmp_path / "ds", n_train=2, n_test=1, config=SMALL, seed=5)
    train_rows, test_rows = read_manifest(result["train"]), read_manifest(result["test"])
    assert len(train_rows) == 2 and len(test_rows) == 1
    assert "images/" in result["train"].read_text()  # relative paths
    row = test_rows[0]
    scene = synthetic.make_scene(5 * 100_003 + 2, SMALL)
    np.testing.assert_array_equal(read_volume(row.mask, dtype=None), scene.labels)
    np.testing.assert_array_equal(read_volume(row.signal), scene.signal)
    pairs = load_pairs(result["train"])
    assert all(p.mask is not None and p.mask.dtype == np.uint16 for p in pairs)


@pytest.mark.parametrize("kwargs,name", [({"shape": (4, 64, 64)}, "shape"), ({"radius_range": (5, 2)}, "radius_range"),
                                         ({"read_noise": -1}, "read_noise"), ({"photons": 0}, "photons"),
                                         ({"clearance": 0}, "clearance")])
def test_config_validation(kwargs, name):
    with pytest.raises(ValueError, match=name):
        synthetic.SceneConfig(**kwargs)


def test_write_dataset_validation(tmp_path):
    with pytest.raises(ValueError, match="n_train"):
        synthetic.write_dataset(tmp_path, n_train=0, n_test=0)
