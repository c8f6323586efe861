"""Pixel metrics vs trusted peers (scikit-image, SciPy, cubic) and closed forms."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from scipy.stats import pearsonr
from skimage.filters import threshold_otsu
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from evaluation_scenes import scene  # noqa: F401 (a fixture)

from spotlight_ops.evaluation import (
    micro_ssim,
    otsu_foreground,
    pearson,
    psnr,
    rescale_to_target,
    ssim,
    target_data_range,
)


@pytest.fixture(scope="module")
def pair(scene):
    _, target = scene
    rng = np.random.default_rng(1)
    prediction = 0.02 * ndimage.gaussian_filter(target, 1.5) + rng.normal(0, 0.5, target.shape) - 3.0
    return target, prediction


def test_rescale_minmax_spans_target_range(pair):
    target, prediction = pair
    rescaled = rescale_to_target(prediction, target, "minmax")
    assert rescaled.min() == pytest.approx(target.min())
    assert rescaled.max() == pytest.approx(target.max())
    # affine in the prediction: correlation is untouched
    assert pearson(target, rescaled) == pytest.approx(pearson(target, prediction), abs=1e-12)


def test_rescale_affine_is_least_squares(pair):
    target, prediction = pair
    slope, intercept = np.polyfit(prediction.ravel(), target.ravel(), 1)
    assert np.allclose(rescale_to_target(prediction, target, "affine"), slope * prediction + intercept)
    assert np.array_equal(rescale_to_target(prediction, target, "none"), prediction)


def test_psnr_matches_skimage(pair):
    target, prediction = pair
    p = rescale_to_target(prediction, target)
    data_range = target_data_range(target)
    expected = peak_signal_noise_ratio(target, p, data_range=data_range)
    assert psnr(target, p, data_range) == pytest.approx(expected, rel=1e-12)
    mask, _ = otsu_foreground(target)
    expected_fg = peak_signal_noise_ratio(target[mask], p[mask], data_range=data_range)
    assert psnr(target, p, data_range, mask=mask) == pytest.approx(expected_fg, rel=1e-12)


def test_psnr_closed_form_offset(pair):
    target, _ = pair
    data_range = target_data_range(target)
    assert psnr(target, target + 4.0, data_range) == pytest.approx(20 * np.log10(data_range / 4.0))
    assert psnr(target, target, data_range) == float("inf")


def test_ssim_3d_matches_skimage(pair):
    target, prediction = pair
    p = rescale_to_target(prediction, target)
    data_range = target_data_range(target)
    assert ssim(target, p, data_range) == pytest.approx(
        structural_similarity(target, p, data_range=data_range), rel=1e-12
    )
    mask, _ = otsu_foreground(target)
    _, full = structural_similarity(target, p, data_range=data_range, full=True)
    assert ssim(target, p, data_range, mask=mask) == pytest.approx(full[mask].mean(), rel=1e-12)
    assert ssim(target, target, data_range) == pytest.approx(1.0)


def test_ssim_window_shrinks_for_thin_volumes():
    rng = np.random.default_rng(2)
    target = rng.random((5, 32, 32))
    prediction = target + 0.1 * rng.random(target.shape)
    expected = structural_similarity(target, prediction, data_range=1.0, win_size=5)
    assert ssim(target, prediction, 1.0) == pytest.approx(expected)


def test_pearson_matches_scipy(pair):
    target, prediction = pair
    assert pearson(target, prediction) == pytest.approx(pearsonr(target.ravel(), prediction.ravel())[0], rel=1e-10)
    mask, _ = otsu_foreground(target)
    assert pearson(target, prediction, mask) == pytest.approx(pearsonr(target[mask], prediction[mask])[0], rel=1e-10)
    assert np.isnan(pearson(target, np.zeros_like(target)))


def test_foreground_is_skimage_otsu(pair):
    target, _ = pair
    mask, threshold = otsu_foreground(target)
    assert threshold == pytest.approx(threshold_otsu(target, nbins=256))
    assert np.array_equal(mask, target > threshold)


def test_bad_inputs_name_the_argument(pair):
    target, prediction = pair
    with pytest.raises(ValueError, match="prediction and target"):
        psnr(target, prediction[:-1], 1.0)
    with pytest.raises(ValueError, match="data_range"):
        psnr(target, prediction, 0.0)
    bad = prediction.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="prediction contains NaN"):
        ssim(target, bad, 1.0)
    with pytest.raises(ValueError, match="target is constant"):
        target_data_range(np.ones((4, 4, 4)))
    with pytest.raises(ValueError, match="rescale"):
        rescale_to_target(prediction, target, "zscore")
    with pytest.raises(ValueError, match="mask must have shape"):
        pearson(target, prediction, mask=np.ones((2, 2), bool))


def test_microssim_identity_and_affine_invariance(pair):
    target, prediction = pair
    same = micro_ssim(target, target)
    assert same.value == pytest.approx(1.0, abs=1e-6)
    assert same.ri_factor == pytest.approx(1.0, rel=1e-4)
    mask, _ = otsu_foreground(target)
    first = micro_ssim(target, prediction, mask=mask)
    second = micro_ssim(target, 7.0 * prediction + 123.0, mask=mask)
    assert second.value == pytest.approx(first.value, abs=1e-7)
    assert second.foreground == pytest.approx(first.foreground, abs=1e-7)
    assert first.ri_factor == pytest.approx(7.0 * second.ri_factor, rel=1e-5)
    # it forgives the background offset and gain that plain SSIM punishes
    data_range = target_data_range(target)
    assert first.value > ssim(target, prediction, data_range)


def test_microssim_matches_cubic_port_of_reference():
    """cubic's port of juglab/microssim: same RI factor (uniform-window fit), same score
    (Gaussian-window scoring of a 2D image at that factor)."""
    cubic_metrics = pytest.importorskip("cubic.metrics", reason="cubic (the authors' package) not installed")
    rng = np.random.default_rng(3)
    gt = ndimage.gaussian_filter(rng.random((64, 64)), 3) * 100 + rng.random((64, 64)) * 5 + 10
    pred = gt * 0.5 + rng.normal(0, 1, gt.shape) + 3
    reference = cubic_metrics.MicroSSIM().fit(gt, pred)
    params = reference.get_parameters()
    mine = micro_ssim(gt, pred)
    assert mine.ri_factor == pytest.approx(params["ri_factor"], rel=1e-6)
    assert mine.offset_target == pytest.approx(params["offset_gt"])
    assert mine.offset_prediction == pytest.approx(params["offset_pred"])
    assert mine.scale == pytest.approx(params["max_val"])
    scored = micro_ssim(gt, pred, gaussian_weights=True, ri_factor=params["ri_factor"])
    assert scored.value == pytest.approx(reference.score(gt, pred), abs=1e-9)


def test_microssim_per_slice_convention_by_hand():
    """The microssim package's convention on a ZYX volume: stack-wide offsets and scale, one alpha
    fitted on the pooled uniform-window elements of every slice, each slice scored with the Gaussian
    window at its own data range. With the fitted alpha, a slice's score is skimage's Gaussian SSIM of
    the normalized target slice against alpha times the normalized prediction slice."""
    from spotlight_ops.evaluation.microssim import micro_ssim_slices

    rng = np.random.default_rng(5)
    target = ndimage.gaussian_filter(rng.random((6, 40, 44)), 2) * 900 + 80
    prediction = 0.4 * target + rng.normal(0, 15, target.shape) + 20
    mask = target > np.percentile(target, 80)
    result = micro_ssim_slices(target, prediction, mask=mask)
    o_t, o_p = np.percentile(target, 3), np.percentile(prediction, 3)
    m = (target - o_t).max()
    assert (result.offset_target, result.offset_prediction, result.scale) == pytest.approx((o_t, o_p, m))
    y, p = (target - o_t) / m, (prediction - o_p) / m
    alpha = result.ri_factor
    scores = [structural_similarity(y[z], alpha * p[z], data_range=y[z].max() - y[z].min(), gaussian_weights=True,
                                    sigma=1.5, use_sample_covariance=True) for z in range(len(y))]
    assert result.value == pytest.approx(np.mean(scores), abs=1e-9)
    # alpha maximises the mean scaled SSIM of the pooled uniform-window elements (the fit's objective)
    from spotlight_ops.evaluation.microssim import SSIMElements, _interior, ssim_elements, ssim_map

    pooled, last = [], None
    for z in range(len(y)):
        last = ssim_elements(y[z], p[z], y[z].max() - y[z].min(), 7)
        pooled.append([_interior(getattr(last, n), 3).ravel() for n in
                       ("mean_target", "mean_prediction", "var_target", "var_prediction", "covariance")])
    elements = SSIMElements(*(np.concatenate(x) for x in zip(*pooled)), last.c1, last.c2, 0)
    best = ssim_map(elements, alpha).mean()
    assert all(ssim_map(elements, alpha * f).mean() < best for f in (0.98, 1.02))
    # invariant to a positive affine change of the prediction; 1 for the target itself
    again = micro_ssim_slices(target, 3.0 * prediction + 50, mask=mask)
    assert again.value == pytest.approx(result.value, abs=1e-7)
    assert micro_ssim_slices(target, target).value == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="smaller than MicroSSIM's 11-pixel window"):
        micro_ssim_slices(target[:, :10], prediction[:, :10])


def test_microssim_3d_differs_from_the_per_slice_convention(pair):
    """The 3D-window variant is its own number (reported as microssim_3d), not the package's."""
    from spotlight_ops.evaluation.microssim import micro_ssim_slices

    target, prediction = pair
    assert micro_ssim(target, prediction).value != pytest.approx(micro_ssim_slices(target, prediction).value, abs=1e-3)
