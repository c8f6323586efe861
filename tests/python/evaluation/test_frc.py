"""One-image FRC: band-limited images cross near their cutoff; clear results when no crossing."""

from __future__ import annotations

import numpy as np
import pytest

from spotlight_ops.evaluation import checkerboard_split, frc_resolution
from spotlight_ops.evaluation.frc import half_bit_threshold


def band_limited(size: int, cutoff: float, noise: float, seed: int) -> np.ndarray:
    """Unit-variance white noise low-passed at ``cutoff`` cycles/pixel, plus white noise."""
    rng = np.random.default_rng(seed)
    frequency = np.sqrt(np.fft.fftfreq(size)[:, None] ** 2 + np.fft.fftfreq(size)[None, :] ** 2)
    signal = np.fft.ifft2(np.fft.fft2(rng.normal(size=(size, size))) * (frequency < cutoff)).real
    return signal / signal.std() + noise * rng.normal(size=signal.shape)


def test_checkerboard_split_takes_the_two_diagonals():
    plane = np.arange(7 * 6).reshape(7, 6)
    a, b = checkerboard_split(plane)
    assert a.shape == b.shape == (3, 3)
    assert np.array_equal(a, plane[0:6:2, 0:6:2])
    assert np.array_equal(b, plane[1:6:2, 1:6:2])


@pytest.mark.parametrize("cutoff", [0.05, 0.1, 0.2])
def test_band_limited_image_crosses_near_its_cutoff(cutoff):
    size, bin_delta = 256, 5
    result = frc_resolution(band_limited(size, cutoff, noise=0.3, seed=1), bin_delta=bin_delta)
    assert result.crossed and result.message == "crossed"
    # A ring holding the cutoff still reads as signal (the correlation is power-weighted),
    # so the crossing lies between the cutoff and 1.5 ring widths above it.
    ring_width = bin_delta / (size // 2) / 2  # cycles per original pixel
    assert cutoff <= result.crossing_frequency <= cutoff + 1.5 * ring_width
    assert result.resolution == pytest.approx(1.0 / result.crossing_frequency)


def test_finer_band_gives_finer_resolution_and_pixel_size_scales():
    coarse = frc_resolution(band_limited(128, 0.08, 0.2, seed=2))
    fine = frc_resolution(band_limited(128, 0.15, 0.2, seed=2))
    assert fine.resolution < coarse.resolution
    scaled = frc_resolution(band_limited(128, 0.15, 0.2, seed=2), pixel_size=0.29)
    assert scaled.resolution == pytest.approx(0.29 * fine.resolution)


def test_half_bit_curve_and_its_effect():
    assert half_bit_threshold(np.array([1.0]))[0] == pytest.approx(1.0, abs=1e-3)  # 2.1173/2.1173
    assert half_bit_threshold(np.array([1e12]))[0] == pytest.approx(0.2071 / 1.2071, rel=1e-4)
    image = band_limited(256, 0.1, 0.3, seed=3)
    one_seventh = frc_resolution(image, threshold="one-seventh")
    half_bit = frc_resolution(image, threshold="half-bit")
    assert half_bit.crossed
    assert half_bit.resolution >= one_seventh.resolution  # half-bit sits above 1/7 here
    assert np.all(half_bit.threshold > 1 / 7)


def test_never_crossing_is_nan_with_a_message():
    rng = np.random.default_rng(4)
    identical_halves = np.kron(rng.normal(size=(64, 64)), np.ones((2, 2)))  # A == B exactly
    result = frc_resolution(identical_halves)
    assert not result.crossed and np.isnan(result.resolution) and np.isnan(result.crossing_frequency)
    assert "stays above the threshold up to its last ring" in result.message
    half = rng.normal(size=(64, 64))
    opposite = np.kron(half, [[1.0, 0.0], [0.0, 0.0]]) + np.kron(-half, [[0.0, 0.0], [0.0, 1.0]])
    result = frc_resolution(opposite)
    assert not result.crossed and np.isnan(result.resolution)
    assert "no signal" in result.message


def test_volume_pools_its_planes():
    planes = np.stack([band_limited(128, 0.1, 0.3, seed=s) for s in range(6)])
    pooled = frc_resolution(planes)
    single = [frc_resolution(p).resolution for p in planes]
    assert pooled.crossed
    assert min(single) * 0.9 <= pooled.resolution <= max(single) * 1.1


def test_bad_arguments_are_named():
    image = np.random.default_rng(5).normal(size=(64, 64))
    with pytest.raises(ValueError, match="bin_delta"):
        frc_resolution(image, bin_delta=0)
    with pytest.raises(ValueError, match="threshold"):
        frc_resolution(image, threshold="fsc")
    with pytest.raises(ValueError, match="pixel_size"):
        frc_resolution(image, pixel_size=-1)
    with pytest.raises(ValueError, match="fewer than 2 rings"):
        frc_resolution(image[:8, :8], bin_delta=5)


def test_agrees_roughly_with_cubic():
    """cubic's FRC adds zero padding, curve smoothing and Koho's empirical calibration of
    the checkerboard's diagonal shift; agreement within 25% is what to expect."""
    cubic_metrics = pytest.importorskip("cubic.metrics", reason="cubic (the authors' package) not installed")
    image = band_limited(256, 0.1, 0.3, seed=6)
    mine = frc_resolution(image, bin_delta=1).resolution
    theirs = cubic_metrics.frc_resolution(image, bin_delta=1)
    assert mine == pytest.approx(theirs, rel=0.25)


def test_ring_count_matches_the_curve():
    from spotlight_ops.evaluation.frc import ring_count

    image = np.random.default_rng(7).normal(size=(3, 50, 64))
    # half images of 25 x 32: n = 25, Nyquist radius 12.5: rings [0, 5), [5, 10) and the partial [10, 12.5)
    result = frc_resolution(image, bin_delta=5)
    assert ring_count(image.shape, 5) == len(result.frequencies) == 3
    np.testing.assert_allclose(result.frequencies, np.array([2.5, 7.5, 11.25]) / 25 / 2)
    assert ring_count((16, 16), 5) == 1  # one partial ring: not enough for a curve (at least 2)
