"""Predictions and targets meet in the same units: an exact copy of a target scores PSNR inf and SSIM 1."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import tifffile
from evaluation_scenes import nuclei_scene
from scipy import ndimage

from spotlight_ops.evaluation import cli, evaluate_models, run_evaluation
from spotlight_ops.evaluation.prediction_units import choose_units
from spotlight_ops.evaluation.rescaling import otsu_standardization

FAST = dict(sweep_fractions=(), progress=False, plots=False, morphology=False, tune_segmentation=False)


@pytest.fixture(scope="module")
def scene():
    return nuclei_scene(shape=(12, 32, 32), seed=6)  # (labels, fluorescence in camera-like counts)


def test_an_exact_copy_of_the_target_scores_psnr_inf_and_ssim_1(scene, tmp_path):
    labels, target = scene
    rows = evaluate_models({"copy": [target.copy()]}, [target], [labels], tmp_path, **FAST)
    copy = rows[1]
    assert copy["psnr"] == np.inf and copy["psnr_fg"] == np.inf and copy["ssim"] == 1.0 and copy["ssim_fg"] == 1.0
    assert copy["mean_ap"] == rows[0]["mean_ap"]
    assert "copy: target units, detected (misfit 0 target stds" in (tmp_path / "report.md").read_text()


def test_an_exact_copy_through_the_command(scene, tmp_path, capsys):
    labels, target = scene
    tifffile.imwrite(tmp_path / "target.tif", target.astype(np.float32))
    tifffile.imwrite(tmp_path / "mask.tif", labels.astype(np.uint16))
    out = tmp_path / "out"
    code = cli.main(["--target", str(tmp_path / "target.tif"), "--masks", str(tmp_path / "mask.tif"),
                     "--pred", f"copy={tmp_path / 'target.tif'}", "--out", str(out), "--sweep-fractions", "none",
                     "--no-plots", "--no-morphology", "--no-progress", "--no-tune-segmentation"])
    assert code == 0, capsys.readouterr().err
    with open(out / "metrics.csv", newline="") as handle:
        copy = list(csv.DictReader(handle))[1]
    assert copy["model"] == "copy" and float(copy["psnr"]) == np.inf and float(copy["ssim"]) == 1.0


def test_standardized_predictions_are_taken_as_they_are(scene, tmp_path):
    """The units of `spotlight predict`: detected, or given; the same numbers under target_norm='none'."""
    labels, target = scene
    standard = otsu_standardization(target)
    blurred = standard.apply(ndimage.gaussian_filter(target, 1.0))
    found = run_evaluation({"m": [blurred]}, [target], [labels], tmp_path, **FAST)
    assert found.units["m"].units == "standardized" and found.units["m"].how == "detected"
    copy = evaluate_models({"copy": [standard.apply(target)]}, [target], [labels], tmp_path, **FAST)[1]
    assert copy["psnr"] == np.inf and copy["ssim"] == 1.0  # an exact copy in standardized units
    given = evaluate_models({"m": [blurred]}, [target], [labels], tmp_path, prediction_units="standardized", **FAST)
    raw = evaluate_models({"m": [blurred]}, [target], [labels], tmp_path, target_norm="none", **FAST)
    for key in ("psnr", "psnr_fg", "ssim", "pearson", "mean_ap"):
        assert found.rows[1][key] == given[1][key]
    for key in ("psnr", "psnr_fg", "pearson", "mean_ap"):  # SSIM's luminance term depends on the units' offset
        assert raw[1][key] == pytest.approx(found.rows[1][key], rel=1e-9)
    assert standard.apply(target).std() == pytest.approx(1.0)
    # read as target units on purpose, the same volume misses by the whole offset
    wrong = evaluate_models({"m": [blurred]}, [target], [labels], tmp_path, prediction_units="target", **FAST)
    assert wrong[1]["psnr"] < found.rows[1]["psnr"] - 10


def test_units_that_are_not_plain_are_an_error_before_any_work(tmp_path):
    """Targets z-scored (std 1, T = 1.43) and a prediction missing them by T: the readings fit 1.4x apart, not 2x."""
    labels, target = nuclei_scene(shape=(12, 32, 32), seed=7)
    zscored = (target - target.mean()) / target.std()
    standard = otsu_standardization(zscored)
    prediction = zscored + np.random.default_rng(0).normal(0, abs(standard.threshold), zscored.shape)
    with pytest.raises(ValueError, match=r"predictions\['m'\]: units not plain.*prediction_units='target'"):
        evaluate_models({"m": [prediction]}, [zscored], [labels], tmp_path / "out", **FAST)
    assert not (tmp_path / "out").exists()
    rows = evaluate_models({"m": [prediction]}, [zscored], [labels], tmp_path / "out", prediction_units="target",
                           **FAST)
    assert np.isfinite(rows[1]["psnr"])


def test_already_standardized_targets_and_rescaled_predictions(scene):
    labels, target = scene
    standardized = otsu_standardization(target).apply(target)
    maps = [otsu_standardization(standardized)]
    agree = choose_units("m", [standardized + 0.1], [standardized], maps, "auto", "none", "otsu")
    assert (agree.units, agree.how) == ("standardized", "agree")
    rescaled = choose_units("m", [target], [target], [otsu_standardization(target)], "auto", "minmax", "otsu")
    assert rescaled.how == "rescaled"
    with pytest.raises(ValueError, match="prediction_units must be one of"):
        choose_units("m", [target], [target], maps, "raw", "none", "otsu")


def test_zscored_predictions_are_mapped_when_named(scene, tmp_path):
    """A model trained with target_norm: zscore predicts (Y - mean) / std: named, its exact copy scores inf."""
    labels, target = scene
    zscored = (target - target.mean()) / target.std()
    rows = evaluate_models({"copy": [zscored]}, [target], [labels], tmp_path, prediction_units="zscored", **FAST)
    assert rows[1]["psnr"] > 200 and rows[1]["ssim"] == pytest.approx(1.0, abs=1e-12)
