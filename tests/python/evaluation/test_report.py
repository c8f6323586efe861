"""evaluate_models end to end: rows, CSV, PNGs, report.md and the pattern verdict."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from evaluation_scenes import nuclei_scene
from scipy import ndimage

from spotlight_ops.evaluation import check_pattern, evaluate_models, otsu_foreground

SWEEP = (0.1,)


def synthetic_models(seeds=(0, 1)):
    """Targets, masks and two stand-in models: a blurred 'mse' with haze, a crisp 'spotlight'."""
    targets, masks, predictions = [], [], {"mse": [], "spotlight": []}
    for seed in seeds:
        labels, target = nuclei_scene(seed=seed)
        targets.append(target)
        masks.append(labels)
        predictions["mse"].append(ndimage.gaussian_filter(target, 1.5) + 30.0)
        near, _ = otsu_foreground(target)
        predictions["spotlight"].append(np.where(ndimage.binary_dilation(near), target, 0.0))
    return predictions, targets, masks


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    predictions, targets, masks = synthetic_models()
    out = tmp_path_factory.mktemp("evaluation")
    rows = evaluate_models(predictions, targets, masks, out, sweep_fractions=SWEEP, progress=False,
                           volume_names=["first", "second"])
    return rows, out


def test_rows_cover_every_volume_model_and_threshold(evaluated):
    rows, _ = evaluated
    assert len(rows) == 2 * (1 + 2 * (1 + len(SWEEP)))
    main = [r for r in rows if r["model"] != "target" and math.isnan(r["threshold_fraction"])]
    assert {(r["volume_name"], r["model"]) for r in main} == {
        (v, m) for v in ("first", "second") for m in ("mse", "spotlight")
    }
    for row in main:
        for key in ("psnr", "psnr_fg", "ssim", "ssim_fg", "microssim", "microssim_fg", "pearson", "pearson_fg",
                    "frc_resolution", "frc_crossed", "mean_ap", "ap_0.50", "ap_0.95", "precision_0.50",
                    "recall_0.50", "f1_0.50", "morph_cosine_mean", "n_nuclei"):
            assert key in row, key
        assert row["reference"] == "masks"
    sweep = [r for r in rows if not math.isnan(r["threshold_fraction"])]
    assert {r["threshold_fraction"] for r in sweep} == set(SWEEP)
    assert all("frc_resolution" not in r for r in sweep)
    targets = [r for r in rows if r["model"] == "target"]
    assert len(targets) == 2 and all("mean_ap" in r for r in targets)


def test_csv_holds_every_number(evaluated):
    rows, out = evaluated
    with open(out / "metrics.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == len(rows)
    for row, line in zip(rows, table):
        assert line["model"] == row["model"]
        for key in ("psnr", "mean_ap", "ssim_fg"):
            if key in row and not math.isnan(row[key]):
                assert float(line[key]) == row[key]


def test_report_links_figures_and_states_the_pattern(evaluated):
    rows, out = evaluated
    report = (out / "report.md").read_text()
    for png in ("metrics.png", "ap_vs_iou.png", "histograms.png", "sweep.png"):
        assert (out / png).stat().st_size > 1000
        assert f"]({png})" in report
    verdict = check_pattern(rows)
    assert verdict.applicable
    for line in verdict.lines:
        assert line in report
    assert "The paper's pattern" in report and "Cellpose skipped" in report


def _row(model, psnr, psnr_fg, mean_ap):
    return {"model": model, "threshold_fraction": math.nan, "psnr": psnr, "psnr_fg": psnr_fg, "mean_ap": mean_ap}


def test_pattern_verdicts():
    holds = check_pattern([_row("mse_baseline", 30.0, 20.0, 0.4), _row("Spotlight-v1", 27.0, 20.5, 0.6)])
    assert holds.applicable and holds.holds and "holds" in holds.lines[0]
    fails = check_pattern([_row("mse", 30.0, 18.0, 0.4), _row("spotlight", 31.0, 20.5, 0.3)])
    assert fails.applicable and not fails.holds
    assert sum("NO" in line for line in fails.lines[1:]) == 3
    tolerant = check_pattern([_row("mse", 30.0, 18.0, 0.4), _row("spotlight", 29.0, 20.5, 0.6)], tolerance_db=3.0)
    assert tolerant.holds
    absent = check_pattern([_row("unet", 30.0, 18.0, 0.4), _row("fnet", 29.0, 20.5, 0.6)])
    assert not absent.applicable and "Not checked" in absent.lines[0]


def test_without_masks_the_target_segmentation_is_the_reference(tmp_path):
    predictions, targets, _ = synthetic_models(seeds=(2,))
    rows = evaluate_models(predictions, targets, [None], tmp_path, sweep_fractions=(), progress=False,
                           plots=False, morphology=False)
    assert len(rows) == 3 and all(r["reference"] == "target_segmentation" for r in rows)
    assert "mean_ap" not in rows[0]  # the target is not scored against itself
    assert (tmp_path / "report.md").is_file() and not (tmp_path / "metrics.png").exists()


def test_bad_inputs_fail_before_any_work(tmp_path):
    predictions, targets, masks = synthetic_models(seeds=(3,))
    with pytest.raises(TypeError, match="unknown option.*frc_bins"):
        evaluate_models(predictions, targets, masks, tmp_path, frc_bins=3)
    with pytest.raises(ValueError, match=r"predictions\['mse'\] must be a list of 1"):
        evaluate_models({"mse": predictions["mse"] * 2}, targets, masks, tmp_path)
    with pytest.raises(ValueError, match="reserved"):
        evaluate_models({"target": predictions["mse"]}, targets, masks, tmp_path)
    with pytest.raises(ValueError, match=r"instance_masks\[0\] has shape"):
        evaluate_models(predictions, targets, [masks[0][:-1]], tmp_path)
    with pytest.raises(ValueError, match=r"targets\[0\] is constant"):
        evaluate_models(predictions, [np.zeros_like(targets[0])], None, tmp_path)
    with pytest.raises(ValueError, match="sweep fractions"):
        evaluate_models(predictions, targets, masks, tmp_path, sweep_fractions=(1.5,))
    with pytest.raises(ValueError, match="clear_border"):
        evaluate_models(predictions, targets, masks, tmp_path, segmentation={"clear_border": "z"})
    assert not any(tmp_path.iterdir())


def test_planes_too_small_for_frc_are_reported_not_fatal(tmp_path):
    labels, target = nuclei_scene(shape=(12, 24, 24), seed=4)
    rows = evaluate_models({"mse": [ndimage.gaussian_filter(target, 1.0)]}, [target], [labels], tmp_path,
                           sweep_fractions=(), progress=False, plots=False, morphology=False)
    assert all(np.isnan(r["frc_resolution"]) and "too small" in r["frc_message"] for r in rows)
    assert "too small for FRC" in (tmp_path / "report.md").read_text()
