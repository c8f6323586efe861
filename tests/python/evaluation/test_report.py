"""evaluate_models end to end: rows, CSV, PNGs, report.md and the pattern verdict."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from evaluation_scenes import nuclei_scene
from scipy import ndimage

from spotlight_ops.evaluation import check_pattern, evaluate_models, otsu_foreground, run_evaluation

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
    # the stand-in predictions are in the targets' raw units: no Otsu standardization of the targets;
    # the segmentation search has its own (smaller) tests below
    evaluation = run_evaluation(predictions, targets, masks, out, sweep_fractions=SWEEP, progress=False,
                                volume_names=["first", "second"], target_norm="none", tune_segmentation=False)
    return evaluation.rows, out, evaluation


def test_rows_cover_every_volume_model_and_threshold(evaluated):
    rows, _, _ = evaluated
    assert len(rows) == 2 * (1 + 2 * (1 + len(SWEEP)))
    main = [r for r in rows if r["model"] != "target" and math.isnan(r["threshold_fraction"])]
    assert {(r["volume_name"], r["model"]) for r in main} == {
        (v, m) for v in ("first", "second") for m in ("mse", "spotlight")
    }
    for row in main:
        for key in ("psnr", "psnr_fg", "ssim", "ssim_fg", "microssim", "microssim_fg", "microssim_3d",
                    "microssim_3d_fg", "pearson", "pearson_fg",
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
    rows, out, _ = evaluated
    with open(out / "metrics.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == len(rows)
    for row, line in zip(rows, table):
        assert line["model"] == row["model"]
        for key in ("psnr", "mean_ap", "ssim_fg"):
            if key in row and not math.isnan(row[key]):
                assert float(line[key]) == row[key]


def test_report_links_figures_and_states_the_pattern(evaluated):
    rows, out, evaluation = evaluated
    report = (out / "report.md").read_text()
    for png in ("metrics.png", "ap_vs_iou.png", "histograms.png", "sweep.png", "slices_00.png", "slices_01.png"):
        assert (out / png).stat().st_size > 1000
        assert f"]({png})" in report
    verdict = evaluation.pattern
    assert verdict.applicable and verdict == check_pattern(rows, 1.0, evaluation.differences, verdict.lines[-1])
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
    with pytest.raises(ValueError, match="tune_segmentation=True needs instance_masks"):
        evaluate_models(predictions, targets, None, tmp_path, tune_segmentation=True)
    with pytest.raises(ValueError, match="rescale='range' needs target_range"):
        evaluate_models(predictions, targets, masks, tmp_path, rescale="range")
    with pytest.raises(ValueError, match="target_norm"):
        evaluate_models(predictions, targets, masks, tmp_path, target_norm="zscore")
    thin = [t[:2] for t in targets]
    with pytest.raises(ValueError, match=r"targets\[0\] \(thin_one\) has shape \(2, 56, 56\)"):
        evaluate_models({"mse": [p[:2] for p in predictions["mse"]]}, thin, None, tmp_path, volume_names=["thin_one"])
    narrow = [t[:, :9] for t in targets]
    with pytest.raises(ValueError, match=r"narrow.*MicroSSIM's per-slice convention needs at least 11 x 11"):
        evaluate_models({"mse": [p[:, :9] for p in predictions["mse"]]}, narrow, None, tmp_path,
                        volume_names=["narrow"])
    assert not any(tmp_path.iterdir())


def test_planes_too_small_for_frc_are_reported_not_fatal(tmp_path):
    labels, target = nuclei_scene(shape=(12, 16, 16), seed=4)
    rows = evaluate_models({"mse": [ndimage.gaussian_filter(target, 1.0)]}, [target], [labels], tmp_path,
                           sweep_fractions=(), progress=False, plots=False, morphology=False,
                           tune_segmentation=False)
    assert all(np.isnan(r["frc_resolution"]) and "too small" in r["frc_message"] for r in rows)
    assert "too small for FRC" in (tmp_path / "report.md").read_text()


def test_thin_volumes_are_measured(tmp_path):
    """Five planes: SSIM and the 3D MicroSSIM shrink their window, the per-slice MicroSSIM needs none."""
    labels, target = nuclei_scene(shape=(5, 40, 40), seed=4)
    rows = evaluate_models({"mse": [ndimage.gaussian_filter(target, 1.0)]}, [target], [labels], tmp_path,
                           sweep_fractions=(), progress=False, plots=False, morphology=False,
                           tune_segmentation=False, segmentation={"min_volume": 5})
    mse = rows[1]
    assert all(np.isfinite(mse[k]) for k in ("ssim", "microssim", "microssim_3d", "psnr_fg"))


def _cut_scene(shape=(20, 48, 48)):
    """Clean nuclei, three of them cut by the volume: by x = 0, by y = max and by z = 0."""
    from evaluation_scenes import ball_labels

    labels = ball_labels(shape, [(10, 24, 2), (10, 46, 20), (1, 14, 30), (10, 24, 24)], [6, 6, 5, 6])
    target = ndimage.gaussian_filter((labels > 0) * 1000.0, 0.7) + 50.0
    return labels, target


@pytest.mark.parametrize("clear_border", ["none", "xy", "all"])
def test_exact_copy_of_a_target_scores_ap_1_whatever_touches_the_border(tmp_path, clear_border):
    labels, target = _cut_scene()
    rows = evaluate_models({"copy": [target.copy()]}, [target], [labels], tmp_path, sweep_fractions=(),
                           progress=False, plots=False, morphology=False, tune_segmentation=False,
                           segmentation={"clear_border": clear_border, "min_volume": 10, "smoothing_sigma": 0,
                                         "clahe": False})
    target_row, copy_row = rows
    assert copy_row["ap_0.50"] == target_row["ap_0.50"] == 1.0
    kept = {"none": 4, "xy": 2, "all": 1}[clear_border]  # the border rule removes ground truth and copy alike
    assert copy_row["n_nuclei"] == copy_row["n_reference"] == kept


def test_exact_copy_scores_ap_1_under_the_tuned_protocol(tmp_path):
    """The default with masks: the segmentation is tuned on the target, frozen, and the report says so."""
    labels, target = _cut_scene()
    rows = evaluate_models({"copy": [target.copy()]}, [target], [labels], tmp_path, sweep_fractions=(),
                           progress=False, plots=False, morphology=False, volume_names=["cut"])
    assert rows[0]["ap_0.50"] == rows[1]["ap_0.50"] == 1.0
    assert rows[1]["mean_ap"] == rows[0]["mean_ap"]
    report = (tmp_path / "report.md").read_text()
    assert "Segmentation tuned on the targets against the masks" in report
    with open(tmp_path / "segmentation_search.csv", newline="") as handle:
        search = list(csv.DictReader(handle))
    assert len(search) == 66 * 9 and {"threshold_correction", "footprint", "clear_border", "mean_ap"} <= set(search[0])
    assert max(float(c["ap_first"]) for c in search) == 1.0
    kept = rows[0]["n_reference"]
    assert f"| cut | {kept} | {kept} | 1.000 |" in report


def test_targets_are_otsu_standardized_by_the_data_pipeline(tmp_path):
    """Default units: the targets as training sees them; a prediction in those units is taken as it is."""
    from spotlight_ops.data.preprocess import otsu_standardize_volume

    labels, target = nuclei_scene(shape=(12, 32, 32), seed=6)
    standardized = otsu_standardize_volume(target)  # the eager op: within 2e-6 of the pipeline's T and std
    common = dict(sweep_fractions=(), progress=False, plots=False, morphology=False, tune_segmentation=False)
    rows = evaluate_models({"copy": [standardized]}, [target], [labels], tmp_path, **common)
    assert rows[1]["psnr"] > 120 and rows[1]["pearson"] == pytest.approx(1.0)
    # targets as given: the standardized copy is mapped back by the target's own T and std
    raw = evaluate_models({"copy": [standardized]}, [target], [labels], tmp_path, target_norm="none", **common)
    assert raw[1]["psnr"] > 120
    # the paper's rescaling: predictions min-max mapped to the combined training targets' range
    lo, hi = float(target.min()), float(target.max())
    paper = evaluate_models({"copy": [standardized]}, [target], [labels], tmp_path, target_norm="none",
                            rescale="range", target_range=(lo, hi), **common)
    assert paper[1]["psnr"] > 100  # the copy spans the target's own range here, so it maps back onto it


def test_the_papers_rescaling_reads_the_training_targets_range_from_a_run(tmp_path):
    """rescale='range' with training_run: min and max over the run's training targets, in target_norm units."""
    from spotlight_ops.data import ManifestRow, write_manifest, write_volume
    from spotlight_ops.data.preprocess import otsu_standardize_volume
    from spotlight_ops.evaluation.rescaling import training_target_range

    rows = []
    volumes = [nuclei_scene(shape=(12, 24, 24), seed=s)[1].astype(np.float32) for s in (7, 8)]
    for k, volume in enumerate(volumes):
        row = ManifestRow(tmp_path / f"s{k}.tif", tmp_path / f"t{k}.tif")
        write_volume(row.signal, volume)
        write_volume(row.target, volume * (k + 1))
        rows.append(row)
    write_manifest(tmp_path / "train.csv", rows)
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(f"train_csv: {tmp_path / 'train.csv'}\nsmooth_threshold: false\n")
    raw = training_target_range(run, "none")
    assert raw == (float(volumes[0].min()), float(2 * volumes[1].max()))
    standardized = [otsu_standardize_volume(v * (k + 1)) for k, v in enumerate(volumes)]
    assert training_target_range(run, "otsu") == pytest.approx(
        (min(float(s.min()) for s in standardized), max(float(s.max()) for s in standardized)))
    labels, target = nuclei_scene(shape=(12, 32, 32), seed=9)
    prediction = ndimage.gaussian_filter(target, 1.0)
    out = evaluate_models({"m": [prediction]}, [target], [labels], tmp_path / "eval", rescale="range",
                          training_run=run, target_norm="none", sweep_fractions=(), progress=False, plots=False,
                          morphology=False, tune_segmentation=False)
    lo, hi = raw
    expected = lo + (prediction - prediction.min()) * (hi - lo) / (prediction.max() - prediction.min())
    from spotlight_ops.evaluation import psnr

    assert out[1]["psnr"] == pytest.approx(psnr(target, expected, float(target.max() - target.min())))
    assert "Combined training targets of" in (tmp_path / "eval" / "report.md").read_text()
    with pytest.raises(FileNotFoundError, match="no config.yaml"):
        training_target_range(tmp_path, "none")
